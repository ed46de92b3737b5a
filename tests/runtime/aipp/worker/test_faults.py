"""Faults: every task ends `completed` or `failed` with a reason; none is lost or done twice."""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import Task, TaskState

from tests.runtime.conftest import (
    ADMIN_DSN,
    ON_SESSION_LOOP,
    REDIS_URL,
    AwsNames,
    aws_client,
    free_port,
)

from .conftest import (
    SAMPLE_WAV,
    Procs,
    Queues,
    Webhooks,
    all_settled,
    eventually,
    make_queues,
    provider_calls,
    queued_tasks,
    send_stt,
    states,
    stt_message,
    worker_env,
)

pytestmark = ON_SESSION_LOOP


async def _tasks(db: Database, ids: list[uuid.UUID]) -> list[Task]:
    found = [await db.get_task(i) for i in ids]
    return [t for t in found if t is not None]


async def _queue(
    db: Database, aws: AwsNames, queues: Queues, count: int, twice: bool = False
) -> list[uuid.UUID]:
    ids = await queued_tasks(db, count)
    messages = [stt_message(t.id, t.tenant_id, t.object_key) for t in await _tasks(db, ids)]
    send_stt(aws.endpoint, queues.url, [m for m in messages for _ in range(2 if twice else 1)])
    return ids


async def _in_state(db: Database, ids: list[uuid.UUID], state: TaskState) -> bool:
    found = await states(db, ids)
    return len(found) == len(ids) and all(s is state for s in found.values())


async def _assert_done_once(
    db: Database, ids: list[uuid.UUID], calls: Path, aws: AwsNames, queues: Queues
) -> None:
    for task in await _tasks(db, ids):
        assert task.state is TaskState.COMPLETED, (task.state, task.error_code, task.error_message)
        assert task.summary == f"Summary: Instant transcript of task {task.id}."
    counted = Counter(provider_calls(calls))
    for task_id in ids:
        assert counted[("stt", str(task_id))] == 1, "transcribed more than once"
        assert counted[("llm", str(task_id))] == 1, "summarized more than once"
    await eventually("the queue to drain", lambda: _true(queues.counts(aws.endpoint) == 0), 30)
    assert queues.counts(aws.endpoint, queues.dlq_url) == 0


async def _true(value: bool) -> bool:
    return value


async def test_worker_killed_mid_job_its_messages_reappear_and_complete_once(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs, webhooks: Webhooks
) -> None:
    queues = make_queues(aws, visibility=2)
    calls = procs.tmp / "calls.log"
    ids = await _queue(db, aws, queues, 3)
    doomed = procs.worker(
        worker_env(settings, queues, instant_provider_delay_seconds=30, instant_provider_log=calls)
    )
    await eventually("the jobs to start", lambda: _in_state(db, ids, TaskState.TRANSCRIBING))
    doomed.signal(signal.SIGKILL)
    doomed.wait(10)
    procs.worker(worker_env(settings, queues, instant_provider_log=calls, webhook_url=webhooks.url))
    await eventually("every task to finish", lambda: all_settled(db, ids))
    await _assert_done_once(db, ids, calls, aws, queues)
    assert all(webhooks.count(i) == 1 for i in ids)


async def test_the_same_message_delivered_twice_at_once_is_processed_once(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs, webhooks: Webhooks
) -> None:
    queues = make_queues(aws)
    calls = procs.tmp / "calls.log"
    ids = await _queue(db, aws, queues, 4, twice=True)
    env = worker_env(
        settings,
        queues,
        worker_concurrency=8,
        instant_provider_delay_seconds=1,
        instant_provider_log=calls,
        webhook_url=webhooks.url,
    )
    procs.worker(env)
    procs.worker(env)
    await eventually("every task to finish", lambda: all_settled(db, ids))
    await _assert_done_once(db, ids, calls, aws, queues)
    assert all(webhooks.count(i) == 1 for i in ids)


async def test_corrupt_audio_goes_to_the_dlq_and_its_task_fails_with_the_reason(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs
) -> None:
    queues = make_queues(aws)
    poison, good = await queued_tasks(db, 2)
    s3 = aws_client(aws.endpoint, "s3")
    tasks = await _tasks(db, [poison, good])
    corrupt = b"RIFF" + (2040).to_bytes(4, "little") + b"WAVEfmt " + bytes(2036)
    s3.put_object(Bucket=aws.bucket, Key=tasks[0].object_key, Body=corrupt)
    s3.put_object(Bucket=aws.bucket, Key=tasks[1].object_key, Body=SAMPLE_WAV.read_bytes())
    send_stt(
        aws.endpoint, queues.url, [stt_message(t.id, t.tenant_id, t.object_key) for t in tasks]
    )
    procs.worker(
        worker_env(settings, queues, stt_provider="pocketsphinx", llm_provider="extractive")
    )
    await eventually("both tasks to finish", lambda: all_settled(db, [poison, good]), 90)
    failed, completed = await _tasks(db, [poison, good])
    assert completed.state is TaskState.COMPLETED and completed.summary
    assert failed.state is TaskState.FAILED
    assert failed.error_code == "corrupt_audio"
    assert failed.error_message and "after 3 attempts" in failed.error_message
    await eventually(
        "the poison message in the DLQ",
        lambda: _true(
            queues.counts(aws.endpoint, queues.dlq_url) == 1 and queues.counts(aws.endpoint) == 0
        ),
        30,
    )


async def _terminate_worker_sessions(database: str) -> int:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = 'aipp-worker'",
            database,
        )
        return len(rows)
    finally:
        await conn.close()


async def test_postgres_connections_killed_mid_run_every_task_still_completes(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs
) -> None:
    queues = make_queues(aws)
    calls = procs.tmp / "calls.log"
    ids = await _queue(db, aws, queues, 20)
    procs.worker(
        worker_env(settings, queues, instant_provider_delay_seconds=0.3, instant_provider_log=calls)
    )
    database = settings.database_dsn().rsplit("/", 1)[1]
    terminated = 0
    for _ in range(4):
        await eventually("worker sessions", lambda: _terminate_worker_sessions(database), 30)
        terminated += 1
        await asyncio.sleep(0.5)
    assert terminated == 4
    await eventually("every task to finish", lambda: all_settled(db, ids), 90)
    for task in await _tasks(db, ids):
        assert task.state is TaskState.COMPLETED, (task.error_code, task.error_message)
        assert task.summary == f"Summary: Instant transcript of task {task.id}."
    await eventually("the queue to drain", lambda: _true(queues.counts(aws.endpoint) == 0), 30)
    assert queues.counts(aws.endpoint, queues.dlq_url) == 0


class TcpProxy:
    """127.0.0.1:<port> → Redis, in a thread; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self._listen())

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        self._call(self._cut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def test_redis_unavailable_for_a_few_seconds_every_task_completes_once(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs
) -> None:
    queues = make_queues(aws)
    calls = procs.tmp / "calls.log"
    host_port = REDIS_URL.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy((host, int(port)))
    try:
        ids = await _queue(db, aws, queues, 12)
        procs.worker(
            worker_env(
                settings,
                queues,
                redis_url=f"redis://127.0.0.1:{proxy.port}/0",
                instant_provider_delay_seconds=0.5,
                instant_provider_log=calls,
                worker_concurrency=2,
            )
        )
        await eventually("work to begin", lambda: _true(len(provider_calls(calls)) >= 2), 30)
        proxy.cut()
        await asyncio.sleep(3)
        proxy.restore()
        await eventually("every task to finish", lambda: all_settled(db, ids), 90)
        await _assert_done_once(db, ids, calls, aws, queues)
    finally:
        proxy.close()


def _visible(aws: AwsNames, queues: Queues) -> int:
    """Messages anyone could receive right now (not hidden by a worker)."""
    attrs = aws_client(aws.endpoint, "sqs").get_queue_attributes(
        QueueUrl=queues.url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


async def test_sigterm_finishes_in_flight_jobs_and_releases_the_rest_at_once(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs
) -> None:
    queues = make_queues(aws, visibility=60)
    calls = procs.tmp / "calls.log"

    # In flight and short enough: finished after SIGTERM, and nothing new is taken.
    quick = await _queue(db, aws, queues, 2)
    first = procs.worker(
        worker_env(
            settings,
            queues,
            worker_concurrency=2,
            instant_provider_delay_seconds=2,
            instant_provider_log=calls,
        )
    )
    await eventually("both jobs to start", lambda: _in_state(db, quick, TaskState.TRANSCRIBING))
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    # Their transcription finished; the LLM messages they sent were left for others.
    assert await _in_state(db, quick, TaskState.SUMMARIZING)
    assert _visible(aws, queues) == 2

    # Too long for the grace period: released at once (visibility 0), not after 60 s.
    other = make_queues(aws, visibility=60)
    slow = await _queue(db, aws, other, 1)
    second = procs.worker(
        worker_env(
            settings,
            other,
            worker_concurrency=1,
            instant_provider_delay_seconds=600,
            worker_shutdown_grace_seconds=1,
            instant_provider_log=calls,
        )
    )
    await eventually("the long job to start", lambda: _in_state(db, slow, TaskState.TRANSCRIBING))
    assert _visible(aws, other) == 0
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
    assert _visible(aws, other) == 1

    procs.worker(worker_env(settings, other, instant_provider_log=calls))
    procs.worker(worker_env(settings, queues, instant_provider_log=calls))
    await eventually("every task to finish", lambda: all_settled(db, quick + slow), 60)
    await _assert_done_once(db, quick + slow, calls, aws, queues)
    await eventually("the other queue to drain", lambda: _true(other.counts(aws.endpoint) == 0), 30)
