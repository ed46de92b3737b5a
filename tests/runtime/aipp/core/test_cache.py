"""The Redis token bucket."""

from __future__ import annotations

import asyncio
import uuid

from aipp.core.cache import Cache
from redis.asyncio import Redis

from ...conftest import ON_SESSION_LOOP, REDIS_URL

pytestmark = ON_SESSION_LOOP


async def test_bucket_allows_the_burst_then_refuses_with_a_retry_time() -> None:
    cache = Cache(Redis.from_url(REDIS_URL))
    key = uuid.uuid4()
    try:
        decisions = await asyncio.gather(
            *(cache.take_token(key, per_minute=60, burst=5) for _ in range(8))
        )
        assert sum(d.allowed for d in decisions) == 5
        refused = [d for d in decisions if not d.allowed]
        assert all(1 <= d.retry_after_seconds <= 2 for d in refused)
        other = await cache.take_token(uuid.uuid4(), per_minute=60, burst=5)
        assert other.allowed
    finally:
        await cache.close()
