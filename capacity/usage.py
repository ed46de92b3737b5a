"""The platform's own traffic, read from its task table: what `plan --from-usage` plans from.

Reads the tasks queued in the last N days (``tasks.queued_at``: when an upload passed its check
and the work reached the queues) from ``DATABASE_URL`` in one read-only transaction, touching
only the ``tasks_queued_at`` index (``queued_at`` with ``audio_seconds`` included, migration
0003): nothing else of the row, nothing of any tenant's content. From them:

- tasks per month: tasks in the window x hours per month / hours in the window;
- the audio-length distribution: mean, percentiles and ``QUANTILE_POINTS`` equal-mass points of
  ``audio_seconds`` (the duration the STT step measured; tasks without one are counted as tasks
  but not as lengths);
- the hourly profile: tasks per hour of the day (UTC) over the window, and the busiest single
  clock hour seen.

The planner imports nothing of the runtime: the table and column names here are the contract.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from capacity.assumptions import HOURS_PER_DAY, AssumptionError, Assumptions, with_value
from capacity.model import Plan, plan

QUANTILE_POINTS = 100
"""Equal-mass points of the audio-length distribution handed to the planner."""
DAYS_LIMITS = (1, 366)
FEW_TASKS = 20 * HOURS_PER_DAY
"""Below this many tasks the hourly profile is mostly noise: said in a warning."""
CONNECT_TIMEOUT_SECONDS = 10
STATEMENT_TIMEOUT_MS = 30_000

_MIDPOINTS = [(i + 0.5) / QUANTILE_POINTS for i in range(QUANTILE_POINTS)]
_PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}

# Every query reads only tasks.queued_at and tasks.audio_seconds: both in the tasks_queued_at
# index, so PostgreSQL can answer from the index alone.
_SUMMARY_SQL = """
SELECT count(*)                                   AS tasks,
       count(audio_seconds)                       AS measured,
       avg(audio_seconds)                         AS mean_seconds,
       max(audio_seconds)                         AS max_seconds,
       percentile_cont($3::float8[]) WITHIN GROUP (ORDER BY audio_seconds) AS quantiles,
       percentile_cont($4::float8[]) WITHIN GROUP (ORDER BY audio_seconds) AS percentiles,
       min(queued_at)                             AS first_at
  FROM tasks
 WHERE queued_at >= $1 AND queued_at < $2
"""
_HOURLY_SQL = """
SELECT extract(hour FROM queued_at AT TIME ZONE 'UTC')::int AS hour, count(*) AS tasks
  FROM tasks
 WHERE queued_at >= $1 AND queued_at < $2
 GROUP BY 1
"""
_BUSIEST_SQL = """
SELECT date_trunc('hour', queued_at AT TIME ZONE 'UTC') AS hour, count(*) AS tasks
  FROM tasks
 WHERE queued_at >= $1 AND queued_at < $2
 GROUP BY 1
 ORDER BY 2 DESC, 1
 LIMIT 1
"""
QUERIES = (_SUMMARY_SQL, _HOURLY_SQL, _BUSIEST_SQL)


class UsageError(Exception):
    """Usage could not be read or holds nothing to plan from; ``str(err)`` is one line."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable  # the database could not be reached (not the input)


class Usage(BaseModel):
    """What the task table says about the last ``days`` days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database: str = Field(description="host:port/database read (never the credentials)")
    days: int = Field(description="length of the window, days")
    since: datetime = Field(description="window start (UTC)")
    until: datetime = Field(description="window end (UTC)")
    tasks: int = Field(description="tasks queued in the window")
    measured_tasks: int = Field(description="of them, tasks with a measured audio length")
    first_task_at: datetime | None = Field(description="first task queued in the window")
    tasks_per_month: float = Field(description="tasks scaled to a month of hours_per_month")
    avg_audio_minutes: float | None = Field(description="mean measured audio length, minutes")
    audio_minutes_percentiles: dict[str, float] = Field(
        description="p50, p90, p99 and max of the measured audio lengths, minutes"
    )
    audio_minutes_quantiles: tuple[float, ...] = Field(
        description=f"{QUANTILE_POINTS} equal-mass points of the audio lengths, minutes"
    )
    tasks_by_hour: tuple[int, ...] = Field(description="tasks queued in each hour 0..23 (UTC)")
    busiest_hour: datetime | None = Field(description="the clock hour with the most tasks (UTC)")
    busiest_hour_tasks: int = Field(description="tasks queued in that hour")
    warnings: tuple[str, ...] = Field(description="what makes these numbers less certain")

    @property
    def hourly_profile(self) -> tuple[float, ...]:
        """Share of the window's tasks in each hour of the day."""
        return tuple(n / self.tasks for n in self.tasks_by_hour)


def describe_database(dsn: str) -> str:
    """host:port/database of a PostgreSQL URL, without user or password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the database in DATABASE_URL"
    name = parts.path.lstrip("/") or "(default database)"
    return f"{host}:{port}/{name}"


async def _fetch(dsn: str, days: int, until: datetime | None) -> tuple[Any, list[Any], Any, Any]:
    try:
        import asyncpg  # noqa: PLC0415 - only --from-usage needs a database driver
    except ImportError:
        raise UsageError(
            "reading usage needs asyncpg (pip install -r requirements-dev.txt)", unavailable=True
        ) from None

    where = describe_database(dsn)
    try:
        conn = await asyncpg.connect(
            dsn,
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings={
                "application_name": "aipp-capacity-planner",
                "default_transaction_read_only": "on",
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
            },
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise UsageError(
            f"cannot connect to {where}: {type(exc).__name__}: {exc}", unavailable=True
        ) from None
    try:
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            end = until or await conn.fetchval("SELECT now()")
            start = end - timedelta(days=days)
            args = (start, end)
            summary = await conn.fetchrow(_SUMMARY_SQL, *args, _MIDPOINTS, _PERCENTILES.values())
            hourly = await conn.fetch(_HOURLY_SQL, *args)
            busiest = await conn.fetchrow(_BUSIEST_SQL, *args)
    except asyncpg.UndefinedColumnError:
        raise UsageError(
            f"{where} has no tasks.audio_seconds: migrate it first (python -m aipp.admin migrate)"
        ) from None
    except asyncpg.UndefinedTableError:
        raise UsageError(f"{where} has no tasks table: is DATABASE_URL the platform's?") from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise UsageError(
            f"cannot read tasks from {where}: {type(exc).__name__}: {exc}", unavailable=True
        ) from None
    finally:
        await conn.close()
    return (start, end), hourly, summary, busiest


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def read_usage(
    dsn: str | None,
    days: int = 30,
    *,
    hours_per_month: float = 730.0,
    until: datetime | None = None,
) -> Usage:
    """Read the last ``days`` days of tasks (ending ``until``, default the database's now)."""
    low, high = DAYS_LIMITS
    if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
        raise UsageError(f"invalid days: must be a whole number from {low} to {high} (got {days})")
    if not dsn:
        raise UsageError(
            "DATABASE_URL is not set: it names the platform database to read", unavailable=True
        )
    (start, end), hourly, summary, busiest = asyncio.run(_fetch(dsn, days, until))
    where = describe_database(dsn)
    tasks = int(summary["tasks"])
    if tasks == 0:
        raise UsageError(
            f"no task was queued in the last {days} days in {where}: nothing to plan from "
            "(plan with --tasks-per-month and --avg-audio-minutes instead)"
        )
    measured = int(summary["measured"])
    by_hour = [0] * HOURS_PER_DAY
    for row in hourly:
        by_hour[int(row["hour"])] = int(row["tasks"])
    mean = summary["mean_seconds"]
    quantiles = summary["quantiles"] or []
    percentiles = summary["percentiles"] or []
    first = _utc(summary["first_at"])
    since, until_ = _utc(start), _utc(end)
    warnings = []
    if first - since > timedelta(days=1):
        warnings.append(
            f"the first task in the window was queued {first:%Y-%m-%d %H:%M} UTC: if the "
            f"platform is younger than {days} days, tasks/month is understated (pass --days)"
        )
    if measured < tasks:
        warnings.append(
            f"{tasks - measured:,} of {tasks:,} tasks have no measured audio length (queued "
            "before it was recorded, or still being transcribed): lengths come from the "
            f"{measured:,} measured"
        )
    if tasks < FEW_TASKS:
        warnings.append(f"only {tasks:,} tasks: the hourly profile drawn from them is mostly noise")
    return Usage(
        database=where,
        days=days,
        since=since,
        until=until_,
        tasks=tasks,
        measured_tasks=measured,
        first_task_at=first,
        tasks_per_month=tasks * hours_per_month / (days * HOURS_PER_DAY),
        avg_audio_minutes=None if mean is None else float(mean) / 60,
        audio_minutes_percentiles=(
            {}
            if mean is None
            else {
                **{k: float(v) / 60 for k, v in zip(_PERCENTILES, percentiles, strict=True)},
                "max": float(summary["max_seconds"]) / 60,
            }
        ),
        audio_minutes_quantiles=tuple(float(q) / 60 for q in quantiles if q is not None),
        tasks_by_hour=tuple(by_hour),
        busiest_hour=_utc(busiest["hour"]) if busiest else None,
        busiest_hour_tasks=int(busiest["tasks"]) if busiest else 0,
        warnings=tuple(warnings),
    )


class UsageInputs(NamedTuple):
    """What the planner takes, filled in from usage: volume, length, its spread, assumptions
    with the measured hourly profile."""

    tasks_per_month: int
    avg_audio_minutes: float
    audio_quantiles: tuple[float, ...] | None
    assumptions: Assumptions


def usage_inputs(
    usage: Usage,
    a: Assumptions,
    *,
    tasks_per_month: int | None = None,
    avg_audio_minutes: float | None = None,
) -> UsageInputs:
    """The measured volume, audio lengths and hourly profile, as planner inputs.

    ``tasks_per_month`` / ``avg_audio_minutes`` replace the measured values (a what-if on the
    measured shape); the measured length distribution is then scaled to the new mean.
    """
    measured = usage.avg_audio_minutes
    minutes = avg_audio_minutes if avg_audio_minutes is not None else measured
    if minutes is None:
        raise UsageError(
            f"none of the {usage.tasks:,} tasks in the window has a measured audio length: "
            "pass --avg-audio-minutes to plan with an assumed one"
        )
    if not minutes > 0:
        raise UsageError("the measured audio lengths average 0 minutes: nothing to transcribe")
    quantiles: tuple[float, ...] | None = None
    if measured and usage.audio_minutes_quantiles:
        scale = minutes / measured
        quantiles = tuple(q * scale for q in usage.audio_minutes_quantiles)
    tasks = tasks_per_month if tasks_per_month is not None else max(1, round(usage.tasks_per_month))
    measured_profile = with_value(a, "load.hourly_profile", list(usage.hourly_profile))
    sources = {
        **a.sources,
        "load.hourly_profile": f"measured: {usage.tasks:,} tasks in {usage.database}, "
        f"{usage.since:%Y-%m-%d} to {usage.until:%Y-%m-%d} (UTC)",
    }
    return UsageInputs(
        tasks, minutes, quantiles, measured_profile.model_copy(update={"sources": sources})
    )


def plan_from_usage(
    usage: Usage,
    a: Assumptions,
    *,
    tasks_per_month: int | None = None,
    avg_audio_minutes: float | None = None,
    with_sensitivity: bool = True,
) -> Plan:
    """Plan with the measured volume, audio lengths and hourly profile (see ``usage_inputs``)."""
    x = usage_inputs(usage, a, tasks_per_month=tasks_per_month, avg_audio_minutes=avg_audio_minutes)
    return plan(
        x.tasks_per_month,
        x.avg_audio_minutes,
        x.assumptions,
        with_sensitivity=with_sensitivity,
        audio_quantiles=x.audio_quantiles,
    )


def check_days(value: Any) -> int:
    """The --days / ?days= value as an int in range, or a one-line error naming it."""
    try:
        days = int(str(value))
    except ValueError:
        raise AssumptionError(f"invalid days: not a whole number ({value!r})") from None
    low, high = DAYS_LIMITS
    if not low <= days <= high:
        raise AssumptionError(f"invalid days: must be from {low} to {high} (got {days})")
    return days
