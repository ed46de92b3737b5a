"""Bounded memory per request, measured on a real API process (uvicorn): oversized bodies sent
concurrently, chunked so that only the bytes actually read can stop them, leave the process's
peak resident memory (VmHWM) where it was; files within the multipart cap are spooled to disk
and streamed to S3, not held in memory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aipp.core.config import Settings
from aipp.core.db import Database

from ...conftest import ON_SESSION_LOOP, AwsNames, bucket_keys, free_port, new_key, wait_listening

pytestmark = ON_SESSION_LOOP

ROOT = Path(__file__).resolve().parents[4]
MIB = 1024 * 1024
OVERSIZED = 48 * MIB
MULTIPART_CAP = 4 * MIB


@pytest.fixture
def api_process(settings: Settings, aws: AwsNames, tmp_path: Path) -> Iterator[tuple[int, str]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIPP_"))},
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
        "AIPP_DATABASE_URL": settings.database_dsn(),
        "AIPP_REDIS_URL": settings.redis_dsn(),
        "AIPP_AUDIO_BUCKET": aws.bucket,
        "AIPP_STT_QUEUE_URL": aws.queue_url,
        "AIPP_LLM_QUEUE_URL": aws.queue_url,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_REGION": "us-east-1",
        "AIPP_MAX_UPLOAD_BYTES": str(500 * MIB),  # the presigned-upload limit the stacks use
        "AIPP_MAX_MULTIPART_BYTES": str(MULTIPART_CAP),
        "AIPP_LOG_LEVEL": "WARNING",
        "TMPDIR": str(tmp_path),
    }
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "aipp.api.main:app",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        wait_listening(port, proc)
        yield proc.pid, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def chunks(head: bytes, size: int, tail: bytes = b"") -> AsyncIterator[bytes]:
    """A body of `size` bytes, sent chunked (no Content-Length to refuse it by)."""
    yield head
    sent = len(head)
    block = bytes(MIB)
    while sent < size - len(tail):
        piece = block[: min(MIB, size - len(tail) - sent)]
        sent += len(piece)
        yield piece
    yield tail


def multipart(size: int) -> tuple[str, AsyncIterator[bytes]]:
    boundary = uuid.uuid4().hex
    wav = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVEfmt "
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode() + wav
    tail = f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", chunks(head, size, tail)


async def send(client: httpx.AsyncClient, auth: dict[str, str], kind: str, size: int) -> int:
    if kind == "json":
        content_type, body = "application/json", chunks(b'{"filename": "', size, b'"}')
    else:
        content_type, body = multipart(size)
    try:
        answer = await client.post(
            "/v1/tasks", content=body, headers={**auth, "Content-Type": content_type}
        )
    except httpx.TransportError:
        return 0  # the server closed the connection after its 413, while we were still sending
    return answer.status_code


async def test_oversized_bodies_sent_at_once_do_not_grow_the_api_process(
    api_process: tuple[int, str], db: Database, aws: AwsNames
) -> None:
    pid, url = api_process
    auth = await new_key(db)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        assert (await client.get("/v1/tasks", headers=auth)).status_code == 200  # warm
        before = peak_rss(pid)
        statuses = await asyncio.gather(
            *(send(client, auth, kind, OVERSIZED) for kind in ["json", "multipart"] * 4)
        )
        assert set(statuses) <= {413, 0}, statuses
        flood = peak_rss(pid) - before
        # Whether or not the client still read it, the server answered each one 413.
        metrics = (await client.get("/metrics")).text
        refused = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("aipp_http_requests_total{") and 'status="413"' in line
        )
        assert refused == 8
        # Files within the multipart cap are accepted, without holding them in memory either.
        accepted = await asyncio.gather(
            *(send(client, auth, "multipart", MULTIPART_CAP - 64 * 1024) for _ in range(4))
        )
        assert accepted == [201] * 4
        within = peak_rss(pid) - before
    print(
        f"peak RSS growth: oversized flood {flood / MIB:.1f} MiB, 4 x 4 MiB uploads {within / MIB:.1f} MiB"
    )
    # 8 x 48 MiB were offered; a process that read them into memory would grow by hundreds of MiB.
    assert flood < 32 * MIB
    assert within < 48 * MIB
    assert len(bucket_keys(aws, "uploads/")) >= 4
