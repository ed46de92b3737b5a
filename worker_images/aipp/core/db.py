"""PostgreSQL access over a pooled asyncpg connection. Every state change is a compare-and-set."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from aipp.core.aws import db_secret_string
from aipp.core.config import Settings
from aipp.core.models import STATE_TIMESTAMP, Task, TaskState, check_transition

API_KEY_PREFIX = "aipp_"
log = logging.getLogger("aipp.db")

# What PostgreSQL answers to credentials it does not accept (SQLSTATE class 28; a wrong password
# is its subclass InvalidPasswordError).
AUTH_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
)

SecretReader = Callable[[], Awaitable[str]]


class Credentials:
    """The credentials each new connection of a pool logs in with.

    Fixed (DATABASE_URL, or DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD), or from the RDS secret
    in DB_SECRET_ARN: read at the first connection, and read again when the database refuses
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
    ) -> None:
        self._settings = settings
        self._fixed = dsn
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
        """DATABASE_URL first, then DB_SECRET_ARN, then DB_* (and the local default)."""
        if settings.database_url or not settings.db_secret_arn:
            return cls(settings, dsn=settings.database_dsn())

        async def read() -> str:
            return await asyncio.to_thread(db_secret_string, settings)

        return cls(settings, read_secret=read)

    @property
    def from_secret(self) -> bool:
        return self._fixed is None

    async def _load(self) -> str:
        try:
            assert self._read is not None
            secret = await self._read()
            return self._settings.with_db_secret(secret).database_dsn()
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
                log.error("the database refuses the credentials in DB_SECRET_ARN")
                return False
            self._dsn = dsn
            self._version += 1
            log.warning("database credentials changed (secret rotated): using the new ones")
            return True

    async def connect(self, *_ignored: Any, **kwargs: Any) -> asyncpg.Connection:
        """asyncpg's pool `connect` hook (its positional DSN argument is ignored)."""
        version, dsn = await self.dsn()
        try:
            return await asyncpg.connect(dsn, **kwargs)
        except AUTH_ERRORS:
            if not await self.reread(version):
                raise
        _, dsn = await self.dsn()
        return await asyncpg.connect(dsn, **kwargs)


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
        **extra,
    )
    assert pool is not None
    return pool


def hash_api_key(key: str) -> bytes:
    """Keys are 256-bit random strings, so a plain SHA-256 is a safe, fast lookup hash."""
    return hashlib.sha256(key.encode()).digest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and the API key that authenticated the request."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID


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
    """The queries the API, the workers and the Lambda share."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def close(self) -> None:
        await self.pool.close()

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
            key[: len(API_KEY_PREFIX) + 4],
        )
        return key_id, key

    async def principal_for_key(self, key: str) -> Principal | None:
        row = await self.pool.fetchrow(
            "SELECT id, tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            hash_api_key(key),
        )
        return Principal(tenant_id=row["tenant_id"], key_id=row["id"]) if row else None

    # --- tasks ----------------------------------------------------------------------------
    async def insert_task(self, new: NewTask) -> tuple[Task, bool]:
        """Insert, or return the task already holding (tenant, idempotency key): (task, created)."""
        state_col = STATE_TIMESTAMP[new.state]
        extra_col = f", {state_col}" if state_col != "created_at" else ""
        extra_val = ", now()" if extra_col else ""
        for _ in range(3):
            row = await self.pool.fetchrow(
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
            if row is not None:
                return Task.from_row(row), True
            existing = await self.pool.fetchrow(
                "SELECT * FROM tasks WHERE tenant_id = $1 AND idempotency_key = $2",
                new.tenant_id,
                new.idempotency_key,
            )
            if existing is not None:
                return Task.from_row(existing), False
        raise RuntimeError("idempotent insert did not settle")

    async def request_hash(self, tenant_id: uuid.UUID, task_id: uuid.UUID) -> str | None:
        value: str | None = await self.pool.fetchval(
            "SELECT request_hash FROM tasks WHERE tenant_id = $1 AND id = $2", tenant_id, task_id
        )
        return value

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
        rows = await self.pool.fetch(
            f"SELECT * FROM tasks WHERE {' AND '.join(clauses)}"  # noqa: S608 - fixed fragments
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
            *args,
        )
        return [Task.from_row(r) for r in rows]

    async def delete_task(self, task_id: uuid.UUID, tenant_id: uuid.UUID) -> bool:
        status = await self.pool.execute(
            "DELETE FROM tasks WHERE id = $1 AND tenant_id = $2", task_id, tenant_id
        )
        return status.endswith(" 1")

    async def transition(
        self,
        task_id: uuid.UUID,
        source: TaskState,
        target: TaskState,
        **fields: Any,
    ) -> Task | None:
        """Compare-and-set: move `source → target` (and set `fields`) only if still in `source`.

        Returns the updated task, or None when the task is gone or no longer in `source` — the
        caller lost the race or is seeing a duplicate delivery, and must do nothing more.
        """
        check_transition(source, target)
        allowed = {
            "attempts",
            "error_code",
            "error_message",
            "transcript_key",
            "result_key",
            "summary",
            "audio_seconds",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)} in a transition")
        sets = ["state = $3", "updated_at = now()", f"{STATE_TIMESTAMP[target]} = now()"]
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

    async def expire_uploads(
        self, after_seconds: float, *, code: str, message: str, limit: int = 500
    ) -> list[Task]:
        """Compare-and-set `awaiting_upload → failed` for tasks whose upload window (counted from
        `updated_at`: creation, a renewed URL or a compensation) ended `after_seconds` ago.

        Rows another transaction holds (an upload being queued right now) are skipped, and the
        outer `state` check makes the move happen only if the task is still waiting: an upload
        and the sweep never both win.
        """
        check_transition(TaskState.AWAITING_UPLOAD, TaskState.FAILED)
        rows = await self.pool.fetch(
            """
            UPDATE tasks
               SET state = 'failed', failed_at = now(), updated_at = now(),
                   error_code = $2, error_message = $3
             WHERE id IN (SELECT id FROM tasks
                           WHERE state = 'awaiting_upload'
                             AND updated_at < now() - make_interval(secs => $1)
                           ORDER BY updated_at
                           LIMIT $4
                             FOR UPDATE SKIP LOCKED)
               AND state = 'awaiting_upload'
            RETURNING *
            """,
            float(after_seconds),
            code,
            message[:1000],
            limit,
        )
        return [Task.from_row(r) for r in rows]

    async def undo_queued(self, task_id: uuid.UUID) -> bool:
        """Compensation, not a state-machine step: `queued → awaiting_upload` when the message
        that should follow the move could not be sent, so that a retried event can try again."""
        status = await self.pool.execute(
            "UPDATE tasks SET state = 'awaiting_upload', queued_at = NULL, updated_at = now()"
            " WHERE id = $1 AND state = 'queued'",
            task_id,
        )
        return status.endswith(" 1")
