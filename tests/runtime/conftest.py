"""Real services for the runtime tests.

PostgreSQL and Redis over real connections (`DATABASE_URL`, `REDIS_URL`, localhost by default);
S3 and SQS through moto's server, started here as a subprocess on a free loopback port. A missing
service fails the run: nothing here skips. Each test module gets its own fresh database (created
with a unique name, migrated, dropped at the end), its own bucket and its own queue.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import boto3
import httpx
import pytest
import pytest_asyncio
from aipp.api.main import create_app
from aipp.core.config import Settings
from aipp.core.db import Database, NewTask, create_pool
from aipp.core.migrate import upgrade
from aipp.core.models import TaskState
from fastapi import FastAPI

from aipp_contract.keys import upload_key

ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
HERE = Path(__file__).resolve().parent


# Every async runtime test runs on the session's event loop (the pools live there): modules set
# `pytestmark = ON_SESSION_LOOP`.
ON_SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {seconds}s")


def wait_postgres_accepting(
    bindir: Path, port: int, proc: subprocess.Popen[bytes], seconds: float = 60
) -> None:
    """A PostgreSQL server started by a test: it listens before it accepts connections ("the
    database system is starting up"), so wait for both, the second as `pg_isready` tells."""
    wait_listening(port, proc, seconds)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL on 127.0.0.1:{port} not accepting connections after {seconds}s")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aipp.dev.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1] / "worker_images")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def empty_database() -> Iterator[str]:
    """A brand-new, unmigrated database; dropped when the module ends."""
    name = f"aipp_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(ADMIN_DSN, name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def database_url(empty_database: str) -> str:
    upgrade(empty_database)
    return empty_database


@dataclass(frozen=True)
class AwsNames:
    endpoint: str
    bucket: str
    queue_url: str


@functools.cache
def aws_client(endpoint: str, service: str) -> Any:
    """A plain boto3 client on moto's server, to look at what the code under test did (one per
    endpoint and service for the whole run: making a client costs 50-150 ms of CPU)."""
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def aws(moto_endpoint: str) -> AwsNames:
    suffix = uuid.uuid4().hex[:10]
    bucket = f"aipp-test-{suffix}"
    aws_client(moto_endpoint, "s3").create_bucket(Bucket=bucket)
    url = aws_client(moto_endpoint, "sqs").create_queue(QueueName=f"aipp-test-{suffix}")["QueueUrl"]
    return AwsNames(endpoint=moto_endpoint, bucket=bucket, queue_url=url)


def make_settings(database_url: str, aws: AwsNames, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "audio_bucket": aws.bucket,
        "stt_queue_url": aws.queue_url,
        "llm_queue_url": aws.queue_url,
        "aws_endpoint_url": aws.endpoint,
        "aws_region": "us-east-1",
        "max_upload_bytes": 1024 * 1024,
        "max_multipart_bytes": 1024 * 1024,
        "allowed_content_types": ("audio/mpeg", "audio/wav", "audio/flac", "audio/ogg"),
        "rate_limit_per_minute": 100_000,
        "rate_limit_burst": 10_000,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def settings(database_url: str, aws: AwsNames) -> Settings:
    return make_settings(database_url, aws)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(await create_pool(settings))
    yield database
    await database.close()


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan started, and an HTTP client talking to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield app, client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture(scope="module")
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


async def new_key(db: Database, tenant: str | None = None) -> dict[str, str]:
    """Auth headers for a new key of `tenant` (a new tenant when not named)."""
    tenant_id = await db.ensure_tenant(tenant or f"tenant-{uuid.uuid4().hex[:8]}")
    _, key = await db.create_api_key(tenant_id)
    return {"Authorization": f"Bearer {key}"}


def new_task(
    tenant_id: uuid.UUID,
    idempotency_key: str | None = None,
    *,
    state: TaskState = TaskState.AWAITING_UPLOAD,
    filename: str = "a.wav",
    size_bytes: int = 10,
    language: str | None = None,
) -> NewTask:
    """A new task of `tenant_id`, by default awaiting its upload as a JSON create makes it."""
    task_id = uuid.uuid4()
    return NewTask(
        id=task_id,
        tenant_id=tenant_id,
        state=state,
        filename=filename,
        object_key=upload_key(tenant_id, task_id, filename),
        content_type="audio/wav",
        size_bytes=size_bytes,
        language=language,
        idempotency_key=idempotency_key,
    )


def wav_bytes(size: int = 2048) -> bytes:
    """A small, valid-looking WAV file (RIFF/WAVE header, silence)."""
    header = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVEfmt "
    return header + bytes(size - len(header))


def bucket_keys(aws: AwsNames, prefix: str = "") -> list[str]:
    listing = aws_client(aws.endpoint, "s3").list_objects_v2(Bucket=aws.bucket, Prefix=prefix)
    return [obj["Key"] for obj in listing.get("Contents", [])]


def drain_queue(aws: AwsNames) -> list[dict[str, Any]]:
    """Every message waiting in the module's queue (received and deleted)."""
    sqs = aws_client(aws.endpoint, "sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=aws.queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"])
        messages.extend(batch)
