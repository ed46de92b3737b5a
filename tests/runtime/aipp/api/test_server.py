"""`python -m aipp.api` (the image's command): one worker process per core it may use; with
several, new connections are spread across them (each listens on its own SO_REUSEPORT socket),
a worker that dies is replaced, SIGTERM stops them all gracefully, and a bad setting or a taken
port stops the server at once."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aipp.api.server import available_cores, worker_count
from aipp.core.config import Settings

from ...conftest import AwsNames, free_port, wait_listening

ROOT = Path(__file__).resolve().parents[4]


def server_env(settings: Settings, aws: AwsNames, port: int, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIPP_"))},
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
        "AIPP_DATABASE_URL": settings.database_dsn(),
        "AIPP_REDIS_URL": settings.redis_dsn(),
        "AIPP_AUDIO_BUCKET": aws.bucket,
        "AIPP_STT_QUEUE_URL": aws.queue_url,
        "AIPP_LLM_QUEUE_URL": aws.queue_url,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_REGION": "us-east-1",
        "AIPP_LOG_LEVEL": "WARNING",
        "UVICORN_PORT": str(port),
        "WEB_CONCURRENCY": "2",
        **extra,
    }


def run_server(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m aipp.api` run to its end (one that should not start)."""
    return subprocess.run(
        [sys.executable, "-m", "aipp.api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def workers_of(pid: int) -> set[int]:
    """The live worker processes of the server `pid` (not multiprocessing's resource tracker)."""
    workers = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.add(int(child))
        except OSError:
            continue  # exited meanwhile
    return workers


def connection_owners(port: int) -> collections.Counter[int]:
    """How many established connections to `port` each process holds."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", "sport", f"= :{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return collections.Counter(
        int(line.split("pid=")[1].split(",")[0]) for line in out.splitlines() if "pid=" in line
    )


def wait_for(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def serving(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def server(settings: Settings, aws: AwsNames) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aipp.api"],
        env=server_env(settings, aws, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        wait_for(lambda: len(workers_of(proc.pid)) == 2 and serving(f"http://127.0.0.1:{port}"))
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=40)


def test_a_burst_of_new_connections_is_spread_across_the_workers(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    """Sixteen keep-alive connections opened at once: with one shared socket, the first worker
    to wake would take nearly all of them."""
    proc, port = server

    async def burst() -> collections.Counter[int]:
        pairs = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(16))
        )
        for _, writer in pairs:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        for reader, _ in pairs:
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        owners = connection_owners(port)
        for _, writer in pairs:
            writer.close()
        return owners

    owners = asyncio.run(burst())
    assert set(owners) == workers_of(proc.pid), owners
    assert sum(owners.values()) == 16
    assert min(owners.values()) >= 2, owners  # all but one on one worker: 2 in 10,000 runs


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_them_all(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = server
    first = workers_of(proc.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in workers_of(proc.pid) and len(workers_of(proc.pid)) == 2)
    assert serving(f"http://127.0.0.1:{port}")

    workers = workers_of(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_bad_setting_stops_the_server_before_any_worker_starts(
    settings: Settings, aws: AwsNames
) -> None:
    result = run_server(server_env(settings, aws, free_port(), AIPP_AUDIO_BUCKET="x"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "invalid configuration from the environment:",
        "  AIPP_AUDIO_BUCKET: String should have at least 3 characters",
    ]


def test_a_port_in_use_stops_the_server_with_one_line(settings: Settings, aws: AwsNames) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server(server_env(settings, aws, port))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert len(result.stderr.splitlines()) == 1


def cpu_max(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    return path


def test_a_cpu_quota_caps_the_process_count_rounded_up(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert available_cores(cpu_max(tmp_path, "150000 100000\n")) == min(cores, 2)
    assert available_cores(cpu_max(tmp_path, "50000 100000\n")) == 1


def test_without_a_quota_every_core_of_the_process_counts(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert available_cores(cpu_max(tmp_path, "max 100000\n")) == cores
    assert available_cores(tmp_path / "absent") == cores


def test_web_concurrency_sets_the_count() -> None:
    assert worker_count({"WEB_CONCURRENCY": "3"}) == 3
    assert worker_count({}) == available_cores()


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_a_bad_web_concurrency_exits_2_with_one_line(bad: str) -> None:
    result = run_server(
        {**os.environ, "PYTHONPATH": str(ROOT / "worker_images"), "WEB_CONCURRENCY": bad}
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: WEB_CONCURRENCY must be a whole number of processes >= 1, not {bad!r}"
    )
