"""The per-key rate limit (a token bucket in Redis, in process memory while Redis is down)
answers 429 with Retry-After; unknown keys are cached and limited per client address."""

from __future__ import annotations

import asyncio
from typing import Any

from aipp.core.db import Database

from ...conftest import (
    ON_SESSION_LOOP,
    AwsNames,
    drain_queue,
    free_port,
    make_settings,
    new_key,
    running_app,
    wav_bytes,
)

pytestmark = ON_SESSION_LOOP


async def test_429_past_the_configured_burst_per_key(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    settings = make_settings(database_url, aws, rate_limit_per_minute=60, rate_limit_burst=5)
    async with running_app(settings) as (_, client):
        alice, bob = await new_key(db), await new_key(db)
        responses = await asyncio.gather(
            *(client.get("/v1/tasks", headers=alice) for _ in range(8))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 5 + [429] * 3
        limited = next(r for r in responses if r.status_code == 429)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        # Another key has its own bucket.
        assert (await client.get("/v1/tasks", headers=bob)).status_code == 200
        # One token comes back per second at 60/minute.
        await asyncio.sleep(1.1)
        assert (await client.get("/v1/tasks", headers=alice)).status_code == 200


async def test_redis_down_the_api_keeps_serving_and_limits_in_process(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(
        database_url,
        aws,
        redis_url=dead,
        dependency_timeout_seconds=1,
        rate_limit_per_minute=60,
        rate_limit_burst=4,
    )
    async with running_app(settings) as (app, client):
        auth = await new_key(db)
        created = await client.post(
            "/v1/tasks",
            headers=auth,
            files={"file": ("talk.wav", wav_bytes(3000), "audio/wav")},
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        assert (await client.get(f"/v1/tasks/{task_id}", headers=auth)).json()["state"] == "queued"
        # The limit still holds, in process memory: 4 burst tokens, the first one spent above
        # on the create and one on the GET.
        statuses = [(await client.get("/v1/tasks", headers=auth)).status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        metrics = (await client.get("/metrics")).text
        fallback = next(
            line
            for line in metrics.splitlines()
            if line.startswith("aipp_rate_limit_fallback_total")
        )
        assert float(fallback.split()[-1]) >= 6
        assert app.state.metrics is not None
    drain_queue(aws)


async def test_unknown_keys_cost_one_lookup_each_and_a_flood_is_refused(
    database_url: str, aws: AwsNames, db: Database
) -> None:
    settings = make_settings(database_url, aws, auth_failures_per_minute=20, auth_cache_seconds=60)
    async with running_app(settings) as (app, client):
        services = app.state.services
        in_use = await new_key(db)
        assert (await client.get("/v1/tasks", headers=in_use)).status_code == 200
        lookups = 0
        original = services.db.principal_for_key

        async def counted(key: str) -> Any:
            nonlocal lookups
            lookups += 1
            return await original(key)

        services.db.principal_for_key = counted
        bogus = {"Authorization": "Bearer aipp_not-a-real-key"}
        repeated = [(await client.get("/v1/tasks", headers=bogus)).status_code for _ in range(30)]
        assert set(repeated) == {401}
        assert lookups == 1  # the negative cache answered the other 29
        # 200 different bogus keys from one address: 19 more lookups, then 429 without any.
        flood = [
            (await client.get("/v1/tasks", headers={"X-API-Key": f"aipp_bogus{i}"})).status_code
            for i in range(200)
        ]
        # (20 per minute: one more lookup may refill per 3 s the flood takes on a busy machine)
        assert 19 <= flood.count(401) <= 22 and flood.count(429) == 200 - flood.count(401)
        assert lookups == 1 + flood.count(401)  # no lookup for any refused request
        limited = await client.get("/v1/tasks", headers={"X-API-Key": "aipp_bogus-again"})
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        # A key in use from that address keeps working; other addresses are not affected.
        assert (await client.get("/v1/tasks", headers=in_use)).status_code == 200
        elsewhere = {**(await new_key(db)), "X-Forwarded-For": "203.0.113.7"}
        assert (await client.get("/v1/tasks", headers=elsewhere)).status_code == 200
