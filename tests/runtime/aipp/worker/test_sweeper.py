"""Tasks never stay `awaiting_upload` forever: the workers' expiry sweep, and its race with a
late upload (one of them wins, cleanly, never both)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import httpx
import pytest_asyncio
from aipp.core.cache import create_redis
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import UPLOAD_EXPIRED, Task, TaskState
from aipp.core.queue import Queue
from aipp.core.storage import Storage
from aipp.core.upload_check import UploadCheck
from aipp.worker.sweeper import TURN_KEY, UploadSweeper
from redis.asyncio import Redis
from upload_handler import handler as upload

from tests.runtime.conftest import (
    ON_SESSION_LOOP,
    AwsNames,
    aws_client,
    bucket_keys,
    drain_queue,
    new_key,
    wav_bytes,
)

from .conftest import Procs, eventually, make_queues, worker_env

pytestmark = ON_SESSION_LOOP

PRESIGN = 900
GRACE = 300


@pytest_asyncio.fixture(loop_scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = create_redis(settings)
    yield client
    await client.aclose()


def _sweeper(db: Database, settings: Settings, redis: Redis) -> UploadSweeper:
    return UploadSweeper(
        db=db,
        storage=Storage(settings),
        redis=redis,
        interval_seconds=60,
        presign_seconds=PRESIGN,
        grace_seconds=GRACE,
        prefix=f"test-{uuid.uuid4().hex[:8]}",
    )


async def _create(
    client: httpx.AsyncClient, db: Database, auth: dict[str, str], size: int = 2048
) -> Task:
    created = await client.post(
        "/v1/tasks",
        headers=auth,
        json={"filename": "late.wav", "content_type": "audio/wav", "size_bytes": size},
    )
    assert created.status_code == 201, created.text
    task = await db.get_task(uuid.UUID(created.json()["id"]))
    assert task is not None
    return task


async def _age(db: Database, task_id: uuid.UUID, seconds: float) -> None:
    """Pretend the task's upload URL was issued `seconds` ago."""
    await db.pool.execute(
        "UPDATE tasks SET created_at = created_at - make_interval(secs => $2),"
        " updated_at = updated_at - make_interval(secs => $2) WHERE id = $1",
        task_id,
        float(seconds),
    )


def _upload(aws: AwsNames, key: str, body: bytes) -> None:
    aws_client(aws.endpoint, "s3").put_object(Bucket=aws.bucket, Key=key, Body=body)


async def test_only_uploads_past_expiry_and_grace_fail_and_the_client_reads_why(
    settings: Settings, db: Database, aws: AwsNames, client: httpx.AsyncClient, redis: Redis
) -> None:
    auth = await new_key(db)
    expired = await _create(client, db, auth)
    within_grace = await _create(client, db, auth)
    uploaded = await _create(client, db, auth)
    await _age(db, expired.id, PRESIGN + GRACE + 5)
    await _age(db, within_grace.id, PRESIGN + GRACE - 60)
    await _age(db, uploaded.id, PRESIGN + GRACE + 5)
    assert await db.transition(uploaded.id, TaskState.AWAITING_UPLOAD, TaskState.QUEUED)
    _upload(aws, expired.object_key, wav_bytes())  # an upload that came too late, no event yet

    sweeper = _sweeper(db, settings, redis)
    swept = await sweeper.sweep()

    assert expired.id in {t.id for t in swept}
    assert within_grace.id not in {t.id for t in swept}
    view = (await client.get(f"/v1/tasks/{expired.id}", headers=auth)).json()
    assert view["state"] == "failed"
    assert view["error"]["code"] == "upload_expired"
    assert "create a new task" in view["error"]["message"]
    assert (await client.get(f"/v1/tasks/{within_grace.id}", headers=auth)).json()[
        "state"
    ] == "awaiting_upload"
    assert (await client.get(f"/v1/tasks/{uploaded.id}", headers=auth)).json()["state"] == "queued"
    assert expired.object_key not in bucket_keys(aws, "uploads/")
    assert expired.id not in {t.id for t in await sweeper.sweep()}  # done once


async def test_a_replayed_create_gets_a_new_upload_window(
    settings: Settings, db: Database, client: httpx.AsyncClient, redis: Redis
) -> None:
    auth = {**(await new_key(db)), "Idempotency-Key": uuid.uuid4().hex}
    body = {"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 100}
    first = await client.post("/v1/tasks", headers=auth, json=body)
    task_id = uuid.UUID(first.json()["id"])
    await _age(db, task_id, PRESIGN + GRACE + 5)
    again = await client.post("/v1/tasks", headers=auth, json=body)  # a fresh URL, valid 900 s
    assert again.status_code == 201 and again.json()["upload"]["url"]
    assert task_id not in {t.id for t in await _sweeper(db, settings, redis).sweep()}


async def test_one_worker_sweeps_per_interval(
    settings: Settings, db: Database, redis: Redis
) -> None:
    first = _sweeper(db, settings, redis)
    second = _sweeper(db, settings, redis)
    second.key = first.key
    assert await first.take_turn()
    assert not await second.take_turn()
    assert not await first.take_turn()


@pytest_asyncio.fixture(loop_scope="session")
async def lambda_runtime(settings: Settings) -> AsyncIterator[upload.Runtime]:
    rt = await upload.build_runtime(settings)
    yield rt
    await rt.db.close()


async def _waiting_on_a_lock(db: Database) -> bool:
    return bool(
        await db.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


async def test_an_upload_queued_while_the_sweep_runs_wins_and_the_sweep_leaves_it(
    settings: Settings, db: Database, aws: AwsNames, client: httpx.AsyncClient, redis: Redis
) -> None:
    task = await _create(client, db, await new_key(db))
    await _age(db, task.id, PRESIGN + GRACE + 5)
    conn = await asyncpg.connect(settings.database_dsn())
    try:
        # The upload check's compare-and-set, in a transaction that has not committed yet.
        async with conn.transaction():
            queued = await Database(cast(Any, conn)).transition(
                task.id, TaskState.AWAITING_UPLOAD, TaskState.QUEUED
            )
            assert queued is not None
            # The sweep skips the row the upload holds, without waiting for it.
            swept = await asyncio.wait_for(_sweeper(db, settings, redis).sweep(), 30)
            assert task.id not in {t.id for t in swept}
    finally:
        await conn.close()
    after = await db.get_task(task.id)
    assert after is not None and after.state is TaskState.QUEUED and after.error_code is None
    assert task.id not in {t.id for t in await _sweeper(db, settings, redis).sweep()}


async def test_an_upload_checked_while_the_sweep_fails_its_task_loses_and_is_removed(
    settings: Settings,
    db: Database,
    aws: AwsNames,
    client: httpx.AsyncClient,
    lambda_runtime: upload.Runtime,
) -> None:
    audio = wav_bytes()
    task = await _create(client, db, await new_key(db), size=len(audio))
    await _age(db, task.id, PRESIGN + GRACE + 5)
    _upload(aws, task.object_key, audio)
    drain_queue(aws)
    conn = await asyncpg.connect(settings.database_dsn())
    try:
        # The sweep's compare-and-set, in a transaction that has not committed yet.
        async with conn.transaction():
            swept = await Database(cast(Any, conn)).expire_uploads(
                PRESIGN + GRACE, code=UPLOAD_EXPIRED, message="too late"
            )
            assert task.id in {t.id for t in swept}
            # The upload's event arrives now: its check passes, then its move waits for the row.
            check = asyncio.create_task(
                upload.process_object(lambda_runtime, aws.bucket, task.object_key)
            )
            await eventually("the upload check to wait for the row", lambda: _waiting_on_a_lock(db))
            assert not check.done()
    finally:
        await conn.close()
    assert await check == "ignored:upload-expired"
    after = await db.get_task(task.id)
    assert after is not None and after.state is TaskState.FAILED
    assert after.error_code == UPLOAD_EXPIRED
    assert drain_queue(aws) == []  # nothing was queued
    assert task.object_key not in bucket_keys(aws, "uploads/")


async def test_the_worker_process_sweeps_on_its_own(
    *,
    settings: Settings,
    db: Database,
    aws: AwsNames,
    client: httpx.AsyncClient,
    redis: Redis,
    procs: Procs,
) -> None:
    task = await _create(client, db, await new_key(db))
    # Workers of earlier tests (same Redis, default 60 s interval) may still hold this turn.
    await redis.delete(f"aipp:{TURN_KEY}")
    env = worker_env(
        settings,
        make_queues(aws),
        presign_expires_seconds=1,
        upload_grace_seconds=0,
        upload_sweep_interval_seconds=1,
    )
    procs.worker(env)

    async def failed() -> bool:
        found = await db.get_task(task.id)
        return found is not None and found.error_code == UPLOAD_EXPIRED

    await eventually("the worker to fail the expired upload", failed, 30)


async def test_an_upload_whose_event_never_came_is_checked_not_deleted(
    settings: Settings, db: Database, aws: AwsNames, client: httpx.AsyncClient, redis: Redis
) -> None:
    """The upload Lambda was down for longer than the grace period: the audio is in S3, its
    event never arrived. The sweep runs the upload check instead of failing the task."""
    audio = wav_bytes(3000)
    task = await _create(client, db, await new_key(db), size=len(audio))
    _upload(aws, task.object_key, audio)
    await _age(db, task.id, PRESIGN + GRACE + 3600)
    drain_queue(aws)
    sweeper = _sweeper(db, settings, redis)
    sweeper.check = UploadCheck(settings, db, Storage(settings), Queue(settings))
    swept = await sweeper.sweep()
    assert task.id not in {t.id for t in swept}
    after = await db.get_task(task.id)
    assert after is not None and after.state is TaskState.QUEUED and after.error_code is None
    body = aws_client(aws.endpoint, "s3").get_object(Bucket=aws.bucket, Key=task.object_key)
    assert body["Body"].read() == audio  # the audio is intact
    messages = drain_queue(aws)
    assert [json.loads(m["Body"])["task_id"] for m in messages] == [str(task.id)]
    assert task.id not in {t.id for t in await sweeper.sweep()}  # and only once
    assert drain_queue(aws) == []
