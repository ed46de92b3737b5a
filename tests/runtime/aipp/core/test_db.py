"""Migrations, the task table and compare-and-set state changes on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from aipp.core.config import Settings
from aipp.core.db import Credentials, Database, create_pool
from aipp.core.migrate import alembic_config, current_revision, upgrade
from aipp.core.models import InvalidTransition, TaskState
from alembic import command

from ...conftest import ADMIN_DSN, ON_SESSION_LOOP, _admin, _with_database, new_task


def _schema(dsn: str) -> list[tuple[str, str, str]]:
    async def read() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' ORDER BY 1, 2"
            )
        finally:
            await conn.close()
        return [(r[0], r[1], r[2]) for r in rows]

    return asyncio.run(read())


def test_migrations_apply_to_an_empty_database_then_are_a_no_op(empty_database: str) -> None:
    assert current_revision(empty_database) is None
    upgrade(empty_database)
    first = _schema(empty_database)
    tables = {t for t, _, _ in first}
    assert {"tenants", "api_keys", "tasks", "alembic_version"} <= tables
    assert ("api_keys", "key_hash", "bytea") in first
    assert not any(t == "api_keys" and c == "key" for t, c, _ in first)
    revision = current_revision(empty_database)
    upgrade(empty_database)
    assert current_revision(empty_database) == revision
    assert _schema(empty_database) == first


def _create_task_and_its_index(dsn: str) -> tuple[str, str, list[str] | None]:
    """The definition of `create_task`, of the open-task index and that index's options."""

    async def read() -> tuple[str, str, list[str] | None]:
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                "SELECT pg_get_functiondef('create_task'::regproc) AS function,"
                " pg_get_indexdef('tasks_open_by_tenant'::regclass) AS index,"
                " (SELECT reloptions FROM pg_class WHERE relname = 'tasks_open_by_tenant')"
                " AS options"
            )
        finally:
            await conn.close()
        assert row is not None
        return row["function"], row["index"], row["options"]

    return asyncio.run(read())


def test_0006_downgrades_to_what_0005_left_and_upgrades_again() -> None:
    name = f"aipp_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    dsn = _with_database(ADMIN_DSN, name)
    try:
        upgrade(dsn, "0005")
        at_0005 = (_create_task_and_its_index(dsn), _schema(dsn))
        upgrade(dsn, "0006")
        at_0006 = (_create_task_and_its_index(dsn), _schema(dsn))
        assert at_0006[0] != at_0005[0]
        assert at_0006[0][2] == ["deduplicate_items=off"]
        command.downgrade(alembic_config(dsn), "0005")
        assert current_revision(dsn) == "0005"
        assert (_create_task_and_its_index(dsn), _schema(dsn)) == at_0005
        upgrade(dsn, "0006")
        assert (_create_task_and_its_index(dsn), _schema(dsn)) == at_0006
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _open_task_counting(dsn: str) -> dict[str, object]:
    """What 0007 changes: `create_task`, the open-task index, the triggers on `tasks` and each
    tenant's count (None where the column is missing)."""

    async def read() -> dict[str, object]:
        conn = await asyncpg.connect(dsn)
        try:
            facts = dict(
                await conn.fetchrow(
                    "SELECT pg_get_functiondef('create_task'::regproc) AS function,"
                    " to_regclass('tasks_open_by_tenant')::text AS index,"
                    " (SELECT array_agg(tgname::text ORDER BY tgname) FROM pg_trigger"
                    "   WHERE tgrelid = 'tasks'::regclass AND NOT tgisinternal) AS triggers"
                )
            )
            kept = "to_jsonb(tn) -> 'tasks_open'"  # NULL before 0007 adds the column
            facts["open"] = {
                r["name"]: (r["kept"], r["counted"])
                for r in await conn.fetch(
                    f"SELECT tn.name, ({kept})::int AS kept, (SELECT count(*) FROM tasks t"
                    "   WHERE t.tenant_id = tn.id AND t.state NOT IN ('completed', 'failed'))"
                    " AS counted FROM tenants tn"
                )
            }
        finally:
            await conn.close()
        return facts

    return asyncio.run(read())


def test_0007_counts_the_open_tasks_already_there_and_downgrades_to_0006() -> None:
    name = f"aipp_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    dsn = _with_database(ADMIN_DSN, name)

    async def tasks_at_0006() -> None:
        db = Database(await asyncpg.create_pool(dsn, min_size=1, max_size=1))
        try:
            for tenant, states in (
                ("busy", [TaskState.QUEUED] * 3 + [TaskState.COMPLETED, TaskState.FAILED]),
                ("idle", [TaskState.COMPLETED]),
                ("waiting", [TaskState.AWAITING_UPLOAD]),
            ):
                tenant_id = await db.ensure_tenant(tenant)
                for state in states:
                    await db.insert_task(new_task(tenant_id, state=state))
            await db.ensure_tenant("new")
        finally:
            await db.close()

    try:
        upgrade(dsn, "0006")
        asyncio.run(tasks_at_0006())
        at_0006 = (_open_task_counting(dsn), _schema(dsn))
        assert at_0006[0]["index"] == "tasks_open_by_tenant"
        upgrade(dsn, "0007")
        at_0007 = _open_task_counting(dsn)
        assert at_0007["open"] == {
            "busy": (3, 3),
            "idle": (0, 0),
            "waiting": (1, 1),
            "new": (0, 0),
        }
        assert at_0007["index"] is None
        assert at_0007["triggers"] == [
            "tasks_count_deleted",
            "tasks_count_moved",
            "tasks_count_opened",
        ]
        command.downgrade(alembic_config(dsn), "0006")
        assert (_open_task_counting(dsn), _schema(dsn)) == at_0006
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@ON_SESSION_LOOP
async def test_only_one_of_many_concurrent_transitions_wins(db: Database) -> None:
    tenant = await db.ensure_tenant("cas")
    task, created = await db.insert_task(new_task(tenant))
    assert created
    results = await asyncio.gather(
        *(db.transition(task.id, TaskState.AWAITING_UPLOAD, TaskState.QUEUED) for _ in range(10))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].state is TaskState.QUEUED
    assert winners[0].queued_at is not None


@ON_SESSION_LOOP
async def test_a_transition_outside_the_state_machine_is_refused(db: Database) -> None:
    tenant = await db.ensure_tenant("cas")
    task, _ = await db.insert_task(new_task(tenant))
    with pytest.raises(InvalidTransition):
        await db.transition(task.id, TaskState.AWAITING_UPLOAD, TaskState.COMPLETED)
    failed = await db.transition(
        task.id,
        TaskState.AWAITING_UPLOAD,
        TaskState.FAILED,
        error_code="not_audio",
        error_message="nope",
    )
    assert failed is not None
    assert (failed.state, failed.error_code, failed.error_message) == (
        TaskState.FAILED,
        "not_audio",
        "nope",
    )
    assert failed.failed_at is not None


@ON_SESSION_LOOP
async def test_api_keys_are_stored_only_as_hashes(db: Database) -> None:
    tenant = await db.ensure_tenant("hashes")
    key_id, key = await db.create_api_key(tenant)
    stored = await db.pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", key_id)
    assert stored is not None
    assert key.encode() not in bytes(stored["key_hash"])
    assert key not in " ".join(str(v) for v in stored.values())
    principal = await db.principal_for_key(key)
    assert principal is not None
    assert principal.tenant_id == tenant
    assert await db.principal_for_key(key + "x") is None


def test_replica_credentials_change_only_the_host() -> None:
    """The API's reader logs in with the primary's credentials (from the secret, re-read after
    a rotation like the primary's) on the replica's host."""
    settings = Settings(db_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:db")

    async def secret() -> str:
        return json.dumps(
            {
                "host": "primary.db",
                "port": 5433,
                "dbname": "aipp",
                "username": "app",
                "password": "p@ss:word",
            }
        )

    primary = Credentials(settings, read_secret=secret)
    reader = primary.on_host("replica.db")
    _, dsn = asyncio.run(reader.dsn())
    assert dsn == "postgresql://app:p%40ss%3Aword@replica.db:5433/aipp"
    _, main = asyncio.run(primary.dsn())
    assert main == "postgresql://app:p%40ss%3Aword@primary.db:5433/aipp"
    fixed = Credentials(settings, dsn="postgresql://u@127.0.0.1:5432/x").on_host("localhost")
    assert asyncio.run(fixed.dsn())[1] == "postgresql://u@localhost:5432/x"


@ON_SESSION_LOOP
async def test_the_task_listing_reads_from_the_replica_and_the_rest_from_the_primary(
    db: Database, settings: Settings
) -> None:
    """With a reader, `list_tasks` reads there (a second database stands in for the replica:
    what the listing returns shows where it read); reading one task stays on the primary."""
    name = f"aipp_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    stand_in = _with_database(ADMIN_DSN, name)
    await asyncio.to_thread(upgrade, stand_in)
    replica_pool = await create_pool(settings, stand_in)
    try:
        routed = Database(db.pool, replica_pool)
        tenant = await db.ensure_tenant(f"reader-{uuid.uuid4()}")
        task, _ = await db.insert_task(new_task(tenant))
        assert await routed.list_tasks(tenant, state=None, limit=10, after=None) == []
        assert await routed.get_task(task.id, tenant) is not None
        assert [t.id for t in await db.list_tasks(tenant, state=None, limit=10, after=None)] == [
            task.id
        ]
    finally:
        await replica_pool.close()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
