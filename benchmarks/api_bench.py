# ruff: noqa: S603 - runs our own fixed commands (the server, moto, the admin CLI, pgbench)
"""Task API benchmark (`make bench-api`): what a request costs, beside what PostgreSQL costs.

Runs the API as the image does (`python -m aipp.api`: one uvicorn process per core, or
BENCH_WORKERS) against real PostgreSQL and Redis, with S3 and SQS on moto's server, all on
loopback; drives it at 1, 16 and 64 concurrent clients and reports per step:
- throughput, p50 and p99 latency;
- CPU seconds the API processes used per request (user + system, all worker processes), the
  figure that noise from other work on the machine disturbs least, beside those of the client
  and of PostgreSQL, and how busy the machine's cores were;
and, measured in the same run, the anchor: PostgreSQL's own single-row INSERT + COMMIT rate
(pgbench, 16 clients, prepared statements, a row shaped like a task), with each API rate at 16
clients as a share of it. Prints a table and writes JSON under benchmarks/results/. Not a test:
the load generator shares the cores with the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from support import (
    ADMIN_DSN,
    REDIS_URL,
    RESULTS,
    admin_sql,
    conditions,
    free_port,
    machine_jiffies,
    named_cpu_seconds,
    tree_cpu_seconds,
    wait_listening,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "worker_images"))

from aipp.core.db import Database  # noqa: E402

CONCURRENCY = (1, 16, 64)
ANCHOR_CLIENTS = 16
DURATION_SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
WARM_UP_SECONDS = min(2.0, DURATION_SECONDS)
PGBENCH = shutil.which("pgbench") or "pgbench"
WORKERS = os.environ.get("BENCH_WORKERS", "")  # empty: the image's default (one per core)
BODY = {"filename": "bench.mp3", "content_type": "audio/mpeg", "size_bytes": 1_000_000}
# Targets on the 2-core development machine (shares of the anchor at 16 clients; ms at 1 client).
TARGETS = {"create-task": 0.12, "get-task": 0.25}
P99_TARGET_MS = 5.0
PGBENCH_TABLE = """
CREATE TABLE bench_rows (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL,
    state text NOT NULL,
    filename text NOT NULL,
    size_bytes bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
PGBENCH_INSERT = (
    "INSERT INTO bench_rows (tenant_id, state, filename, size_bytes)"
    " VALUES ('2b1e6f1c-8a3e-4c59-9f0e-0d6c1f3f5a11', 'awaiting_upload', 'bench.mp3', 1000000);\n"
)


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


async def measure(
    port: int,
    keys: list[str],
    concurrency: int,
    make_request: Any,
    *,
    server_pid: int,
    seconds: float,
) -> dict[str, Any]:
    """Each of `concurrency` clients (client i with key i) sends requests back to back for
    `seconds`."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def one_client(index: int) -> None:
        nonlocal errors
        conn = Connection(port, keys[index])
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

    server_cpu, database_cpu = tree_cpu_seconds(server_pid), named_cpu_seconds("postgres")
    busy, ticks = machine_jiffies()
    client_cpu = time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(one_client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    server_cpu = tree_cpu_seconds(server_pid) - server_cpu
    database_cpu = named_cpu_seconds("postgres") - database_cpu
    client_cpu = time.process_time() - client_cpu
    busy, ticks = (a - b for a, b in zip(machine_jiffies(), (busy, ticks), strict=True))
    ordered = sorted(latencies)
    count = len(ordered)
    return {
        "concurrency": concurrency,
        "requests": count,
        "errors": errors,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(count / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(count - 1, int(count * 0.99))] * 1000, 2),
        "api_cpu_ms_per_request": round(server_cpu / count * 1000, 3),
        "client_cpu_ms_per_request": round(client_cpu / count * 1000, 3),
        "database_cpu_ms_per_request": round(database_cpu / count * 1000, 3),
        "machine_busy_percent": round(100 * busy / max(1, ticks), 1),
    }


async def bench(
    port: int, keys: list[str], server_pid: int, database_url: str
) -> list[dict[str, Any]]:
    created: list[list[str]] = [[] for _ in keys]
    rows: list[dict[str, Any]] = []
    body = json.dumps(BODY).encode()

    async def create(conn: Connection, index: int, n: int) -> int:
        status, payload = await conn.request("POST", "/v1/tasks", body)
        if status == 201:
            created[index].append(json.loads(payload)["id"])
        return status

    async def get(conn: Connection, index: int, n: int) -> int:
        mine = created[index]
        status, _ = await conn.request("GET", f"/v1/tasks/{mine[(n * 7919) % len(mine)]}")
        return status

    async def step(concurrency: int, fn: Any, seconds: float) -> dict[str, Any]:
        result = await measure(port, keys, concurrency, fn, server_pid=server_pid, seconds=seconds)
        # Between steps, not measured: the tasks just created stop counting as in flight, as
        # their uploads would, so each tenant's quota check sees its recent tasks only.
        await settle(database_url)
        return result

    # Warm every worker process (pools, prepared statements, scripts) before measuring.
    await step(max(CONCURRENCY), create, WARM_UP_SECONDS)
    await step(max(CONCURRENCY), get, WARM_UP_SECONDS)
    for concurrency in CONCURRENCY:
        for name, fn in (("create-task", create), ("get-task", get)):
            row = {"operation": name, **await step(concurrency, fn, DURATION_SECONDS)}
            rows.append(row)
            print(
                f"  {name:<12} c={concurrency:<3} {row['throughput_rps']:>8} req/s"
                f"  p50 {row['p50_ms']:>7} ms  p99 {row['p99_ms']:>7} ms"
                f"  API CPU {row['api_cpu_ms_per_request']:>6} ms/req"
                f"  database {row['database_cpu_ms_per_request']:>6} ms/req"
                f"  machine busy {row['machine_busy_percent']:>5}%"
                f"  ({row['requests']} requests, {row['errors']} errors)",
                flush=True,
            )
    return rows


async def settle(database_url: str) -> None:
    await _sql(
        database_url,
        "UPDATE tasks SET state = 'completed', completed_at = now(), updated_at = now()"
        " WHERE state = 'awaiting_upload'",
    )


async def make_keys(database_url: str, count: int) -> list[str]:
    """One tenant and API key per client."""
    db = Database(await asyncpg.create_pool(database_url, min_size=1, max_size=1))
    try:
        keys = []
        for i in range(count):
            _, key = await db.create_api_key(await db.ensure_tenant(f"bench-{i}"))
            keys.append(key)
        return keys
    finally:
        await db.close()


def pgbench_anchor(admin_dsn: str, clients: int, seconds: float) -> float:
    """PostgreSQL's single-row INSERT + COMMIT rate (transactions/s) in a scratch database."""
    name = f"aipp_pgbench_{uuid.uuid4().hex[:10]}"
    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(_sql(dsn, PGBENCH_TABLE))
        with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
            script.write(PGBENCH_INSERT)
            script.flush()
            out = subprocess.run(
                [
                    PGBENCH,
                    "--no-vacuum",
                    "--protocol=prepared",
                    f"--client={clients}",
                    "--jobs=2",
                    f"--time={max(1, round(seconds))}",
                    f"--file={script.name}",
                    dsn,
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=seconds + 120,
            ).stdout
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    found = re.search(r"tps = ([0-9.]+)", out)
    if found is None:
        raise RuntimeError(f"pgbench printed no rate:\n{out}")
    return float(found.group(1))


async def _sql(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    server_env = {**env, "UVICORN_HOST": "127.0.0.1", "UVICORN_PORT": str(port)}
    if WORKERS:
        server_env["WEB_CONCURRENCY"] = WORKERS
    server = subprocess.Popen(
        [sys.executable, "-m", "aipp.api"],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port)
    return server


def summarize(rows: list[dict[str, Any]], anchor_tps: float) -> dict[str, Any]:
    """Each operation's rate at ANCHOR_CLIENTS as a share of the anchor, p99 at 1 client."""
    summary: dict[str, Any] = {}
    for row in rows:
        name = row["operation"]
        if row["concurrency"] == ANCHOR_CLIENTS:
            share = row["throughput_rps"] / anchor_tps
            summary.setdefault(name, {}).update(
                share_of_anchor=round(share, 4),
                share_target=TARGETS[name],
                share_met=share >= TARGETS[name],
            )
        if row["concurrency"] == 1:
            summary.setdefault(name, {}).update(
                p99_ms_1_client=row["p99_ms"],
                p99_target_ms=P99_TARGET_MS,
                p99_met=row["p99_ms"] <= P99_TARGET_MS,
            )
    return summary


def main() -> int:
    measured_under = conditions()
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
        "AIPP_QUOTA_TASKS_IN_FLIGHT": "1000000",
        "AIPP_QUOTA_TASKS_PER_DAY": "1000000",
        "AIPP_DB_POOL_MIN": "4",
        "AIPP_DB_POOL_MAX": "20",
        "AIPP_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        moto = subprocess.Popen(
            [sys.executable, "-m", "aipp.dev.moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(moto)
        wait_listening(moto_port)
        admin = [sys.executable, "-m", "aipp.admin"]
        run([*admin, "migrate"], env)
        run([*admin, "init-local-aws"], env)
        keys = asyncio.run(make_keys(database_url, max(CONCURRENCY)))
        server = start_api(env, api_port)
        processes.append(server)
        workers = WORKERS or "one per core"
        print(
            f"task API benchmark: `python -m aipp.api` ({workers} worker processes) on"
            f" {os.cpu_count()} cores, {DURATION_SECONDS:g} s per step, client on the same"
            f" machine; load average at start {measured_under['load_average_at_start']}"
        )
        rows = asyncio.run(bench(api_port, keys, server.pid, database_url))
    finally:
        for proc in reversed(processes):
            proc.terminate()
            proc.wait(timeout=20)
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    anchor = pgbench_anchor(ADMIN_DSN, ANCHOR_CLIENTS, DURATION_SECONDS)
    summary = summarize(rows, anchor)
    report(rows, anchor, summary)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"api_bench-{stamp}.json"
    document = {
        "when": stamp,
        "label": os.environ.get("BENCH_LABEL", ""),
        "machine": measured_under,
        "api_workers": int(WORKERS) if WORKERS else "per core",
        "seconds_per_step": DURATION_SECONDS,
        "anchor": {
            "what": "pgbench: single-row INSERT + COMMIT, prepared",
            "clients": ANCHOR_CLIENTS,
            "tps": anchor,
        },
        "summary": summary,
        "results": rows,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


def report(rows: list[dict[str, Any]], anchor: float, summary: dict[str, Any]) -> None:
    header = (
        f"{'operation':<12} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'API CPU ms/req':>14} {'client':>6} {'database':>8} {'busy %':>6} {'errors':>6}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        print(
            f"{row['operation']:<12} {row['concurrency']:>7} {row['throughput_rps']:>9}"
            f" {row['p50_ms']:>8} {row['p99_ms']:>8} {row['api_cpu_ms_per_request']:>14}"
            f" {row['client_cpu_ms_per_request']:>6} {row['database_cpu_ms_per_request']:>8}"
            f" {row['machine_busy_percent']:>6}"
            f" {row['errors']:>6}"
        )
    print(f"\nanchor: pgbench single-row INSERT + COMMIT, {ANCHOR_CLIENTS} clients: {anchor:.0f}/s")
    for name, facts in summary.items():
        met = "met" if facts["share_met"] else "NOT met"
        p99 = "met" if facts["p99_met"] else "NOT met"
        print(
            f"  {name:<12} {facts['share_of_anchor']:>7.1%} of the anchor at {ANCHOR_CLIENTS}"
            f" clients (target >= {facts['share_target']:.0%}: {met});"
            f" p99 at 1 client {facts['p99_ms_1_client']} ms (target <= {P99_TARGET_MS:g}: {p99})"
        )


if __name__ == "__main__":
    sys.exit(main())
