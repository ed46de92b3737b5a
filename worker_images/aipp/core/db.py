"""PostgreSQL access over a pooled asyncpg connection. Every state change is a compare-and-set."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from aipp.core.config import Settings
from aipp.core.models import STATE_TIMESTAMP, Task, TaskState, check_transition

API_KEY_PREFIX = "aipp_"


async def create_pool(settings: Settings, dsn: str | None = None) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn or settings.database_dsn(),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.dependency_timeout_seconds,
        command_timeout=30,
        max_inactive_connection_lifetime=300,
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

    async def undo_queued(self, task_id: uuid.UUID) -> bool:
        """Compensation, not a state-machine step: `queued → awaiting_upload` when the message
        that should follow the move could not be sent, so that a retried event can try again."""
        status = await self.pool.execute(
            "UPDATE tasks SET state = 'awaiting_upload', queued_at = NULL, updated_at = now()"
            " WHERE id = $1 AND state = 'queued'",
            task_id,
        )
        return status.endswith(" 1")
