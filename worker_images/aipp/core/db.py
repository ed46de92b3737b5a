"""PostgreSQL access over a pooled asyncpg connection. Every state change is a compare-and-set."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from aipp.core.aws import db_secret_string
from aipp.core.config import Settings
from aipp.core.models import (
    STATE_TIMESTAMP,
    Task,
    TaskState,
    check_transition,
)

API_KEY_PREFIX = "aipp_"
# The states a task is created in: waiting for its upload, or queued with its file stored.
NEW_TASK_STATES = frozenset({TaskState.AWAITING_UPLOAD, TaskState.QUEUED})
log = logging.getLogger("aipp.db")

# What PostgreSQL answers to credentials it does not accept (SQLSTATE class 28; a wrong password
# is its subclass InvalidPasswordError).
AUTH_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
)

SecretReader = Callable[[], Awaitable[str]]


def ssl_option(settings: Settings) -> ssl.SSLContext | Literal["prefer"] | bool | None:
    """asyncpg's `ssl` argument for AIPP_DB_SSLMODE (None: leave it to the DSN and the default).

    `verify-full` checks the chain against AIPP_DB_SSL_ROOT_CERT (else the system's trust store) and
    the host name against the certificate, as libpq does; `require` encrypts without checking.
    """
    mode = settings.db_sslmode
    if mode is None:
        return None
    if mode == "disable":
        return False
    if mode == "prefer":
        return "prefer"
    if mode == "require":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=settings.db_ssl_root_cert)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Credentials:
    """The credentials each new connection of a pool logs in with.

    Fixed (AIPP_DATABASE_URL, or AIPP_DB_HOST/_PORT/_NAME/_USER/_PASSWORD), or from the RDS secret
    in AIPP_DB_SECRET_ARN: read at the first connection, and read again when the database refuses
    them, which is what a single-user rotation does to every process started before it. The
    connection is then retried once with what the re-read found; if it is refused again (or the
    secret did not change), the error goes up and the database counts as down.

    The pool itself is never rebuilt: PostgreSQL checks a password only at login, so connections
    opened before a rotation keep working, and the pool opens every new one through `connect`,
    which always uses the latest credentials. Concurrent refusals share one re-read; a re-read
    that found the same refused credentials is not repeated for `reread_seconds`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        dsn: str | None = None,
        read_secret: SecretReader | None = None,
        reread_seconds: float | None = None,
        host: str | None = None,
    ) -> None:
        self._settings = settings
        self._host = host
        self._fixed = _on_host(dsn, host) if dsn else None
        self._read = read_secret
        self._reread_seconds = (
            settings.db_secret_reread_seconds if reread_seconds is None else reread_seconds
        )
        self._dsn: str | None = None
        self._version = 0
        self._lock = asyncio.Lock()
        self._quiet_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """AIPP_DATABASE_URL first, then AIPP_DB_SECRET_ARN, then DB_* (and the local default)."""
        if settings.database_url or not settings.db_secret_arn:
            return cls(settings, dsn=settings.database_dsn())

        async def read() -> str:
            return await asyncio.to_thread(db_secret_string, settings)

        return cls(settings, read_secret=read)

    def on_host(self, host: str) -> Credentials:
        """The same credentials, logging in to another host (a read replica of this server)."""
        return Credentials(
            self._settings,
            dsn=self._fixed,
            read_secret=self._read,
            reread_seconds=self._reread_seconds,
            host=host,
        )

    @property
    def from_secret(self) -> bool:
        return self._fixed is None

    async def _load(self) -> str:
        try:
            assert self._read is not None
            secret = await self._read()
            dsn = self._settings.with_db_secret(secret).database_dsn()
            return _on_host(dsn, self._host)
        except Exception as exc:  # unreachable, not allowed, or not an RDS secret
            raise ConnectionError(f"the database secret could not be read: {exc!r}") from exc

    async def dsn(self) -> tuple[int, str]:
        """(version, DSN) of the credentials to use now."""
        if self._fixed is not None:
            return 0, self._fixed
        if self._dsn is None:
            async with self._lock:
                if self._dsn is None:
                    self._dsn = await self._load()
                    self._version += 1
        return self._version, self._dsn

    async def reread(self, refused_version: int) -> bool:
        """After a refusal of `refused_version`: True when there are other credentials to try."""
        if self._fixed is not None:
            return False
        async with self._lock:
            if self._version != refused_version:
                return True  # another connection re-read the secret meanwhile
            if time.monotonic() < self._quiet_until:
                return False
            dsn = await self._load()
            if dsn == self._dsn:
                self._quiet_until = time.monotonic() + self._reread_seconds
                log.error("the database refuses the credentials in AIPP_DB_SECRET_ARN")
                return False
            self._dsn = dsn
            self._version += 1
            log.warning("database credentials changed (secret rotated): using the new ones")
            return True

    async def connect(self, *_ignored: Any, **kwargs: Any) -> asyncpg.Connection:
        """asyncpg's pool `connect` hook (its positional DSN argument is ignored)."""
        tls = ssl_option(self._settings)
        if tls is not None:
            kwargs.setdefault("ssl", tls)
        version, dsn = await self.dsn()
        try:
            return await asyncpg.connect(dsn, **kwargs)
        except AUTH_ERRORS:
            if not await self.reread(version):
                raise
        _, dsn = await self.dsn()
        return await asyncpg.connect(dsn, **kwargs)


def _on_host(dsn: str, host: str | None) -> str:
    """`dsn` with its host replaced (port, user, password and database kept)."""
    if host is None:
        return dsn
    parts = urlsplit(dsn)
    credentials, _, _ = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{credentials}@{host}{port}" if credentials else f"{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pool connection's reset on release: nothing to send. asyncpg's default sends
    `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` after every use, a
    second round trip for each query; our sessions change none of that state (advisory locks
    are transaction-scoped, no LISTEN, no SET outside a transaction), and an open transaction
    is still rolled back by the pool before this is called."""


async def create_pool(
    settings: Settings,
    dsn: str | None = None,
    *,
    credentials: Credentials | None = None,
    application_name: str | None = None,
) -> asyncpg.Pool:
    """A pool whose connections log in with `credentials` (default: from `settings`)."""
    if credentials is None:
        credentials = Credentials(settings, dsn=dsn) if dsn else Credentials.from_settings(settings)
    extra: dict[str, Any] = {}
    if application_name:
        extra["server_settings"] = {"application_name": application_name}
    pool = await asyncpg.create_pool(
        connect=credentials.connect,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.dependency_timeout_seconds,
        command_timeout=30,
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
        **extra,
    )
    assert pool is not None
    return pool


def hash_api_key(key: str) -> bytes:
    """Keys are 256-bit random strings, so a plain SHA-256 is a safe, fast lookup hash."""
    return hashlib.sha256(key.encode()).digest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def key_prefix(key: str) -> str:
    """The first characters of a key: stored beside its hash, shown by `admin list-api-keys`,
    accepted by `admin revoke-api-key` and logged with each request, never the key itself."""
    return key[: len(API_KEY_PREFIX) + 8]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and the API key that authenticated the request."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: uuid.UUID
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Quota:
    """The deployment's default limits per tenant (AIPP_QUOTA_TASKS_IN_FLIGHT and _PER_DAY)."""

    in_flight: int
    per_day: int
    in_flight_retry_seconds: int = 30


class QuotaExceeded(Exception):
    def __init__(self, kind: str, limit: int, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.limit = limit
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class NewTask:
    id: uuid.UUID
    tenant_id: uuid.UUID
    state: TaskState
    filename: str
    object_key: str
    content_type: str
    size_bytes: int
    language: str | None
    idempotency_key: str | None = None
    request_hash: str | None = None


class Database:
    """The queries the API, the workers and the Lambda share. With a `reader` (a pool on a read
    replica), the queries that may lag a little behind the primary read from it."""

    def __init__(self, pool: asyncpg.Pool, reader: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self.reader = reader or pool

    async def close(self) -> None:
        await self.pool.close()
        if self.reader is not self.pool:
            await self.reader.close()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # --- tenants and API keys -------------------------------------------------------------
    async def ensure_tenant(self, name: str) -> uuid.UUID:
        row = await self.pool.fetchrow(
            "INSERT INTO tenants (id, name) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            uuid.uuid4(),
            name,
        )
        assert row is not None
        tenant_id: uuid.UUID = row["id"]
        return tenant_id

    async def create_api_key(self, tenant_id: uuid.UUID) -> tuple[uuid.UUID, str]:
        """Store only the hash; the returned key is shown once and never again."""
        key = new_api_key()
        key_id = uuid.uuid4()
        await self.pool.execute(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix) VALUES ($1, $2, $3, $4)",
            key_id,
            tenant_id,
            hash_api_key(key),
            key_prefix(key),
        )
        return key_id, key

    async def principal_for_key(self, key: str) -> Principal | None:
        row = await self.pool.fetchrow(
            "SELECT id, tenant_id, prefix FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            hash_api_key(key),
        )
        if row is None:
            return None
        return Principal(tenant_id=row["tenant_id"], key_id=row["id"], prefix=row["prefix"])

    async def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        """Every key (newest first), or one tenant's; never the key itself."""
        rows = await self.pool.fetch(
            "SELECT k.id, t.name AS tenant, k.prefix, k.created_at, k.revoked_at"
            " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
            " WHERE $1::text IS NULL OR t.name = $1"
            " ORDER BY k.created_at DESC, k.id",
            tenant,
        )
        return [ApiKeyInfo(**dict(r)) for r in rows]

    async def revoke_api_key(self, ident: str) -> list[ApiKeyInfo]:
        """Revoke the key with this id or prefix (the prefix must name one key); returns what
        was revoked now, empty when it already was. Raises LookupError when nothing matches."""
        key_id: uuid.UUID | None = None
        with contextlib.suppress(ValueError):
            key_id = uuid.UUID(ident)
        rows = await self.pool.fetch(
            "SELECT k.id, t.name AS tenant, k.prefix, k.created_at, k.revoked_at"
            " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
            " WHERE k.id = $1 OR k.prefix = $2",
            key_id,
            ident,
        )
        if not rows:
            raise LookupError(f"no API key with id or prefix {ident!r}")
        if len(rows) > 1:
            raise LookupError(f"prefix {ident!r} names {len(rows)} keys; revoke by key id")
        revoked = await self.pool.fetch(
            "UPDATE api_keys k SET revoked_at = now() FROM tenants t"
            " WHERE k.id = $1 AND k.revoked_at IS NULL AND t.id = k.tenant_id"
            " RETURNING k.id, t.name AS tenant, k.prefix, k.created_at, k.revoked_at",
            rows[0]["id"],
        )
        return [ApiKeyInfo(**dict(r)) for r in revoked]

    async def set_quota(self, tenant: str, *, in_flight: int | None, per_day: int | None) -> bool:
        """Per-tenant quota overrides (None: the deployment's default). False: no such tenant."""
        status = await self.pool.execute(
            "UPDATE tenants SET quota_tasks_in_flight = $2, quota_tasks_per_day = $3"
            " WHERE name = $1",
            tenant,
            in_flight,
            per_day,
        )
        return status.endswith(" 1")

    # --- tasks ----------------------------------------------------------------------------
    async def insert_task(self, new: NewTask, quota: Quota | None = None) -> tuple[Task, bool]:
        """Insert, or return the task already holding (tenant, idempotency key): (task, created).

        With `quota`, a new task is refused (`QuotaExceeded`) when its tenant already has
        `quota.in_flight` open tasks or created `quota.per_day` today (UTC); per-tenant overrides
        in `tenants` win. The check and the insert are one call of the `create_task` function
        (migrations 0005 to 0007), which locks the tenant's row first, so concurrent creates
        cannot both slip under the limit: one round trip. Open tasks are counted as they open
        and close (`tenants.tasks_open`), so a create costs the same at any count. A replay is
        never refused. `Task.request_hash` of a replay is the one stored with the key.
        """
        if quota is None:
            return await self._insert_unchecked(new)
        if new.state not in NEW_TASK_STATES:
            raise ValueError(f"a new task starts in {sorted(NEW_TASK_STATES)}, not {new.state}")
        row = await self.pool.fetchrow(
            "SELECT r.outcome, r.quota_limit, r.quota_used, (r.task).*"
            " FROM create_task($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) AS r",
            new.id,
            new.tenant_id,
            new.state.value,
            new.filename,
            new.object_key,
            new.content_type,
            new.size_bytes,
            new.language,
            new.idempotency_key,
            new.request_hash,
            quota.in_flight,
            quota.per_day,
        )
        assert row is not None
        outcome = row["outcome"]
        if outcome == "tasks_in_flight":
            limit, used = row["quota_limit"], row["quota_used"]
            raise QuotaExceeded(
                outcome,
                limit,
                f"{used} tasks are still in flight; the limit is {limit}",
                quota.in_flight_retry_seconds,
            )
        if outcome == "tasks_per_day":
            now = datetime.now(UTC)
            midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            raise QuotaExceeded(
                outcome,
                row["quota_limit"],
                f"{row['quota_limit']} tasks were already created today (UTC)",
                max(1, int((midnight - now).total_seconds()) + 1),
            )
        return Task.from_row(row), outcome == "created"

    async def _insert_unchecked(self, new: NewTask) -> tuple[Task, bool]:
        """Insert without quotas (tools and tests): one statement, or on an idempotency-key
        conflict a second that reads the task holding the key."""
        row = await self._insert_row(self.pool, new)
        if row is not None:
            return Task.from_row(row), True
        existing = await self.pool.fetchrow(
            "SELECT * FROM tasks WHERE tenant_id = $1 AND idempotency_key = $2",
            new.tenant_id,
            new.idempotency_key,
        )
        if existing is None:
            raise RuntimeError("idempotent insert did not settle")
        return Task.from_row(existing), False

    @staticmethod
    async def _insert_row(conn: Any, new: NewTask) -> Any:
        state_col = STATE_TIMESTAMP[new.state]
        extra_col = f", {state_col}" if state_col != "created_at" else ""
        extra_val = ", now()" if extra_col else ""
        return await conn.fetchrow(
            f"""
            INSERT INTO tasks (id, tenant_id, state, filename, object_key, content_type,
                               size_bytes, language, idempotency_key, request_hash{extra_col})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10{extra_val})
            ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL
            DO NOTHING
            RETURNING *
            """,  # noqa: S608 - the interpolated column names come from a fixed table
            new.id,
            new.tenant_id,
            new.state.value,
            new.filename,
            new.object_key,
            new.content_type,
            new.size_bytes,
            new.language,
            new.idempotency_key,
            new.request_hash,
        )

    async def get_task(self, task_id: uuid.UUID, tenant_id: uuid.UUID | None = None) -> Task | None:
        """A tenant's task; without `tenant_id` any task (the Lambda and workers)."""
        if tenant_id is None:
            row = await self.pool.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        else:
            row = await self.pool.fetchrow(
                "SELECT * FROM tasks WHERE id = $1 AND tenant_id = $2", task_id, tenant_id
            )
        return Task.from_row(row) if row else None

    async def list_tasks(
        self,
        tenant_id: uuid.UUID,
        *,
        state: TaskState | None,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[Task]:
        """Newest first, keyset-paginated on (created_at, id)."""
        clauses = ["tenant_id = $1"]
        args: list[Any] = [tenant_id]
        if state is not None:
            args.append(state.value)
            clauses.append(f"state = ${len(args)}")
        if after is not None:
            args.extend(after)
            clauses.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        # A listing may trail the primary by the replica's lag; reading one task never does.
        rows = await self.reader.fetch(
            f"SELECT * FROM tasks WHERE {' AND '.join(clauses)}"  # noqa: S608 - fixed fragments
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
            *args,
        )
        return [Task.from_row(r) for r in rows]

    async def delete_task(self, task_id: uuid.UUID, tenant_id: uuid.UUID) -> bool:
        """Delete the row. Afterwards no compare-and-set of an in-flight job can succeed, so a
        job that finishes late sees the task gone and removes what it wrote."""
        status = await self.pool.execute(
            "DELETE FROM tasks WHERE id = $1 AND tenant_id = $2", task_id, tenant_id
        )
        return status.endswith(" 1")

    async def set_object_version(self, task_id: uuid.UUID, version: str) -> Task | None:
        row = await self.pool.fetchrow(
            "UPDATE tasks SET object_version = $2 WHERE id = $1 RETURNING *", task_id, version
        )
        return Task.from_row(row) if row else None

    async def exists(self, task_id: uuid.UUID) -> bool:
        return bool(await self.pool.fetchval("SELECT 1 FROM tasks WHERE id = $1", task_id))

    async def transition(
        self,
        task_id: uuid.UUID,
        source: TaskState,
        target: TaskState,
        *,
        count_attempt: bool = False,
        **fields: Any,
    ) -> Task | None:
        """Compare-and-set: move `source → target` (and set `fields`; with `count_attempt`,
        one attempt more) only if still in `source`.

        Returns the updated task, or None when the task is gone or no longer in `source` — the
        caller lost the race or is seeing a duplicate delivery, and must do nothing more.
        """
        check_transition(source, target)
        allowed = {
            "attempts",
            "object_version",
            "retryable",
            "error_code",
            "error_message",
            "transcript_key",
            "result_key",
            "summary",
            "summary_details",
            "audio_seconds",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)} in a transition")
        sets = ["state = $3", "updated_at = now()", f"{STATE_TIMESTAMP[target]} = now()"]
        if count_attempt:
            sets.append("attempts = attempts + 1")
        args: list[Any] = [task_id, source.value, target.value]
        for name, value in fields.items():
            args.append(value)
            sets.append(f"{name} = ${len(args)}")
        row = await self.pool.fetchrow(
            f"UPDATE tasks SET {', '.join(sets)} WHERE id = $1 AND state = $2 RETURNING *",  # noqa: S608
            *args,
        )
        return Task.from_row(row) if row else None

    async def renew_upload(self, task_id: uuid.UUID) -> Task | None:
        """A new upload URL was issued (idempotent replay): restart the task's upload window.

        None when the task is no longer `awaiting_upload` (uploaded or expired meanwhile)."""
        row = await self.pool.fetchrow(
            "UPDATE tasks SET updated_at = now() WHERE id = $1 AND state = 'awaiting_upload'"
            " RETURNING *",
            task_id,
        )
        return Task.from_row(row) if row else None

    async def uploads_past_window(self, after_seconds: float, limit: int = 500) -> list[Task]:
        """Tasks still `awaiting_upload` whose upload window (counted from `updated_at`:
        creation, a renewed URL or a compensation) ended `after_seconds` ago, oldest first."""
        rows = await self.pool.fetch(
            "SELECT * FROM tasks WHERE state = 'awaiting_upload'"
            " AND updated_at < now() - make_interval(secs => $1)"
            " ORDER BY updated_at LIMIT $2",
            float(after_seconds),
            limit,
        )
        return [Task.from_row(r) for r in rows]

    async def expire_upload(
        self, task_id: uuid.UUID, after_seconds: float, *, code: str, message: str
    ) -> Task | None:
        """Compare-and-set `awaiting_upload → failed` if the task's window is still over.

        A row another transaction holds (an upload being queued right now) is skipped, and
        the `state` check makes the move happen only if the task is still waiting: an upload and
        the sweep never both win.
        """
        check_transition(TaskState.AWAITING_UPLOAD, TaskState.FAILED)
        row = await self.pool.fetchrow(
            """
            UPDATE tasks
               SET state = 'failed', failed_at = now(), updated_at = now(),
                   error_code = $3, error_message = $4, retryable = false
             WHERE id = (SELECT id FROM tasks
                          WHERE id = $1 AND state = 'awaiting_upload'
                            AND updated_at < now() - make_interval(secs => $2)
                            FOR UPDATE SKIP LOCKED)
               AND state = 'awaiting_upload'
            RETURNING *
            """,
            task_id,
            float(after_seconds),
            code,
            message[:1000],
        )
        return Task.from_row(row) if row else None

    async def expire_uploads(
        self, after_seconds: float, *, code: str, message: str, limit: int = 500
    ) -> list[Task]:
        """`expire_upload` for every task past its window, without looking at S3 first."""
        expired = []
        for task in await self.uploads_past_window(after_seconds, limit):
            moved = await self.expire_upload(task.id, after_seconds, code=code, message=message)
            if moved is not None:
                expired.append(moved)
        return expired

    async def stranded(self, after_seconds: float, limit: int = 500) -> list[Task]:
        """Tasks owed work (`queued`, `transcribing`, `summarizing`) unchanged this long."""
        rows = await self.pool.fetch(
            "SELECT * FROM tasks WHERE state IN ('queued', 'transcribing', 'summarizing')"
            " AND updated_at < now() - make_interval(secs => $1)"
            " ORDER BY updated_at LIMIT $2",
            float(after_seconds),
            limit,
        )
        return [Task.from_row(r) for r in rows]

    async def touch(self, task: Task) -> bool:
        """Compare-and-set on (state, updated_at): mark a stranded task as just re-sent, so
        that the next reconcile pass waits a whole period again. False: it moved meanwhile."""
        status = await self.pool.execute(
            "UPDATE tasks SET updated_at = now() WHERE id = $1 AND state = $2 AND updated_at = $3",
            task.id,
            task.state.value,
            task.updated_at,
        )
        return status.endswith(" 1")

    async def requeue_failed(self, task_id: uuid.UUID) -> Task | None:
        """An operator's `failed → queued` for a failure a retry can fix (`retryable`); the
        error is cleared. Not a state-machine step: only `admin requeue` calls it."""
        row = await self.pool.fetchrow(
            "UPDATE tasks SET state = 'queued', queued_at = now(), updated_at = now(),"
            " failed_at = NULL, error_code = NULL, error_message = NULL, retryable = false,"
            " transcribing_at = NULL, summarizing_at = NULL"
            " WHERE id = $1 AND state = 'failed' AND retryable RETURNING *",
            task_id,
        )
        return Task.from_row(row) if row else None

    async def retryable_failures(
        self, *, code: str | None = None, since: datetime | None = None, limit: int = 1000
    ) -> list[Task]:
        rows = await self.pool.fetch(
            "SELECT * FROM tasks WHERE state = 'failed' AND retryable"
            " AND ($1::text IS NULL OR error_code = $1)"
            " AND ($2::timestamptz IS NULL OR failed_at >= $2)"
            " ORDER BY failed_at LIMIT $3",
            code,
            since,
            limit,
        )
        return [Task.from_row(r) for r in rows]

    async def prune_usage(self, keep_days: int = 35) -> None:
        await self.pool.execute(
            "DELETE FROM tenant_daily_usage WHERE day < (now() AT TIME ZONE 'utc')::date - $1::int",
            keep_days,
        )

    async def undo_queued(self, task_id: uuid.UUID) -> bool:
        """Compensation, not a state-machine step: `queued → awaiting_upload` when the message
        that should follow the move could not be sent, so that a retried event can try again."""
        status = await self.pool.execute(
            "UPDATE tasks SET state = 'awaiting_upload', queued_at = NULL, updated_at = now()"
            " WHERE id = $1 AND state = 'queued'",
            task_id,
        )
        return status.endswith(" 1")
