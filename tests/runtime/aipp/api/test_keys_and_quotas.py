"""API key lifecycle (list, revoke: refused within seconds), per-tenant quotas (429 with
Retry-After, never exceeded by concurrent creates) and 405 answers naming every method."""

from __future__ import annotations

import asyncio
import time

import httpx
from aipp.core.db import Database

from ...conftest import (
    ON_SESSION_LOOP,
    AwsNames,
    drain_queue,
    make_settings,
    new_key,
    running_app,
    wav_bytes,
)
from ..test_admin import admin

pytestmark = ON_SESSION_LOOP

UPLOAD = {"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 1000}


async def test_a_revoked_key_is_refused_within_the_auth_cache_time(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    settings = make_settings(database_url, aws, auth_cache_seconds=1)
    tenant = f"acme-{time.time_ns()}"
    async with running_app(settings) as (_, client):
        auth = await new_key(db, tenant)
        other = await new_key(db, tenant)
        assert (await client.get("/v1/tasks", headers=auth)).status_code == 200
        listed = admin("list-api-keys", "--tenant", tenant, AIPP_DATABASE_URL=database_url)
        assert listed.returncode == 0, listed.stderr
        rows = [line for line in listed.stdout.splitlines()[1:] if line.strip()]
        assert len(rows) == 2 and all("active" in r for r in rows)
        key = auth["Authorization"].split()[1]
        prefix = next(r.split()[1] for r in rows if key.startswith(r.split()[1]))
        assert key not in listed.stdout  # only the prefix is ever shown

        revoked = admin("revoke-api-key", prefix, AIPP_DATABASE_URL=database_url)
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        while (await client.get("/v1/tasks", headers=auth)).status_code != 401:
            assert time.monotonic() - started < 3, "the revoked key still works"
            await asyncio.sleep(0.1)
        assert (await client.get("/v1/tasks", headers=other)).status_code == 200
        again = admin("revoke-api-key", prefix, AIPP_DATABASE_URL=database_url)
        assert again.returncode == 0 and "already revoked" in again.stdout
        unknown = admin("revoke-api-key", "aipp_nosuchkey", AIPP_DATABASE_URL=database_url)
        assert unknown.returncode == 1 and "no API key" in unknown.stderr
        listed = admin("list-api-keys", "--tenant", tenant, AIPP_DATABASE_URL=database_url)
        assert sum("revoked" in line for line in listed.stdout.splitlines()) == 1


async def test_tasks_in_flight_quota_holds_under_concurrent_creates(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    settings = make_settings(database_url, aws, quota_tasks_in_flight=3, quota_tasks_per_day=100)
    async with running_app(settings) as (_, client):
        auth = await new_key(db)
        answers = await asyncio.gather(
            *(client.post("/v1/tasks", json=UPLOAD, headers=auth) for _ in range(8))
        )
        assert sorted(a.status_code for a in answers) == [201] * 3 + [429] * 5
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert "tasks_in_flight" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        # The multipart path counts too; a finished task frees its place.
        form = {"file": ("a.wav", wav_bytes(), "audio/wav")}
        assert (await client.post("/v1/tasks", files=form, headers=auth)).status_code == 429
        done = next(a for a in answers if a.status_code == 201).json()["id"]
        assert (await client.delete(f"/v1/tasks/{done}", headers=auth)).status_code == 204
        assert (await client.post("/v1/tasks", files=form, headers=auth)).status_code == 201
        # Another tenant is not affected.
        assert (
            await client.post("/v1/tasks", json=UPLOAD, headers=await new_key(db))
        ).status_code == 201
    drain_queue(aws)


async def test_tasks_per_day_quota_and_a_tenant_override(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    settings = make_settings(database_url, aws, quota_tasks_in_flight=100, quota_tasks_per_day=2)
    tenant = f"daily-{time.time_ns()}"
    async with running_app(settings) as (_, client):
        auth = await new_key(db, tenant)
        for _ in range(2):
            assert (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).status_code == 201
        refused = await client.post("/v1/tasks", json=UPLOAD, headers=auth)
        assert refused.status_code == 429
        assert "tasks_per_day" in refused.json()["error"]["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 86401  # until midnight UTC
        # A replay of an accepted create is never refused.
        idem = {**auth, "Idempotency-Key": "same"}
        raised = admin(
            "set-quota", "--tenant", tenant, "--per-day", "5", AIPP_DATABASE_URL=database_url
        )
        assert raised.returncode == 0, raised.stderr
        first = await client.post("/v1/tasks", json=UPLOAD, headers=idem)
        assert first.status_code == 201
        assert (await client.post("/v1/tasks", json=UPLOAD, headers=idem)).status_code == 201
        assert (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).status_code == 201
        assert (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).status_code == 201
        assert (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).status_code == 429


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    some_task = "/v1/tasks/00000000-0000-0000-0000-000000000000"
    for method, path, allowed in (
        ("OPTIONS", some_task, {"GET", "HEAD", "DELETE"}),
        ("PUT", some_task, {"GET", "HEAD", "DELETE"}),
        ("PATCH", "/v1/tasks", {"GET", "HEAD", "POST"}),
        ("POST", f"{some_task}/result", {"GET", "HEAD"}),
    ):
        answer = await client.request(method, path)
        assert answer.status_code == 405, (method, path)
        assert set(answer.headers["allow"].split(", ")) == allowed, (method, path)
        assert answer.json()["error"]["code"] == "method_not_allowed"
