# ruff: noqa: S603 - runs our own fixed commands (moto, the worker)
"""Pipeline benchmark (`make bench-pipeline`): worker throughput, per-task overhead and calls.

Real worker processes (`python -m aipp.worker`, run under `aipp.dev.calls`, which counts every
call they make) with the instant providers (no model time), real PostgreSQL and Redis, S3 and SQS
on moto's server, all on loopback. For 1 and 2 worker processes it queues BENCH_TASKS tasks
(default 400) and measures:
- throughput: tasks per minute from the first message sent to the last task `completed`, with
  the queue fed so that about twice as many tasks wait as the workers can run at once;
- per-task overhead: time the workers spent on a task outside the providers (both jobs, STT and
  LLM: database, Redis, S3, SQS calls), from the workers' own `job finished` log lines;
- worker CPU seconds per task (user + system, from the first message to the last task done),
  and beside it what the task cost the other processes on the same cores: moto's server,
  PostgreSQL, Redis and this driver (which feeds the queue and polls for completions), with how
  busy the cores were;
- calls per completed task to S3, SQS, the database and Redis, by operation, counted in the
  workers (receives and the other polls included: they are what a task costs the queue).
Prints a table and writes JSON under benchmarks/results/. Not a test: the numbers depend on the
machine, and moto, PostgreSQL and the workers share its CPUs.
"""

from __future__ import annotations

import asyncio
import json
import os
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

import boto3
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

from aipp.core.config import Settings  # noqa: E402
from aipp.core.db import Database, NewTask, create_pool  # noqa: E402
from aipp.core.migrate import upgrade  # noqa: E402
from aipp.core.models import TaskState  # noqa: E402

from aipp_contract.keys import upload_key  # noqa: E402

TASKS = int(os.environ.get("BENCH_TASKS", "400"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
# (worker processes, jobs per process, tasks): the first row is the unloaded per-task floor.
CASES = ((1, 1, min(100, TASKS)), (1, CONCURRENCY, TASKS), (2, CONCURRENCY, TASKS))
SERVICES = ("s3", "sqs", "db", "redis")
# Targets on the 2-core development machine.
OVERHEAD_TARGET_MS = 20.0  # per task, 1 worker x 1 job (the unloaded floor)
THROUGHPUT_TARGET = 1000.0  # tasks/min, 2 workers


def client(endpoint: str, service: str) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto accepts anything
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def queue_tasks(db: Database, count: int) -> tuple[list[uuid.UUID], list[str]]:
    tenant = await db.ensure_tenant(f"bench-{uuid.uuid4().hex[:8]}")
    ids, bodies = [], []
    for _ in range(count):
        task_id = uuid.uuid4()
        key = upload_key(tenant, task_id, "bench.wav")
        ids.append(task_id)
        await db.insert_task(
            NewTask(task_id, tenant, TaskState.QUEUED, "bench.wav", key, "audio/wav", 1000, None)
        )
        bodies.append(
            json.dumps(
                {
                    "task_id": str(task_id),
                    "tenant_id": str(tenant),
                    "object_key": key,
                    "task_type": "stt",
                }
            )
        )
    return ids, bodies


def send(sqs: Any, queue_url: str, bodies: list[str]) -> None:
    attr = {"task_type": {"DataType": "String", "StringValue": "stt"}}
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": b, "MessageAttributes": attr}
                for i, b in enumerate(bodies[start : start + 10])
            ],
        )


def others_cpu(moto_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the processes beside the workers."""
    return {
        "moto": tree_cpu_seconds(moto_pid),
        "postgres": named_cpu_seconds("postgres"),
        "redis": named_cpu_seconds("redis-server"),
        "driver": time.process_time(),
    }


async def run_case(
    case: tuple[int, int, int],
    db: Database,
    env: dict[str, str],
    sqs: Any,
    tmp: Path,
    *,
    moto_pid: int,
) -> dict[str, Any]:
    workers, concurrency, tasks = case
    queue_url = sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    env = {
        **env,
        "AIPP_WORKER_QUEUE_URL": queue_url,
        "AIPP_STT_QUEUE_URL": queue_url,
        "AIPP_LLM_QUEUE_URL": queue_url,
        "AIPP_WORKER_CONCURRENCY": str(concurrency),
    }
    ids, bodies = await queue_tasks(db, tasks)
    logs = [tmp / f"worker-{workers}-{concurrency}-{i}.log" for i in range(workers)]
    counts = [tmp / f"calls-{workers}-{concurrency}-{i}.json" for i in range(workers)]
    procs = []
    for path, count_file in zip(logs, counts, strict=True):
        with path.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "aipp.dev.calls", str(count_file), "aipp.worker"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
    try:
        while not all("worker started" in p.read_text() for p in logs):
            time.sleep(0.1)
        cpu = sum(tree_cpu_seconds(p.pid) for p in procs)
        others, busy = others_cpu(moto_pid), machine_jiffies()
        started = time.monotonic()
        # Keep the backlog at twice the jobs the workers can run at once: moto's SQS spends
        # time on every call in proportion to the messages waiting (a real queue does not),
        # and a backlog of hundreds would measure moto, not the pipeline.
        backlog, sent = 2 * workers * concurrency, 0
        while True:
            done = await db.pool.fetchval(
                "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND state = 'completed'", ids
            )
            if done == len(ids):
                break
            if sent < len(bodies) and sent - done < backlog:
                more = min(backlog - (sent - done), len(bodies) - sent)
                await asyncio.to_thread(send, sqs, queue_url, bodies[sent : sent + more])
                sent += more
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        cpu = sum(tree_cpu_seconds(p.pid) for p in procs) - cpu
        others = {k: v - others[k] for k, v in others_cpu(moto_pid).items()}
        busy_ticks, ticks = (a - b for a, b in zip(machine_jiffies(), busy, strict=True))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    per_task: dict[str, float] = {}
    per_job: dict[str, list[float]] = {"stt": [], "llm": []}
    for path in logs:
        for raw in path.read_text().splitlines():
            line = json.loads(raw)
            if line.get("message") == "job finished" and line.get("outcome") == "done":
                overhead = line["elapsed_ms"] - line["provider_ms"]
                per_job[line["task_type"]].append(overhead)
                per_task[line["task_id"]] = per_task.get(line["task_id"], 0.0) + overhead
    overheads = list(per_task.values())
    calls = calls_per_task(counts, len(ids))
    return {
        "workers": workers,
        "concurrency_per_worker": concurrency,
        "tasks": len(ids),
        "seconds": round(elapsed, 2),
        "tasks_per_minute": round(len(ids) / elapsed * 60, 1),
        "worker_cpu_ms_per_task": round(cpu / len(ids) * 1000, 2),
        "others_cpu_ms_per_task": {k: round(v / len(ids) * 1000, 2) for k, v in others.items()},
        "machine_busy_percent": round(100 * busy_ticks / max(1, ticks), 1),
        "calls_per_task": calls,
        "overhead_ms_per_task": {
            "mean": round(statistics.fmean(overheads), 1),
            "p50": round(percentile(overheads, 0.5), 1),
            "p95": round(percentile(overheads, 0.95), 1),
        },
        "overhead_ms_per_job": {
            kind: {"mean": round(statistics.fmean(v), 1), "p95": round(percentile(v, 0.95), 1)}
            for kind, v in per_job.items()
            if v
        },
    }


# Waiting for messages, not work on a task: left out of the time in calls.
WAITING = "sqs:ReceiveMessage"


def calls_per_task(files: list[Path], tasks: int) -> dict[str, Any]:
    """Calls of every worker process of a case, per completed task: by service and operation,
    and the milliseconds spent in them by service (receives left out)."""
    services: dict[str, float] = dict.fromkeys(SERVICES, 0.0)
    operations: dict[str, float] = {}
    waited: dict[str, float] = dict.fromkeys(SERVICES, 0.0)
    for path in files:
        counted = json.loads(path.read_text())
        for name, n in counted["services"].items():
            services[name] = services.get(name, 0.0) + n
        for name, n in counted["operations"].items():
            operations[name] = operations.get(name, 0.0) + n
        for name, seconds in counted["seconds"].items():
            if name != WAITING:
                service = name.split(":", 1)[0]
                waited[service] = waited.get(service, 0.0) + seconds
    return {
        "services": {k: round(v / tasks, 2) for k, v in services.items()},
        "operations": {k: round(v / tasks, 2) for k, v in sorted(operations.items())},
        "ms_in_calls": {k: round(v / tasks * 1000, 2) for k, v in waited.items()},
    }


async def main() -> None:
    measured_under = conditions()
    moto_port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "aipp.dev.moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    name = f"aipp_bench_{uuid.uuid4().hex[:10]}"
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path=f"/{name}"))
    await admin_sql(f'CREATE DATABASE "{name}"')
    try:
        wait_listening(moto_port)
        endpoint = f"http://127.0.0.1:{moto_port}"
        await asyncio.to_thread(upgrade, dsn)  # alembic runs its own event loop
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        client(endpoint, "s3").create_bucket(Bucket=bucket)
        sqs = client(endpoint, "sqs")
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
            "AIPP_DATABASE_URL": dsn,
            "AIPP_REDIS_URL": REDIS_URL,
            "AIPP_AUDIO_BUCKET": bucket,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AIPP_WORKER_CONCURRENCY": str(CONCURRENCY),
            "AIPP_WORKER_WAIT_SECONDS": "1",
            "AIPP_WORKER_HEARTBEAT_FILE": "",
            "AIPP_STT_PROVIDER": "instant",
            "AIPP_LLM_PROVIDER": "instant",
            "AIPP_LOG_LEVEL": "INFO",
        }
        db = Database(await create_pool(Settings(database_url=dsn)))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                results = [
                    await run_case(c, db, env, sqs, Path(tmp), moto_pid=moto.pid) for c in CASES
                ]
        finally:
            await db.close()
    finally:
        moto.terminate()
        moto.wait(10)
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"pipeline_bench-{stamp}.json"
    document = {
        "when": stamp,
        "label": os.environ.get("BENCH_LABEL", ""),
        "machine": measured_under,
        "targets": {
            "overhead_ms_per_task_1x1": OVERHEAD_TARGET_MS,
            "tasks_per_minute_2_workers": THROUGHPUT_TARGET,
        },
        "results": results,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


def report(results: list[dict[str, Any]]) -> None:
    print(f"pipeline with instant providers, {os.cpu_count()} CPUs")
    print(
        f"{'workers':>7} {'jobs/wkr':>8} {'tasks':>5} {'tasks/min':>10} {'seconds':>8} "
        f"{'overhead/task ms':>17} {'p50':>7} {'p95':>7} {'CPU ms/task':>11}"
        "  per job (stt / llm mean ms)"
    )
    for r in results:
        o = r["overhead_ms_per_task"]
        jobs = r["overhead_ms_per_job"]
        print(
            f"{r['workers']:>7} {r['concurrency_per_worker']:>8} {r['tasks']:>5} "
            f"{r['tasks_per_minute']:>10} {r['seconds']:>8} {o['mean']:>17} "
            f"{o['p50']:>7} {o['p95']:>7} {r['worker_cpu_ms_per_task']:>11}"
            f"  {jobs['stt']['mean']} / {jobs['llm']['mean']}"
        )
    print("\nCPU ms per task of the other processes on the same cores (cores busy):")
    for r in results:
        others = "  ".join(f"{k} {v:g}" for k, v in r["others_cpu_ms_per_task"].items())
        print(
            f"  {r['workers']} x {r['concurrency_per_worker']:<3} {others}"
            f"  ({r['machine_busy_percent']}%)"
        )
    print("\ncalls per completed task (" + ", ".join(SERVICES) + "), by operation:")
    for r in results:
        calls = r["calls_per_task"]
        per_service = "  ".join(f"{k} {calls['services'].get(k, 0):g}" for k in SERVICES)
        print(f"  {r['workers']} x {r['concurrency_per_worker']:<3} {per_service}")
        detail = ", ".join(f"{k} {v:g}" for k, v in calls["operations"].items())
        print(f"          {detail}")
        waited = "  ".join(f"{k} {v:g}" for k, v in calls["ms_in_calls"].items())
        print(f"          ms in calls per task (receives left out): {waited}")
    floor = results[0]["overhead_ms_per_task"]["mean"]
    two = max((r for r in results if r["workers"] == 2), key=lambda r: r["tasks_per_minute"])
    print(
        f"\ntargets: overhead per task (1 x 1) {floor} ms (<= {OVERHEAD_TARGET_MS:g}:"
        f" {'met' if floor <= OVERHEAD_TARGET_MS else 'NOT met'}); 2 workers"
        f" {two['tasks_per_minute']} tasks/min (>= {THROUGHPUT_TARGET:g}:"
        f" {'met' if two['tasks_per_minute'] >= THROUGHPUT_TARGET else 'NOT met'})"
    )


if __name__ == "__main__":
    asyncio.run(main())
