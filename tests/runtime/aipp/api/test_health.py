"""Health, readiness (which dependency is down) and Prometheus metrics."""

from __future__ import annotations

import httpx
from aipp.core.db import Database

from ...conftest import (
    ON_SESSION_LOOP,
    AwsNames,
    bucket_keys,
    drain_queue,
    free_port,
    make_settings,
    new_key,
    running_app,
    wav_bytes,
)

pytestmark = ON_SESSION_LOOP


async def test_healthz_and_readyz_with_everything_up(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "release": "local"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "s3": "ok", "queue": "ok"}


async def test_redis_down_readyz_names_it(database_url: str, aws: AwsNames, db: Database) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(database_url, aws, redis_url=dead, dependency_timeout_seconds=1)
    async with running_app(settings) as (_, client):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["error"]["code"] == "not_ready"
        assert body["checks"]["redis"] == "unavailable"
        assert body["checks"]["database"] == "ok"
        # The task API itself keeps answering: tests/runtime/aipp/api/test_rate_limit.py.


async def test_queue_down_leaves_no_row_and_no_object(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    missing_queue = aws.queue_url + "-missing"
    settings = make_settings(
        database_url, aws, stt_queue_url=missing_queue, llm_queue_url=missing_queue
    )
    async with running_app(settings) as (_, client):
        auth = await new_key(db)
        response = await client.post(
            "/v1/tasks", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, headers=auth
        )
        assert response.status_code == 503
        assert (await client.get("/readyz")).json()["checks"]["queue"] == "unavailable"
        assert (await client.get("/v1/tasks", headers=auth)).json()["items"] == []
    principal = await db.principal_for_key(auth["Authorization"].removeprefix("Bearer "))
    assert principal is not None
    assert bucket_keys(aws, f"uploads/{principal.tenant_id}/") == []
    drain_queue(aws)


async def test_metrics_count_requests_latency_and_tasks(
    client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    auth = await new_key(db)
    await client.post(
        "/v1/tasks",
        json={"filename": "a.mp3", "content_type": "audio/mpeg", "size_bytes": 10},
        headers=auth,
    )
    await client.get("/v1/tasks/not-a-uuid", headers=auth)
    text = (await client.get("/metrics")).text
    assert 'aipp_tasks_created_total{state="awaiting_upload"}' in text
    assert 'aipp_http_requests_total{method="POST",route="/v1/tasks",status="201"}' in text
    assert 'route="/v1/tasks/{task_id}",status="422"' in text
    assert "aipp_http_request_duration_seconds_bucket" in text
    drain_queue(aws)


async def test_api_starts_with_the_database_down_and_says_so(aws: AwsNames) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    settings = make_settings(dead, aws, dependency_timeout_seconds=1)
    async with running_app(settings) as (_, client):
        assert (await client.get("/healthz")).status_code == 200
        ready = (await client.get("/readyz")).json()
        assert ready["error"]["message"] == "unavailable: database"
        response = await client.get("/v1/tasks", headers={"X-API-Key": "aipp_whatever"})
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "database is unavailable; see /readyz"
