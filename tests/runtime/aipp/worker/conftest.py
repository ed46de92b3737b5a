"""Real worker processes (`python -m aipp.worker`) against real PostgreSQL and Redis and moto's
server, plus the helpers the worker tests share. Every process started here is stopped at the end
of its test, also when the test fails."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import TaskState, TaskType
from aipp.core.queue import TASK_TYPE_ATTRIBUTE, TaskMessage

from aipp_contract.env import env_name
from tests.runtime.conftest import (
    REDIS_URL,
    AwsNames,
    aws_client,
    free_port,
    new_task,
    wait_listening,
)

ROOT = Path(__file__).resolve().parents[4]
SAMPLE_WAV = ROOT / "worker_images" / "samples" / "demo.wav"
MAX_RECEIVES = 3


def wait_for(what: str, check: Callable[[], Any], seconds: float = 60.0, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` if it never does."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {seconds:.0f} s")
        time.sleep(every)


@dataclass(frozen=True)
class Queues:
    url: str
    dlq_url: str

    def counts(self, endpoint: str, url: str | None = None) -> int:
        """Messages in a queue, visible or in flight."""
        attrs = aws_client(endpoint, "sqs").get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )


def make_queues(aws: AwsNames, visibility: int = 30) -> Queues:
    sqs = aws_client(aws.endpoint, "sqs")
    name = f"aipp-w-{uuid.uuid4().hex[:10]}"
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVES}
            ),
        },
    )["QueueUrl"]
    return Queues(url=url, dlq_url=dlq)


def worker_env(settings: Settings, queues: Queues, **overrides: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIPP_", "ECS_"))}
    env.update(
        {
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
            "AIPP_DATABASE_URL": settings.database_dsn(),
            "AIPP_REDIS_URL": settings.redis_dsn(),
            "AIPP_AUDIO_BUCKET": settings.audio_bucket,
            "AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AIPP_STT_QUEUE_URL": queues.url,
            "AIPP_LLM_QUEUE_URL": queues.url,
            "AIPP_WORKER_QUEUE_URL": queues.url,
            "AIPP_WORKER_DLQ_URL": queues.dlq_url,
            "AIPP_WORKER_TASK_TYPES": "stt,llm",
            "AIPP_WORKER_CONCURRENCY": "4",
            "AIPP_WORKER_WAIT_SECONDS": "1",
            "AIPP_WORKER_RETRY_BASE_SECONDS": "1",
            "AIPP_WORKER_SHUTDOWN_GRACE_SECONDS": "20",
            "AIPP_WORKER_HEARTBEAT_FILE": "",
            "AIPP_MAX_RECEIVE_COUNT": str(MAX_RECEIVES),
            "AIPP_STT_PROVIDER": "instant",
            "AIPP_LLM_PROVIDER": "instant",
            "AIPP_LOG_LEVEL": "INFO",
        }
    )
    env.update({env_name(k): str(v) for k, v in overrides.items()})
    return env


@contextmanager
def dev_stack(settings: Settings, aws: AwsNames, log: Path, **overrides: Any) -> Iterator[str]:
    """`WITH_WORKER=1 dev-api.sh` (what `make dev` runs: the API, a worker with the local
    providers, the S3-events stand-in) on the test's moto, database and a new queue pair; its
    base URL. Stopped like Ctrl-C in a terminal when the block ends; its output is printed when
    the block fails."""
    api_port = free_port()
    env = worker_env(
        settings,
        make_queues(aws),
        stt_provider="pocketsphinx",
        llm_provider="extractive",
        worker_concurrency=2,
        log_level="WARNING",
        **overrides,
    )
    env.update(
        PY=sys.executable,
        WITH_WORKER="1",
        MOTO_PORT=str(urlsplit(aws.endpoint).port),  # already listening: the script reuses it
        API_PORT=str(api_port),
    )
    with log.open("wb") as out:
        dev = subprocess.Popen(
            ["bash", str(ROOT / "worker_images" / "dev-api.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the whole group, as in a terminal
        )
    try:
        wait_listening(api_port, dev, 90)
        yield f"http://127.0.0.1:{api_port}"
    except BaseException:
        print(log.read_text(errors="replace")[-6000:])
        raise
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGINT)
            try:
                dev.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
                dev.wait(timeout=10)


@dataclass
class Proc:
    """A subprocess with its output in a file; stopped for sure when the test ends."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, seconds: float) -> int:
        return self.popen.wait(timeout=seconds)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"message": raw})
        return lines


@dataclass
class Procs:
    tmp: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.tmp / f"{name}-{len(self.started)}.log"
        out = log_path.open("wb")
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        out.close()
        proc = Proc(name=name, popen=popen, log_path=log_path)
        self.started.append(proc)
        return proc

    def worker(self, env: dict[str, str]) -> Proc:
        return self.start("worker", [sys.executable, "-m", "aipp.worker"], env)

    def api(self, env: dict[str, str]) -> tuple[Proc, str]:
        port = free_port()
        proc = self.start(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "aipp.api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            env,
        )
        wait_listening(port, proc.popen)
        return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Procs]:
    running = Procs(tmp_path)
    try:
        yield running
    finally:
        for proc in running.started:
            proc.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for proc in running.started:  # the worker's own words help most when a test fails
                print(f"--- {proc.name} ({proc.log_path}) ---")
                print(proc.log_path.read_text(errors="replace")[-6000:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class Webhooks:
    """A local webhook receiver: every POST body, with its headers."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in list(self.received)]

    def count(self, task_id: uuid.UUID, event: str = "task.completed") -> int:
        return sum(
            1 for e in self.events() if e["task"]["id"] == str(task_id) and e["event"] == event
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    hooks = Webhooks()
    try:
        yield hooks
    finally:
        hooks.close()


async def queued_tasks(db: Database, count: int, tenant: str | None = None) -> list[uuid.UUID]:
    """`count` tasks already `queued`, as the API or the upload Lambda leaves them."""
    tenant_id = await db.ensure_tenant(tenant or f"tenant-{uuid.uuid4().hex[:8]}")
    ids = []
    for _ in range(count):
        new = new_task(
            tenant_id,
            state=TaskState.QUEUED,
            filename="talk.wav",
            size_bytes=1000,
            language="en-US",
        )
        await db.insert_task(new)
        ids.append(new.id)
    return ids


def stt_message(task_id: uuid.UUID, tenant_id: uuid.UUID, key: str) -> TaskMessage:
    return TaskMessage(task_id=task_id, tenant_id=tenant_id, object_key=key, task_type=TaskType.STT)


def send_stt(endpoint: str, queue_url: str, messages: list[TaskMessage]) -> None:
    """Send in batches of ten, as a producer under load would."""
    sqs = aws_client(endpoint, "sqs")
    for start in range(0, len(messages), 10):
        batch = messages[start : start + 10]
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": m.model_dump_json(),
                    "MessageAttributes": {
                        TASK_TYPE_ATTRIBUTE: {
                            "DataType": "String",
                            "StringValue": m.task_type.value,
                        }
                    },
                }
                for i, m in enumerate(batch)
            ],
        )


def provider_calls(path: Path) -> list[tuple[str, str]]:
    """(kind, task id) of every instant-provider call the workers made."""
    if not path.exists():
        return []
    return [tuple(line.split()[:2]) for line in path.read_text().splitlines()]  # type: ignore[misc]


__all__ = ["REDIS_URL"]


async def eventually(what: str, check: Callable[[], Any], seconds: float = 60.0) -> Any:
    """Await `check()` until it gives something truthy; fail naming `what` if it never does."""
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {seconds:.0f} s")
        await asyncio.sleep(0.1)


async def states(db: Database, ids: list[uuid.UUID]) -> dict[uuid.UUID, TaskState]:
    rows = await db.pool.fetch("SELECT id, state FROM tasks WHERE id = ANY($1::uuid[])", ids)
    return {r["id"]: TaskState(r["state"]) for r in rows}


async def all_settled(db: Database, ids: list[uuid.UUID]) -> bool:
    found = await states(db, ids)
    return len(found) == len(ids) and all(
        s in (TaskState.COMPLETED, TaskState.FAILED) for s in found.values()
    )
