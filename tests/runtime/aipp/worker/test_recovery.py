"""Faults that used to lose, strand or corrupt a task, each ending with no task lost, none done
twice and the audio intact: the `openai` providers through the real worker loop with model
servers that are still loading, provider throttling far longer than the receive budget, a
process killed between the row and the message, a task deleted mid-flight, an internal error
(tenants read a stable code, the log the detail) and its requeue, the job deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import TaskState
from upload_handler import handler as upload

from tests.runtime.aipp.test_admin import admin
from tests.runtime.conftest import ON_SESSION_LOOP, AwsNames, aws_client, bucket_keys, new_key

from .conftest import (
    ROOT,
    SAMPLE_WAV,
    Procs,
    Queues,
    eventually,
    make_queues,
    provider_calls,
    queued_tasks,
    send_stt,
    stt_message,
    worker_env,
)
from .openai_server import ModelServer

pytestmark = ON_SESSION_LOOP

STT_MODEL, LLM_MODEL = "openai/whisper-test", "meta/llama-test"


@pytest.fixture
def servers() -> Iterator[tuple[ModelServer, ModelServer]]:
    """Two model servers, as on EKS: Whisper and the chat model at separate addresses."""
    stt = ModelServer(stt_model=STT_MODEL, llm_model="none")
    llm = ModelServer(stt_model="none", llm_model=LLM_MODEL)
    yield stt, llm
    stt.stop()
    llm.stop()


def openai_env(
    settings: Settings, queues: Queues, stt: ModelServer, llm: ModelServer, **more: Any
) -> dict[str, str]:
    return worker_env(
        settings,
        queues,
        stt_provider="openai",
        llm_provider="openai",
        openai_stt_base_url=stt.url,
        openai_llm_base_url=llm.url,
        openai_stt_model=STT_MODEL,
        openai_llm_model=LLM_MODEL,
        openai_timeout_seconds=10,
        openai_connect_timeout_seconds=1,
        provider_retry_base_seconds=0.5,
        provider_retry_max_seconds=1,
        **more,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def lambda_for(settings: Settings) -> AsyncIterator[Any]:
    made: list[upload.Runtime] = []

    async def build(queues: Queues) -> upload.Runtime:
        rt = await upload.build_runtime(
            settings.model_copy(update={"stt_queue_url": queues.url, "llm_queue_url": queues.url})
        )
        made.append(rt)
        return rt

    yield build
    for rt in made:
        await rt.db.close()


async def _uploaded(
    client: httpx.AsyncClient, db: Database, audio: bytes
) -> tuple[dict[str, str], uuid.UUID, str]:
    """A task created through the API, its audio PUT to the presigned URL."""
    auth = await new_key(db)
    created = await client.post(
        "/v1/tasks",
        headers=auth,
        json={
            "filename": "standup notes.wav",
            "content_type": "audio/wav",
            "size_bytes": len(audio),
        },
    )
    assert created.status_code == 201, created.text
    instructions = created.json()["upload"]
    async with httpx.AsyncClient() as s3:
        put = await s3.put(instructions["url"], content=audio, headers=instructions["headers"])
        assert put.status_code == 200
    task = await db.get_task(uuid.UUID(created.json()["id"]))
    assert task is not None
    return auth, task.id, task.object_key


async def _state(db: Database, task_id: uuid.UUID, *states: TaskState) -> bool:
    task = await db.get_task(task_id)
    return task is not None and task.state in states


async def _true(value: bool) -> bool:
    return value


async def test_openai_providers_complete_a_task_while_the_model_servers_start_up(
    *,
    settings: Settings,
    db: Database,
    aws: AwsNames,
    client: httpx.AsyncClient,
    procs: Procs,
    servers: tuple[ModelServer, ModelServer],
    lambda_for: Any,
) -> None:
    """API → presigned upload → upload check → queue → worker (AIPP_STT_PROVIDER=openai,
    AIPP_LLM_PROVIDER=openai): connection refused, then 503 while the weights load, then answers."""
    stt, llm = servers
    queues = make_queues(aws)
    audio = SAMPLE_WAV.read_bytes()
    auth, task_id, key = await _uploaded(client, db, audio)
    assert await upload.process_object(await lambda_for(queues), aws.bucket, key) == "queued"
    worker = procs.worker(openai_env(settings, queues, stt, llm))
    await eventually(
        "the STT call to be refused", lambda: _state(db, task_id, TaskState.TRANSCRIBING), 30
    )
    await asyncio.sleep(1.5)  # connection refused meanwhile: nothing listens yet
    stt.start(fail_for=6)  # then 503 "model is loading", past the client's own retries
    llm.start(fail_for=6)
    await eventually(
        "the task to complete",
        lambda: _state(db, task_id, TaskState.COMPLETED, TaskState.FAILED),
        40,
    )
    result = (await client.get(f"/v1/tasks/{task_id}/result", headers=auth)).json()
    assert result["transcript"] == f"Whisper heard {len(audio)} bytes. All is well."
    assert result["summary"] == "vLLM summary (True)."
    assert stt.count("/v1/audio/transcriptions", 503) >= 1
    assert stt.count("/v1/audio/transcriptions", 200) == 1
    assert llm.count("/v1/chat/completions", 200) == 1
    finished = [e for e in worker.log_lines() if e.get("message") == "job finished"]
    assert [e["receive_count"] for e in finished] == [1, 1]  # no receive spent on the outage
    # Deletes go out in batches after a short linger: the last one may follow the completion.
    await eventually("the queue to drain", lambda: _true(queues.counts(aws.endpoint) == 0), 10)
    assert queues.counts(aws.endpoint, queues.dlq_url) == 0


async def test_provider_throttling_longer_than_the_receive_budget_is_waited_out(
    settings: Settings,
    db: Database,
    aws: AwsNames,
    procs: Procs,
    servers: tuple[ModelServer, ModelServer],
) -> None:
    """The chat server answers 429 for 10 s from the first request, with a receive budget of one
    delivery (a few seconds of the client's own retries): the worker holds the message and waits
    it out, and the task completes once."""
    stt, llm = servers
    stt.start()
    llm.start(fail_for=10, status=429, from_first_request=True)
    queues = make_queues(aws)
    (task_id,) = await queued_tasks(db, 1)
    task = await db.get_task(task_id)
    assert task is not None
    aws_client(aws.endpoint, "s3").put_object(
        Bucket=aws.bucket, Key=task.object_key, Body=SAMPLE_WAV.read_bytes()
    )
    send_stt(aws.endpoint, queues.url, [stt_message(task.id, task.tenant_id, task.object_key)])
    procs.worker(openai_env(settings, queues, stt, llm, max_receive_count=1))
    await eventually(
        "the task to settle", lambda: _state(db, task_id, TaskState.COMPLETED, TaskState.FAILED), 40
    )
    done = await db.get_task(task_id)
    assert done is not None and done.state is TaskState.COMPLETED, done and done.error_message
    assert llm.count("/v1/chat/completions", 429) >= 5
    assert llm.count("/v1/chat/completions", 200) == 1
    assert queues.counts(aws.endpoint, queues.dlq_url) == 0


DIE_ON_SEND = """
import asyncio, os, signal, sys
from aipp.core import queue
async def die(self, message):  # the process dies right after the row was written
    os.kill(os.getpid(), signal.SIGKILL)
queue.Queue.send = die
{body}
"""

LAMBDA_BODY = """
from aipp.core.config import load_settings
from upload_handler import handler as upload
async def main():
    rt = await upload.build_runtime(load_settings())
    print(await upload.process_object(rt, sys.argv[1], sys.argv[2]))
asyncio.run(main())
"""


async def test_a_process_killed_between_the_row_and_the_message_is_reconciled(
    settings: Settings,
    db: Database,
    aws: AwsNames,
    client: httpx.AsyncClient,
    procs: Procs,
) -> None:
    queues = make_queues(aws)
    calls = procs.tmp / "calls.log"
    env = worker_env(settings, queues, instant_provider_log=calls)
    env["PYTHONPATH"] += os.pathsep + str(ROOT / "lambda_src")
    # 1. The upload check moves the task to `queued` and dies before sending its message.
    _, first, key = await _uploaded(client, db, SAMPLE_WAV.read_bytes())
    killed = subprocess.run(
        [sys.executable, "-c", DIE_ON_SEND.format(body=LAMBDA_BODY), aws.bucket, key],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert await _state(db, first, TaskState.QUEUED) and queues.counts(aws.endpoint) == 0
    # 2. A worker dies between `summarizing` and the LLM message.
    (second,) = await queued_tasks(db, 1)
    task = await db.get_task(second)
    assert task is not None
    send_stt(aws.endpoint, queues.url, [stt_message(task.id, task.tenant_id, task.object_key)])
    dying = procs.start(
        "dying-worker",
        [
            sys.executable,
            "-c",
            DIE_ON_SEND.format(body="from aipp.worker.__main__ import main\nmain()"),
        ],
        {**env, "AIPP_RECONCILE_INTERVAL_SECONDS": "0"},
    )
    assert dying.wait(30) == -signal.SIGKILL
    assert await _state(db, second, TaskState.SUMMARIZING)
    # The STT message is still in flight (the dying worker held it); nothing carries the LLM step.
    # 3. A worker with the reconciler finds both and re-sends their messages; each completes once.
    procs.worker(
        {**env, "AIPP_RECONCILE_INTERVAL_SECONDS": "0.5", "AIPP_RECONCILE_AFTER_SECONDS": "2"}
    )
    await eventually("both tasks to complete", lambda: _state_all(db, [first, second]), 40)
    counted = provider_calls(calls)
    assert counted.count(("stt", str(first))) == 1 and counted.count(("llm", str(first))) == 1
    assert counted.count(("llm", str(second))) == 1
    await eventually("the queue to drain", lambda: _true(queues.counts(aws.endpoint) == 0), 40)
    assert queues.counts(aws.endpoint, queues.dlq_url) == 0


async def _state_all(db: Database, ids: list[uuid.UUID]) -> bool:
    return all([await _state(db, i, TaskState.COMPLETED) for i in ids])


async def test_a_task_deleted_mid_flight_leaves_nothing_behind(
    settings: Settings, db: Database, aws: AwsNames, client: httpx.AsyncClient, procs: Procs
) -> None:
    queues = make_queues(aws, visibility=3)
    calls = procs.tmp / "calls.log"
    auth, task_id, key = await _uploaded(client, db, SAMPLE_WAV.read_bytes())
    task = await db.get_task(task_id)
    assert task is not None
    assert (
        await upload.process_object(
            await upload.build_runtime(settings.model_copy(update={"stt_queue_url": queues.url})),
            aws.bucket,
            key,
        )
        == "queued"
    )
    worker = procs.worker(
        worker_env(settings, queues, instant_provider_delay_seconds=4, instant_provider_log=calls)
    )
    await eventually("the job to start", lambda: _state(db, task_id, TaskState.TRANSCRIBING), 30)
    assert (await client.delete(f"/v1/tasks/{task_id}", headers=auth)).status_code == 204
    await eventually(
        "the worker to drop the job",
        lambda: _true(any(e.get("outcome") == "deleted" for e in worker.log_lines())),
        20,
    )
    await asyncio.sleep(4.5)  # past the moment the provider would have answered
    for prefix in ("uploads/", "transcripts/", "results/"):
        assert bucket_keys(aws, f"{prefix}{task.tenant_id}/{task.id}") == [], prefix
    versions = aws_client(aws.endpoint, "s3").list_object_versions(
        Bucket=aws.bucket, Prefix=f"uploads/{task.tenant_id}/{task.id}/"
    )
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    assert provider_calls(calls) == []  # never transcribed, never summarized
    assert queues.counts(aws.endpoint) == 0 and queues.counts(aws.endpoint, queues.dlq_url) == 0
    assert (await client.get(f"/v1/tasks/{task_id}/result", headers=auth)).status_code == 404


BUGGY_SUMMARIZER = """
from aipp.worker.providers import instant
async def broken(self, transcript, language):
    raise RuntimeError("KeyError in /srv/app/internal-detail.py, password=hunter2")
instant.InstantSummarizer.summarize = broken
from aipp.worker.__main__ import main
main()
"""


async def test_an_internal_error_reads_as_a_stable_code_and_the_task_can_be_requeued(
    settings: Settings,
    db: Database,
    aws: AwsNames,
    client: httpx.AsyncClient,
    procs: Procs,
) -> None:
    queues = make_queues(aws)
    (task_id,) = await queued_tasks(db, 1)
    task = await db.get_task(task_id)
    assert task is not None
    auth = {"Authorization": f"Bearer {(await db.create_api_key(task.tenant_id))[1]}"}
    send_stt(aws.endpoint, queues.url, [stt_message(task.id, task.tenant_id, task.object_key)])
    env = worker_env(settings, queues)
    buggy = procs.start("buggy-worker", [sys.executable, "-c", BUGGY_SUMMARIZER], env)
    await eventually("the task to fail", lambda: _state(db, task_id, TaskState.FAILED), 40)
    buggy.stop()
    view = (await client.get(f"/v1/tasks/{task_id}", headers=auth)).json()
    assert view["error"]["code"] == "processing_error"
    for secret in ("hunter2", "internal-detail", "RuntimeError", "KeyError"):
        assert secret not in view["error"]["message"]
    assert any("internal-detail" in str(e.get("detail", "")) for e in buggy.log_lines())
    # Failed by exhausting its retries: an operator requeues it once the cause is fixed.
    requeued = admin(
        "requeue",
        "--task",
        str(task_id),
        AIPP_DATABASE_URL=settings.database_dsn(),
        AWS_ENDPOINT_URL=aws.endpoint,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AIPP_STT_QUEUE_URL=queues.url,
        AIPP_LLM_QUEUE_URL=queues.url,
        AIPP_AUDIO_BUCKET=aws.bucket,
    )
    assert requeued.returncode == 0, requeued.stderr
    procs.worker(env)
    await eventually(
        "the requeued task to complete", lambda: _state(db, task_id, TaskState.COMPLETED), 40
    )
    result = (await client.get(f"/v1/tasks/{task_id}/result", headers=auth)).json()
    assert result["summary"] == f"Summary: Instant transcript of task {task_id}."
    # A failure no retry can fix is not requeued.
    (bad,) = await queued_tasks(db, 1)
    await db.transition(
        bad, TaskState.QUEUED, TaskState.FAILED, error_code="unsupported_audio", error_message="x"
    )
    refused = admin("requeue", "--task", str(bad), AIPP_DATABASE_URL=settings.database_dsn())
    assert refused.returncode == 1 and "retryable" in refused.stderr


async def test_the_job_deadline_ends_an_attempt_and_the_task_fails_retryable(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs
) -> None:
    queues = make_queues(aws)
    (task_id,) = await queued_tasks(db, 1)
    task = await db.get_task(task_id)
    assert task is not None
    send_stt(aws.endpoint, queues.url, [stt_message(task.id, task.tenant_id, task.object_key)])
    procs.worker(
        worker_env(
            settings, queues, instant_provider_delay_seconds=30, worker_job_deadline_seconds=1
        )
    )
    await eventually("the task to fail", lambda: _state(db, task_id, TaskState.FAILED), 40)
    failed = await db.get_task(task_id)
    assert failed is not None and failed.error_code == "job_timeout" and failed.retryable
    assert "after 3 attempts" in (failed.error_message or "")
