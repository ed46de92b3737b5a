"""The per-key rate limit (a token bucket in Redis) answers 429 with Retry-After."""

from __future__ import annotations

import asyncio

from aipp.core.db import Database

from ...conftest import ON_SESSION_LOOP, AwsNames, make_settings, new_key, running_app

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
