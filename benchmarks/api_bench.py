# ruff: noqa: S603 - runs our own fixed commands (the server, moto, the admin CLI)
"""Task API benchmark (`make bench-api`): create-task and get-task throughput and latency.

Runs the real server process (uvicorn, one worker) against real PostgreSQL and Redis, with S3 and
SQS on moto's server, all on loopback; drives it at 1, 16 and 64 concurrent clients; prints a
table and writes JSON under benchmarks/results/. Not a test: numbers depend on the machine, and
the load generator shares the CPU with the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from support import ADMIN_DSN, REDIS_URL, RESULTS, admin_sql, free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 16, 64)
DURATION_SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
BODY = {"filename": "bench.mp3", "content_type": "audio/mpeg", "size_bytes": 1_000_000}


def run(cmd: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=120)
    return out.stdout


class Connection:
    """One keep-alive HTTP/1.1 connection. A deliberately lean client: a general-purpose one
    (httpx) spends more CPU than the server at 64 connections on 2 cores, and would measure
    itself instead of the API."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {key}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        extra = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if body else ""
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{self.auth}{extra}\r\n"
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line, *header_lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def measure(port: int, key: str, concurrency: int, make_request: Any) -> dict[str, Any]:
    """Each of `concurrency` clients sends requests back to back for DURATION_SECONDS."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + DURATION_SECONDS

    async def one_client(index: int) -> None:
        nonlocal errors
        conn = Connection(port, key)
        n = 0
        try:
            while time.perf_counter() < stop:
                start = time.perf_counter()
                status = await make_request(conn, index, n)
                latencies.append(time.perf_counter() - start)
                if status >= 400:
                    errors += 1
                n += 1
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(one_client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "requests": len(ordered),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(ordered) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


async def bench(port: int, key: str) -> list[dict[str, Any]]:
    created: list[str] = []
    rows: list[dict[str, Any]] = []
    body = json.dumps(BODY).encode()

    async def create(conn: Connection, index: int, n: int) -> int:
        status, payload = await conn.request("POST", "/v1/tasks", body)
        if status == 201:
            created.append(json.loads(payload)["id"])
        return status

    async def get(conn: Connection, index: int, n: int) -> int:
        task_id = created[(index * 7919 + n) % len(created)]
        status, _ = await conn.request("GET", f"/v1/tasks/{task_id}")
        return status

    for concurrency in CONCURRENCY:
        for name, fn in (("create-task", create), ("get-task", get)):
            row = {"operation": name, **await measure(port, key, concurrency, fn)}
            rows.append(row)
            print(
                f"  {name:<12} c={concurrency:<3} {row['throughput_rps']:>8} req/s"
                f"  p50 {row['p50_ms']:>7} ms  p99 {row['p99_ms']:>7} ms"
                f"  ({row['requests']} requests, {row['errors']} errors)",
                flush=True,
            )
    return rows


def main() -> int:
    name = f"aipp_bench_{uuid.uuid4().hex[:10]}"
    database_url = urlunsplit(urlsplit(ADMIN_DSN)._replace(path=f"/{name}"))
    moto_port, api_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
        "AIPP_DATABASE_URL": database_url,
        "AIPP_REDIS_URL": REDIS_URL,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AIPP_AUDIO_BUCKET": "aipp-bench",
        "AIPP_STT_QUEUE_URL": f"{endpoint}/123456789012/aipp-bench",
        "AIPP_LLM_QUEUE_URL": f"{endpoint}/123456789012/aipp-bench",
        "AIPP_RATE_LIMIT_PER_MINUTE": "100000000",
        "AIPP_RATE_LIMIT_BURST": "100000000",
        "AIPP_DB_POOL_MIN": "4",
        "AIPP_DB_POOL_MAX": "20",
        "AIPP_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(moto)
        wait_listening(moto_port)
        admin = [sys.executable, "-m", "aipp.admin"]
        run([*admin, "migrate"], env)
        run([*admin, "init-local-aws"], env)
        key = run([*admin, "create-api-key", "--tenant", "bench"], env).strip().splitlines()[-1]
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "aipp.api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(server)
        wait_listening(api_port)
        print(
            f"task API benchmark: uvicorn (1 process) on {os.cpu_count()} cores, "
            f"{DURATION_SECONDS:g} s per step, client on the same machine"
        )
        rows = asyncio.run(bench(api_port, key))
    finally:
        for proc in reversed(processes):
            proc.terminate()
            proc.wait(timeout=10)
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    header = (
        f"{'operation':<12} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        print(
            f"{row['operation']:<12} {row['concurrency']:>7} {row['throughput_rps']:>9}"
            f" {row['p50_ms']:>8} {row['p99_ms']:>8} {row['errors']:>6}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"api_bench-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "when": stamp,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "seconds_per_step": DURATION_SECONDS,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
