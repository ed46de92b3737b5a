"""`plan --from-usage` against a real PostgreSQL holding generated task histories.

Each test gets its own database, copied from one migrated template (unique names; every database
and role made here is dropped at the end).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aipp.core.migrate import upgrade
from capacity_test_paths import REPO, get, planner_server
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from capacity import Assumptions, plan
from capacity.usage import QUERIES, UsageError, plan_from_usage, read_usage

ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
UNTIL = datetime(2026, 11, 30, tzinfo=UTC)
# tasks per hour of every day: 30 at 09:00, 20 at 14:00, 10 at 02:00 (UTC)
PER_HOUR = {9: 30, 14: 20, 2: 10}
LENGTHS = (60.0, 300.0)  # seconds, alternating: mean 3 minutes


def _dsn(name: str, user: str | None = None) -> str:
    parts = urlsplit(ADMIN_DSN)
    netloc = parts.netloc if user is None else f"{user}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(path=f"/{name}", netloc=netloc))


def _admin(*sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            for statement in sql:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def template() -> Iterator[str]:
    name = f"aipp_capacity_tpl_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        upgrade(_dsn(name))
        yield name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(template: str) -> Iterator[str]:
    name = f"aipp_capacity_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _dsn(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_history(
    dsn: str,
    until: datetime,
    *,
    days: int = 30,
    measured: bool = True,
    per_hour: dict[int, int] | None = None,
) -> int:
    """Tasks queued every day of the window, plus some that must not count: one queued before
    the window and one still waiting for its upload. Returns the tasks inside the window."""

    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            tenant = uuid.uuid4()
            await conn.execute(
                "INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant, f"t-{tenant.hex[:8]}"
            )
            rows = []
            start = (until - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
            for day in range(days):
                for hour, count in (per_hour or PER_HOUR).items():
                    for i in range(count):
                        at = start + timedelta(days=day, hours=hour, seconds=30 * i)
                        seconds = LENGTHS[i % 2] if measured else None
                        rows.append((at, seconds))
            inside = len(rows)
            rows.append((start - timedelta(hours=3), 50.0))  # before the window
            records = []
            for at, seconds in rows:
                task = uuid.uuid4()
                records.append(
                    (
                        task,
                        tenant,
                        "completed",
                        "a.wav",
                        f"uploads/{tenant}/{task}/a.wav",
                        "audio/wav",
                        1000,
                        at,
                        at,
                        at,
                        seconds,
                    )
                )
            waiting = uuid.uuid4()
            records.append(
                (
                    waiting,
                    tenant,
                    "awaiting_upload",
                    "b.wav",
                    f"uploads/{tenant}/{waiting}/b.wav",
                    "audio/wav",
                    1000,
                    until - timedelta(days=1),
                    until,
                    None,
                    None,
                )
            )
            await conn.copy_records_to_table(
                "tasks",
                records=records,
                columns=[
                    "id",
                    "tenant_id",
                    "state",
                    "filename",
                    "object_key",
                    "content_type",
                    "size_bytes",
                    "created_at",
                    "updated_at",
                    "queued_at",
                    "audio_seconds",
                ],
            )
            await conn.execute("VACUUM ANALYZE tasks")  # the visibility map: index-only scans
            return inside
        finally:
            await conn.close()

    return asyncio.run(run())


def test_usage_gives_volume_length_distribution_and_profile(
    database: str, defaults: Assumptions
) -> None:
    inside = add_history(database, UNTIL)
    u = read_usage(database, 30, until=UNTIL)
    assert u.tasks == inside == 30 * 60
    assert u.measured_tasks == inside
    assert u.tasks_per_month == pytest.approx(inside * 730 / (30 * 24))
    assert u.avg_audio_minutes == pytest.approx(3.0)
    assert u.audio_minutes_percentiles["p90"] == pytest.approx(5.0)
    assert u.audio_minutes_percentiles["max"] == pytest.approx(5.0)
    assert u.audio_minutes_quantiles == (1.0,) * 50 + (5.0,) * 50
    assert u.tasks_by_hour[9] == 30 * 30 and u.tasks_by_hour[2] == 30 * 10
    assert sum(u.tasks_by_hour) == inside
    assert u.busiest_hour_tasks == 30 and u.busiest_hour is not None
    assert u.busiest_hour.hour == 9
    assert u.warnings == ()
    assert "@" not in u.database and u.database.endswith(urlsplit(database).path)

    p = plan_from_usage(u, defaults)
    assert p.tasks_per_month == round(inside * 730 / 720)
    assert p.avg_audio_minutes == pytest.approx(3.0)
    assert p.peak_to_average == 12.0  # half of each day's tasks arrive in one hour
    assert sum(1 for n in p.stt_gpus_by_hour if n > 1) <= 3  # only the three busy hours
    # what-if: a hundred times the volume, same shape: peakier than the default day
    bigger = plan_from_usage(u, defaults, tasks_per_month=p.tasks_per_month * 100)
    assert bigger.self_hosted_stt_gpus > p.self_hosted_stt_gpus
    usual_day = plan(bigger.tasks_per_month, 3.0, defaults, with_sensitivity=False)
    assert bigger.self_hosted_stt_gpus > usual_day.self_hosted_stt_gpus


def test_tasks_without_a_measured_length_count_as_tasks_only(database: str) -> None:
    add_history(database, UNTIL, measured=False)
    add_history(database, UNTIL, days=30, per_hour={12: 1})
    u = read_usage(database, 30, until=UNTIL)
    assert (u.tasks, u.measured_tasks) == (30 * 61, 30)
    assert any("no measured audio length" in w for w in u.warnings)
    assert u.avg_audio_minutes == pytest.approx(1.0)  # the 30 measured are 60 s each


def test_an_empty_history_is_a_clear_message(database: str) -> None:
    with pytest.raises(UsageError, match="no task was queued in the last 30 days"):
        read_usage(database, 30, until=UNTIL)
    done = run_cli(database, "plan", "--from-usage")
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert "no task was queued in the last 30 days" in line
    assert "Traceback" not in done.stderr


def test_no_measured_length_asks_for_an_assumed_one(database: str) -> None:
    add_history(database, datetime.now(UTC), measured=False)
    done = run_cli(database, "plan", "--from-usage")
    assert done.returncode == 2
    assert "--avg-audio-minutes" in done.stderr and len(done.stderr.splitlines()) == 1
    done = run_cli(database, "plan", "--from-usage", "--avg-audio-minutes", "2", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["avg_audio_minutes"] == 2.0
    assert answer["usage"]["measured_tasks"] == 0


def run_cli(dsn: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if dsn:
        env["DATABASE_URL"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_plans_from_the_last_30_days(database: str) -> None:
    inside = add_history(database, datetime.now(UTC))
    done = run_cli(database, "plan", "--from-usage", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["tasks_per_month"] == round(inside * 730 / 720)
    assert answer["avg_audio_minutes"] == pytest.approx(3.0)
    assert answer["usage"]["tasks"] == inside
    for key in ("recommended_phase", "stt_gpus", "llm_gpus", "crossover_tasks_per_month"):
        assert key in answer
    text = run_cli(database, "plan", "--from-usage", "--days", "7")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"Measured usage: {7 * 60:,} tasks queued")
    assert "recommended phase" in text.stdout
    no_database = run_cli(None, "plan", "--from-usage")
    assert no_database.returncode == 2 and "DATABASE_URL is not set" in no_database.stderr


def test_every_query_is_answered_from_the_index_alone(database: str) -> None:
    add_history(database, UNTIL)

    async def plans() -> list[str]:
        conn = await asyncpg.connect(database)
        try:
            await conn.execute("SET enable_seqscan = off")
            await conn.execute("SET enable_bitmapscan = off")
            args = (UNTIL - timedelta(days=30), UNTIL, [0.5], [0.5, 0.9])
            out = []
            for sql in QUERIES:
                rows = await conn.fetch("EXPLAIN " + sql, *args[: 4 if "$4" in sql else 2])
                out.append("\n".join(r[0] for r in rows))
            return out
        finally:
            await conn.close()

    for explain in asyncio.run(plans()):
        assert "Index Only Scan using tasks_queued_at" in explain, explain


def test_a_role_that_may_read_only_the_two_columns_is_enough(database: str) -> None:
    add_history(database, UNTIL)
    role = f"aipp_planner_{uuid.uuid4().hex[:8]}"
    name = urlsplit(database).path.lstrip("/")

    async def grant() -> None:
        conn = await asyncpg.connect(database)
        try:
            await conn.execute(f'CREATE ROLE "{role}" LOGIN')
            await conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
            await conn.execute(f'GRANT SELECT (queued_at, audio_seconds) ON tasks TO "{role}"')
        finally:
            await conn.close()

    asyncio.run(grant())
    try:
        u = read_usage(_dsn(name, role), 30, until=UNTIL)
        assert u.tasks == 30 * 60
    finally:
        _admin(
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            f'DROP ROLE IF EXISTS "{role}"',
        )


def test_an_unmigrated_or_unreachable_database_is_named_in_one_line(template: str) -> None:
    name = f"aipp_capacity_old_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        upgrade(_dsn(name), "0002")
        with pytest.raises(UsageError, match="migrate it first"):
            read_usage(_dsn(name), 30)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    with pytest.raises(UsageError, match=r"cannot connect to 127\.0\.0\.1:9/x") as err:
        read_usage("postgresql://someone:s3cret@127.0.0.1:9/x", 30)
    assert err.value.unavailable
    assert "s3cret" not in str(err.value)


def test_the_page_loads_the_measured_usage(database: str, browser: webdriver.Chrome) -> None:
    inside = add_history(database, datetime.now(UTC), per_hour={9: 3, 14: 2, 2: 1})
    monthly = round(inside * 730 / 720)
    with planner_server(database) as base:
        status, body, _ = get(base + "api/plan?from_usage=30")
        assert status == 200
        answer = json.loads(body)
        assert answer["usage"]["tasks"] == inside
        assert answer["plan"]["tasks_per_month"] == monthly
        assert answer["plan"]["peak_to_average"] == 12.0
        assert len(answer["warnings"]) == 2  # few tasks; under the brief's 1K tasks/month
        # a what-if on the measured shape, and the chart drawn from it
        status, body, _ = get(base + "api/plan?from_usage=30&tasks_per_month=900000")
        assert json.loads(body)["plan"]["tasks_per_month"] == 900_000
        status, _, ctype = get(base + "api/chart.png?from_usage=30")
        assert (status, ctype) == (200, "image/png")

        browser.get(base)
        WebDriverWait(browser, 30).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
        )
        browser.find_element(By.ID, "use-usage").click()
        WebDriverWait(browser, 30).until(
            lambda d: "Measured in" in d.find_element(By.ID, "usage").text
        )
        assert browser.find_element(By.ID, "tasks-value").text == f"{monthly:,}"
        # each day: four 60-s and two 300-s clips, 140 s on average
        assert browser.find_element(By.ID, "audio-value").text == "2.33 min"
        assert f"{inside:,} tasks in 30 days" in browser.find_element(By.ID, "usage").text
        banner = browser.find_element(By.ID, "warnings")
        assert banner.is_displayed()
        assert "outside the brief's 1,000-1,000,000" in banner.text
