"""The Redis token bucket, and the leases the API processes take from it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aipp.core.cache import Cache, RateDecision, TokenLeases
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


class CountingCache(Cache):
    """Counts the token requests that reach Redis."""

    calls = 0

    async def take_token(self, key_id: uuid.UUID, **kwargs: Any) -> RateDecision:
        self.calls += 1
        return await super().take_token(key_id, **kwargs)


async def test_a_lease_takes_up_to_want_tokens_and_never_more_than_are_left() -> None:
    cache = Cache(Redis.from_url(REDIS_URL))
    key = uuid.uuid4()
    try:
        first = await cache.take_token(key, per_minute=1, burst=10, want=8)
        rest = await cache.take_token(key, per_minute=1, burst=10, want=8)
        none = await cache.take_token(key, per_minute=1, burst=10, want=8)
        assert (first.granted, rest.granted, none.granted) == (8, 2, 0)
        assert not none.allowed and none.retry_after_seconds >= 50
    finally:
        await cache.close()


async def test_concurrent_requests_of_one_process_get_exactly_the_burst() -> None:
    """Requests waiting for a lease spend it: none is refused while a leased token is left."""
    cache = CountingCache(Redis.from_url(REDIS_URL))
    leases, key = TokenLeases(cache), uuid.uuid4()
    try:
        decisions = await asyncio.gather(
            *(leases.take(key, per_minute=1, burst=50) for _ in range(80))
        )
        assert sum(d.allowed for d in decisions) == 50
        assert cache.calls < 80  # leases of 1, 2, 4, 5, 5, ... and one per refusal
    finally:
        await cache.close()


async def test_processes_sharing_a_key_never_get_more_than_its_bucket() -> None:
    """Tokens are taken from Redis before they are spent: two processes together never exceed
    the burst; what one leased and did not spend is lost to the other, at most a lease each."""
    cache = Cache(Redis.from_url(REDIS_URL))
    a, b, key = TokenLeases(cache), TokenLeases(cache), uuid.uuid4()
    try:
        allowed = 0
        for i in range(100):
            allowed += (await (a if i % 3 else b).take(key, per_minute=1, burst=40)).allowed
        assert 40 - 2 * TokenLeases.largest_lease(40) <= allowed <= 40
    finally:
        await cache.close()


async def test_a_busy_key_costs_one_redis_call_per_lease() -> None:
    cache = CountingCache(Redis.from_url(REDIS_URL))
    leases, key = TokenLeases(cache), uuid.uuid4()
    try:
        for _ in range(200):
            assert (await leases.take(key, per_minute=60_000, burst=1000)).allowed
        # 1 + 2 + 4 + ... + 64 = 127 tokens in 7 calls, then two leases of 64 (the largest)
        assert cache.calls == 9
        # An unspent lease lapses: the next request asks Redis again, the one after spends it.
        await asyncio.sleep(TokenLeases.LEASE_SECONDS + 0.05)
        await leases.take(key, per_minute=60_000, burst=1000)
        await leases.take(key, per_minute=60_000, burst=1000)
        assert cache.calls == 10
    finally:
        await cache.close()
