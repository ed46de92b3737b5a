"""Upload → `completed`, through the real API process and real worker processes."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import TaskState
from upload_handler import handler as upload

from tests.runtime.conftest import ON_SESSION_LOOP, AwsNames, new_key

from .conftest import (
    SAMPLE_WAV,
    Procs,
    Webhooks,
    all_settled,
    eventually,
    make_queues,
    provider_calls,
    queued_tasks,
    send_stt,
    stt_message,
    worker_env,
)

pytestmark = ON_SESSION_LOOP


@pytest_asyncio.fixture(loop_scope="session")
async def upload_runtime(settings: Settings) -> AsyncIterator[upload.Runtime]:
    rt = await upload.build_runtime(settings)
    yield rt
    await rt.db.close()


async def test_instant_providers_complete_each_task_once_and_sign_the_webhook(
    settings: Settings,
    db: Database,
    aws: AwsNames,
    procs: Procs,
    webhooks: Webhooks,
) -> None:
    queues = make_queues(aws)
    calls = procs.tmp / "calls.log"
    ids = await queued_tasks(db, 5)
    tasks = [await db.get_task(i) for i in ids]
    send_stt(
        aws.endpoint, queues.url, [stt_message(t.id, t.tenant_id, t.object_key) for t in tasks if t]
    )
    procs.worker(
        worker_env(
            settings,
            queues,
            instant_provider_log=calls,
            webhook_url=webhooks.url,
            webhook_secret="s3cret",
        )
    )
    await eventually("every task to finish", lambda: all_settled(db, ids))
    for task_id in ids:
        task = await db.get_task(task_id)
        assert task is not None and task.state is TaskState.COMPLETED
        assert task.summary == f"Summary: Instant transcript of task {task_id}."
        assert task.transcript_key and task.result_key is None  # no result document in S3
    # Which summarizer wrote each summary is kept beside it.
    recorded = await db.pool.fetch(
        "SELECT summary_details FROM tasks WHERE id = ANY($1::uuid[])", ids
    )
    assert [json.loads(r["summary_details"]) for r in recorded] == [{"provider": "instant"}] * len(
        ids
    )
    assert sorted(provider_calls(calls)) == sorted(
        [("stt", str(i)) for i in ids] + [("llm", str(i)) for i in ids]
    )
    await eventually("the webhooks", lambda: _async(len(webhooks.received) >= len(ids)), 10)
    for headers, body in webhooks.received:
        expected = hmac.new(
            b"s3cret", headers["X-AIPP-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert headers["X-AIPP-Signature"] == f"sha256={expected}"
    assert all(webhooks.count(i) == 1 for i in ids)
    # Deletes go out in batches after a short linger: the last ones may follow the completion.
    await eventually("the queue to drain", lambda: _async(queues.counts(aws.endpoint) == 0), 10)


async def _async(value: Any) -> Any:
    return value


def _eventbridge(bucket: str, key: str, size: int) -> dict[str, Any]:
    return {
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": size}},
    }


async def test_spoken_audio_gets_a_transcript_and_summary_from_the_local_providers(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs
) -> None:
    """pocketsphinx + extractive, both upload paths: multipart, and presigned PUT + S3 event."""
    queues = make_queues(aws)
    env = worker_env(
        settings,
        queues,
        stt_provider="pocketsphinx",
        llm_provider="extractive",
        worker_concurrency=2,
        log_level="WARNING",
    )
    _, base = procs.api(env)
    procs.worker(env)
    audio = SAMPLE_WAV.read_bytes()
    auth = await new_key(db)
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as api:
        direct = await api.post("/v1/tasks", files={"file": ("note.wav", audio, "audio/wav")})
        assert direct.status_code == 201, direct.text
        assert direct.json()["state"] == "queued"

        created = await api.post(
            "/v1/tasks",
            json={"filename": "memo.wav", "content_type": "audio/wav", "size_bytes": len(audio)},
        )
        assert created.status_code == 201, created.text
        instructions = created.json()["upload"]
        async with httpx.AsyncClient() as s3:
            put = await s3.put(instructions["url"], content=audio, headers=instructions["headers"])
            assert put.status_code == 200
        task = await db.get_task(uuid.UUID(created.json()["id"]))
        assert task is not None
        rt = await upload.build_runtime(
            settings.model_copy(update={"stt_queue_url": queues.url, "llm_queue_url": queues.url})
        )
        try:
            outcome = await upload.process_event(
                rt, _eventbridge(aws.bucket, task.object_key, len(audio))
            )
        finally:
            await rt.db.close()
        assert outcome["objects"][0]["outcome"] == "queued"

        for task_id in (direct.json()["id"], created.json()["id"]):

            async def done(task_id: str = task_id) -> bool:
                state = (await api.get(f"/v1/tasks/{task_id}")).json()["state"]
                assert state != "failed", (await api.get(f"/v1/tasks/{task_id}")).json()
                return bool(state == "completed")

            await eventually(f"task {task_id} to complete", done, 120)
            result = (await api.get(f"/v1/tasks/{task_id}/result")).json()
            words = set(result["transcript"].split())
            # A real recognizer on synthetic speech: most, not all, words come through.
            assert len(words & {"sunny", "warm", "office", "tomorrow", "morning"}) >= 3, result
            assert result["summary"]
            assert set(result["summary"].split()) <= words
