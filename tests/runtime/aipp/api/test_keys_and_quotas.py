"""API key lifecycle (list, revoke: refused within seconds), per-tenant quotas (429 with
Retry-After, never exceeded by concurrent creates, nothing written by a refusal or a replay) and
405 answers naming every method."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest
from aipp.core.db import Database, Quota, QuotaExceeded
from aipp.core.models import TaskState

from ...conftest import (
    ON_SESSION_LOOP,
    AwsNames,
    drain_queue,
    make_settings,
    new_key,
    new_task,
    running_app,
    wav_bytes,
)
from ..test_admin import admin

pytestmark = ON_SESSION_LOOP

UPLOAD = {"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 1000}


async def test_a_revoked_key_is_refused_within_the_auth_cache_time(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    settings = make_settings(database_url, aws, auth_cache_seconds=1)
    tenant = f"acme-{time.time_ns()}"
    async with running_app(settings) as (_, client):
        auth = await new_key(db, tenant)
        other = await new_key(db, tenant)
        assert (await client.get("/v1/tasks", headers=auth)).status_code == 200
        listed = admin("list-api-keys", "--tenant", tenant, AIPP_DATABASE_URL=database_url)
        assert listed.returncode == 0, listed.stderr
        rows = [line for line in listed.stdout.splitlines()[1:] if line.strip()]
        assert len(rows) == 2 and all("active" in r for r in rows)
        key = auth["Authorization"].split()[1]
        prefix = next(r.split()[1] for r in rows if key.startswith(r.split()[1]))
        assert key not in listed.stdout  # only the prefix is ever shown

        revoked = admin("revoke-api-key", prefix, AIPP_DATABASE_URL=database_url)
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        while (await client.get("/v1/tasks", headers=auth)).status_code != 401:
            assert time.monotonic() - started < 3, "the revoked key still works"
            await asyncio.sleep(0.1)
        assert (await client.get("/v1/tasks", headers=other)).status_code == 200
        again = admin("revoke-api-key", prefix, AIPP_DATABASE_URL=database_url)
        assert again.returncode == 0 and "already revoked" in again.stdout
        unknown = admin("revoke-api-key", "aipp_nosuchkey", AIPP_DATABASE_URL=database_url)
        assert unknown.returncode == 1 and "no API key" in unknown.stderr
        listed = admin("list-api-keys", "--tenant", tenant, AIPP_DATABASE_URL=database_url)
        assert sum("revoked" in line for line in listed.stdout.splitlines()) == 1


async def test_tasks_in_flight_quota_holds_under_concurrent_creates(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    settings = make_settings(database_url, aws, quota_tasks_in_flight=3, quota_tasks_per_day=100)
    async with running_app(settings) as (_, client):
        auth = await new_key(db)
        answers = await asyncio.gather(
            *(client.post("/v1/tasks", json=UPLOAD, headers=auth) for _ in range(8))
        )
        assert sorted(a.status_code for a in answers) == [201] * 3 + [429] * 5
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert "tasks_in_flight" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        # The multipart path counts too; a finished task frees its place.
        form = {"file": ("a.wav", wav_bytes(), "audio/wav")}
        assert (await client.post("/v1/tasks", files=form, headers=auth)).status_code == 429
        done = next(a for a in answers if a.status_code == 201).json()["id"]
        assert (await client.delete(f"/v1/tasks/{done}", headers=auth)).status_code == 204
        assert (await client.post("/v1/tasks", files=form, headers=auth)).status_code == 201
        # Another tenant is not affected.
        assert (
            await client.post("/v1/tasks", json=UPLOAD, headers=await new_key(db))
        ).status_code == 201
    drain_queue(aws)


async def test_tasks_per_day_quota_and_a_tenant_override(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    settings = make_settings(database_url, aws, quota_tasks_in_flight=100, quota_tasks_per_day=2)
    tenant = f"daily-{time.time_ns()}"
    async with running_app(settings) as (_, client):
        auth = await new_key(db, tenant)
        for _ in range(2):
            assert (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).status_code == 201
        refused = await client.post("/v1/tasks", json=UPLOAD, headers=auth)
        assert refused.status_code == 429
        assert "tasks_per_day" in refused.json()["error"]["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 86401  # until midnight UTC
        # A replay of an accepted create is never refused.
        idem = {**auth, "Idempotency-Key": "same"}
        raised = admin(
            "set-quota", "--tenant", tenant, "--per-day", "5", AIPP_DATABASE_URL=database_url
        )
        assert raised.returncode == 0, raised.stderr
        first = await client.post("/v1/tasks", json=UPLOAD, headers=idem)
        assert first.status_code == 201
        assert (await client.post("/v1/tasks", json=UPLOAD, headers=idem)).status_code == 201
        assert (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).status_code == 201
        assert (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).status_code == 201
        assert (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).status_code == 429


async def _create(db: Database, tenant_id: uuid.UUID, quota: Quota) -> str:
    """'created', or the quota that refused the create."""
    try:
        _, created = await db.insert_task(new_task(tenant_id), quota)
    except QuotaExceeded as exc:
        return exc.kind
    assert created
    return "created"


async def _written(db: Database, tenant_id: uuid.UUID) -> tuple[int, object, int]:
    """(tasks of the tenant, today's usage row version, its count): what a create writes."""
    tasks = await db.pool.fetchval("SELECT count(*) FROM tasks WHERE tenant_id = $1", tenant_id)
    usage = await db.pool.fetchrow(
        "SELECT xmin::text AS version, tasks FROM tenant_daily_usage"
        " WHERE tenant_id = $1 AND day = (now() AT TIME ZONE 'utc')::date",
        tenant_id,
    )
    return tasks, usage and usage["version"], usage["tasks"] if usage else 0


async def _racing_behind_an_open_create(
    db: Database, database_url: str, tenant_id: uuid.UUID, quota: Quota, racers: int
) -> list[str]:
    """One create stays uncommitted while `racers` more start; then it commits.

    Each racer has to wait for the first create's transaction to see its task and its count:
    a check that did not wait would see neither and let every racer through.
    """
    gate = await asyncpg.connect(database_url)
    try:
        async with gate.transaction():
            first = await gate.fetchval(
                "SELECT r.outcome FROM create_task($1, $2, 'awaiting_upload', 'a.wav', 'quota/x',"
                " 'audio/wav', 10, NULL, NULL, NULL, $3, $4) AS r",
                uuid.uuid4(),
                tenant_id,
                quota.in_flight,
                quota.per_day,
            )
            assert first == "created"
            racing = [asyncio.create_task(_create(db, tenant_id, quota)) for _ in range(racers)]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not all(r.done() for r in racing):
                waiting = await gate.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if waiting >= racers:
                    break
                await asyncio.sleep(0.02)
        return await asyncio.gather(*racing)
    finally:
        await gate.close()


async def test_concurrent_creates_of_one_tenant_stop_at_the_in_flight_limit(
    db: Database, database_url: str
) -> None:
    tenant = await db.ensure_tenant(f"race-in-flight-{time.time_ns()}")
    quota = Quota(in_flight=3, per_day=100)
    outcomes = await _racing_behind_an_open_create(db, database_url, tenant, quota, racers=8)
    assert sorted(outcomes) == ["created"] * 2 + ["tasks_in_flight"] * 6
    tasks, _, used_today = await _written(db, tenant)
    assert (tasks, used_today) == (3, 3)  # the refused creates counted nothing


async def test_concurrent_creates_of_one_tenant_stop_at_the_daily_limit(
    db: Database, database_url: str
) -> None:
    tenant = await db.ensure_tenant(f"race-per-day-{time.time_ns()}")
    quota = Quota(in_flight=100, per_day=3)
    outcomes = await _racing_behind_an_open_create(db, database_url, tenant, quota, racers=8)
    assert sorted(outcomes) == ["created"] * 2 + ["tasks_per_day"] * 6
    tasks, _, used_today = await _written(db, tenant)
    assert (tasks, used_today) == (3, 3)
    # Closing tasks frees places in flight, not today's creates.
    await db.pool.execute("UPDATE tasks SET state = 'completed' WHERE tenant_id = $1", tenant)
    assert await _create(db, tenant, quota) == "tasks_per_day"


async def test_a_refused_create_writes_nothing(db: Database) -> None:
    tenant = await db.ensure_tenant(f"refused-{time.time_ns()}")
    for _ in range(2):
        assert await _create(db, tenant, Quota(in_flight=2, per_day=3)) == "created"
    before = await _written(db, tenant)
    assert before[0] == 2 and before[2] == 2
    assert await _create(db, tenant, Quota(in_flight=2, per_day=3)) == "tasks_in_flight"
    assert await _written(db, tenant) == before  # not even a new version of the usage row
    assert await _create(db, tenant, Quota(in_flight=100, per_day=2)) == "tasks_per_day"
    assert await _written(db, tenant) == before


async def test_an_idempotent_replay_is_neither_counted_nor_refused(db: Database) -> None:
    tenant = await db.ensure_tenant(f"replay-{time.time_ns()}")
    quota = Quota(in_flight=2, per_day=2)
    new = new_task(tenant, "same")
    task, created = await db.insert_task(new, quota)
    assert created
    before = await _written(db, tenant)
    assert before[0] == 1 and before[2] == 1
    again, created = await db.insert_task(new_task(tenant, "same"), quota)
    assert (again.id, created) == (task.id, False)
    assert await _written(db, tenant) == before
    assert await _create(db, tenant, quota) == "created"  # both quotas are now used up
    full = await _written(db, tenant)
    again, created = await db.insert_task(new_task(tenant, "same"), quota)
    assert (again.id, created) == (task.id, False)
    assert await _written(db, tenant) == full


async def test_a_refusal_names_the_open_tasks_and_a_tenant_override_wins(
    db: Database,
) -> None:
    tenant = await db.ensure_tenant(f"over-{time.time_ns()}")
    for _ in range(5):  # more open tasks than the limit below, e.g. after a lowered override
        await db.insert_task(new_task(tenant))
    with pytest.raises(QuotaExceeded) as refused:
        await db.insert_task(new_task(tenant), Quota(in_flight=2, per_day=100))
    assert (refused.value.kind, refused.value.limit) == ("tasks_in_flight", 2)
    assert refused.value.message == "5 tasks are still in flight; the limit is 2"
    await db.pool.execute("UPDATE tenants SET quota_tasks_in_flight = 6 WHERE id = $1", tenant)
    assert await _create(db, tenant, Quota(in_flight=2, per_day=100)) == "created"
    assert await _create(db, tenant, Quota(in_flight=2, per_day=100)) == "tasks_in_flight"


async def _open_count(db: Database, tenant_id: uuid.UUID) -> tuple[int, int]:
    """(the tenant's kept count of open tasks, its open tasks counted now)."""
    row = await db.pool.fetchrow(
        "SELECT tasks_open, (SELECT count(*) FROM tasks WHERE tenant_id = tn.id"
        " AND state NOT IN ('completed', 'failed')) AS counted FROM tenants tn WHERE id = $1",
        tenant_id,
    )
    assert row is not None
    return row["tasks_open"], row["counted"]


async def test_the_open_task_count_follows_every_way_a_task_opens_closes_or_goes(
    db: Database,
) -> None:
    tenant = await db.ensure_tenant(f"count-{time.time_ns()}")
    quota = Quota(in_flight=100, per_day=100)
    steps = []
    created = [(await db.insert_task(new_task(tenant), quota))[0] for _ in range(4)]
    steps.append(await _open_count(db, tenant))
    closed, _ = await db.insert_task(new_task(tenant, state=TaskState.COMPLETED))  # unchecked
    queued, _ = await db.insert_task(new_task(tenant, state=TaskState.QUEUED), quota)
    steps.append(await _open_count(db, tenant))
    first, second, third, fourth = created
    await db.transition(first.id, TaskState.AWAITING_UPLOAD, TaskState.QUEUED)  # open to open
    await db.transition(first.id, TaskState.QUEUED, TaskState.TRANSCRIBING)
    await db.transition(first.id, TaskState.TRANSCRIBING, TaskState.SUMMARIZING)
    steps.append(await _open_count(db, tenant))
    await db.transition(first.id, TaskState.SUMMARIZING, TaskState.COMPLETED)
    await db.transition(queued.id, TaskState.QUEUED, TaskState.FAILED, retryable=True)
    steps.append(await _open_count(db, tenant))
    assert await db.requeue_failed(queued.id) is not None  # closed to open again
    steps.append(await _open_count(db, tenant))
    await db.transition(second.id, TaskState.AWAITING_UPLOAD, TaskState.QUEUED)
    assert await db.undo_queued(second.id)  # open to open
    assert await db.delete_task(third.id, tenant)  # an open task deleted
    assert await db.delete_task(closed.id, tenant)  # a closed one
    steps.append(await _open_count(db, tenant))
    other = await db.ensure_tenant(f"count-other-{time.time_ns()}")
    await db.pool.execute("UPDATE tasks SET tenant_id = $2 WHERE id = $1", fourth.id, other)
    steps.append(await _open_count(db, tenant) + await _open_count(db, other))
    assert steps == [(4, 4), (5, 5), (5, 5), (3, 3), (4, 4), (3, 3), (2, 2, 1, 1)]
    # Deleting a tenant deletes its tasks with it, and with them the row that kept the count.
    await db.pool.execute("DELETE FROM tenants WHERE id = $1", other)
    assert await db.pool.fetchval("SELECT count(*) FROM tasks WHERE tenant_id = $1", other) == 0


async def test_the_open_task_count_stays_exact_under_concurrent_creates_and_closes(
    db: Database,
) -> None:
    tenant = await db.ensure_tenant(f"count-race-{time.time_ns()}")
    quota = Quota(in_flight=1000, per_day=1000)
    opened = [(await db.insert_task(new_task(tenant), quota))[0] for _ in range(40)]

    async def close(task_id: uuid.UUID) -> None:
        await db.transition(task_id, TaskState.AWAITING_UPLOAD, TaskState.FAILED)

    await asyncio.gather(
        *(close(t.id) for t in opened), *(_create(db, tenant, quota) for _ in range(40))
    )
    assert await _open_count(db, tenant) == (40, 40)


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    some_task = "/v1/tasks/00000000-0000-0000-0000-000000000000"
    for method, path, allowed in (
        ("OPTIONS", some_task, {"GET", "HEAD", "DELETE"}),
        ("PUT", some_task, {"GET", "HEAD", "DELETE"}),
        ("PATCH", "/v1/tasks", {"GET", "HEAD", "POST"}),
        ("POST", f"{some_task}/result", {"GET", "HEAD"}),
    ):
        answer = await client.request(method, path)
        assert answer.status_code == 405, (method, path)
        assert set(answer.headers["allow"].split(", ")) == allowed, (method, path)
        assert answer.json()["error"]["code"] == "method_not_allowed"
