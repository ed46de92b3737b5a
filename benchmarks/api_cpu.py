"""`make bench-api-cpu`: the application's CPU time per request, measured in process.

The task API (`create_app`, its lifespan started: real PostgreSQL and Redis pools) is called
directly as an ASGI app, without a server or a client, and `time.process_time()` is read around
REQUESTS requests of each kind, ROUNDS times; the least of the rounds is reported. Process CPU
time counts only this process, and the least of several rounds is what the code costs when
other work on the machine interferes least: the figure to compare code changes by on a busy
machine (`make bench-api` measures the whole server under load). S3 and SQS are not called on
these paths (presigning is local). Writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from support import ADMIN_DSN, REDIS_URL, RESULTS, admin_sql, conditions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "worker_images"))

from aipp.api.main import create_app  # noqa: E402
from aipp.core.config import Settings  # noqa: E402
from aipp.core.db import Database, create_pool  # noqa: E402
from aipp.core.migrate import upgrade  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "300"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
BODY = json.dumps({"filename": "bench.mp3", "content_type": "audio/mpeg", "size_bytes": 1000})


async def call(app: Any, method: str, path: str, key: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI app, as uvicorn would hand it over."""
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def measure(dsn: str) -> dict[str, Any]:
    settings = Settings(
        database_url=dsn,
        redis_url=REDIS_URL,
        audio_bucket="aipp-bench",
        stt_queue_url="http://127.0.0.1:9/123456789012/aipp-bench",
        llm_queue_url="http://127.0.0.1:9/123456789012/aipp-bench",
        aws_endpoint_url="http://127.0.0.1:9",
        aws_region="us-east-1",
        rate_limit_per_minute=100_000_000,
        rate_limit_burst=100_000_000,
        quota_tasks_in_flight=1_000_000,
        quota_tasks_per_day=1_000_000,
        log_level="WARNING",
    )
    db = Database(await create_pool(settings))
    try:
        _, key = await db.create_api_key(await db.ensure_tenant("bench"))
    finally:
        await db.close()
    app = create_app(settings)
    results: dict[str, list[float]] = {"create-task": [], "get-task": []}
    async with app.router.lifespan_context(app):
        status, payload = await call(app, "POST", "/v1/tasks", key, BODY.encode())
        assert status == 201, payload
        task_path = f"/v1/tasks/{json.loads(payload)['id']}"
        for _ in range(ROUNDS + 1):  # the first round warms up and is not counted
            for name, method, path, body in (
                ("create-task", "POST", "/v1/tasks", BODY.encode()),
                ("get-task", "GET", task_path, b""),
            ):
                started = time.process_time()
                for _ in range(REQUESTS):
                    status, payload = await call(app, method, path, key, body)
                    assert status in (200, 201), payload
                results[name].append((time.process_time() - started) / REQUESTS * 1000)
    return {name: min(values[1:]) for name, values in results.items()}


async def main() -> int:
    measured_under = conditions()
    name = f"aipp_bench_{uuid.uuid4().hex[:10]}"
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path=f"/{name}"))
    await admin_sql(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(upgrade, dsn)
        per_request = await measure(dsn)
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for operation, ms in per_request.items():
        print(f"{operation:<12} {ms:.3f} ms CPU per request (least of {ROUNDS} x {REQUESTS})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"api_cpu-{stamp}.json"
    document = {
        "when": stamp,
        "label": os.environ.get("BENCH_LABEL", ""),
        "machine": measured_under,
        "requests_per_round": REQUESTS,
        "rounds": ROUNDS,
        "cpu_ms_per_request": {k: round(v, 3) for k, v in per_request.items()},
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    import uvloop

    sys.exit(uvloop.run(main()))
