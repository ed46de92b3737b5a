"""Redis access: the result cache and the per-key token bucket (with an in-process twin)."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aipp.core.config import Settings

RESULT_TTL_SECONDS = 24 * 3600

# Atomic token bucket: refill by elapsed server time, then take up to ARGV[3] whole tokens (at
# least one, or none and the seconds until one is back).
_RATE_LIMIT_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - ts) * rate)
local granted = math.min(want, math.floor(tokens))
local retry = 0
if granted >= 1 then
  tokens = tokens - granted
else
  granted = 0
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {granted, tostring(retry)}
"""


def create_redis(settings: Settings) -> Redis:
    """A client of the primary endpoint that follows a failover (phases 2-3 run a replication
    group): a dropped connection, or a write refused with READONLY by a primary that was just
    demoted, is retried on a new connection, which the endpoint routes to the new primary."""
    return Redis.from_url(
        settings.redis_dsn(),
        socket_timeout=settings.dependency_timeout_seconds,
        socket_connect_timeout=settings.dependency_timeout_seconds,
        decode_responses=False,
        max_connections=128,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ReadOnlyError],
    )


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: int
    granted: int = 1  # tokens taken (a lease may take several at once); 0 when refused


class Cache:
    def __init__(self, redis: Redis, prefix: str = "aipp") -> None:
        self.redis = redis
        self.prefix = prefix
        self._bucket = redis.register_script(_RATE_LIMIT_SCRIPT)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    def result_key(self, tenant_id: uuid.UUID, task_id: uuid.UUID) -> str:
        return f"{self.prefix}:result:{tenant_id}:{task_id}"

    async def get_result(self, tenant_id: uuid.UUID, task_id: uuid.UUID) -> dict[str, Any] | None:
        raw = await self.redis.get(self.result_key(tenant_id, task_id))
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    async def set_result(
        self, tenant_id: uuid.UUID, task_id: uuid.UUID, result: dict[str, Any]
    ) -> None:
        await self.redis.set(
            self.result_key(tenant_id, task_id), json.dumps(result), ex=RESULT_TTL_SECONDS
        )

    async def drop_result(self, tenant_id: uuid.UUID, task_id: uuid.UUID) -> None:
        await self.redis.delete(self.result_key(tenant_id, task_id))

    async def take_token(
        self, key_id: uuid.UUID, *, per_minute: int, burst: int, want: int = 1
    ) -> RateDecision:
        """One token of the key's bucket, or up to `want` of them when there are that many."""
        granted, retry = await self._bucket(
            keys=[f"{self.prefix}:ratelimit:{key_id}"], args=[per_minute / 60.0, burst, want]
        )
        return RateDecision(
            allowed=int(granted) > 0,
            retry_after_seconds=max(1, math.ceil(float(retry))),
            granted=int(granted),
        )


@dataclass(slots=True)
class _Lease:
    tokens: int = 0  # taken from Redis, not used yet
    expires: float = 0.0
    size: int = 1  # how many the next lease asks for
    pending: asyncio.Future[None] | None = None  # a lease being taken now


class TokenLeases:
    """The per-key token bucket in Redis, taken a few tokens at a time by each API process.

    A key's first request takes one token, the next lease two, then four, up to a tenth of
    the burst (at most LEASE_MAX); each request spends one, and a lease not spent within
    LEASE_SECONDS lapses. A busy key thus costs one Redis call per lease rather than per
    request, and no key ever gets more than its bucket holds: tokens are taken from Redis
    before they are spent. The price is the other way: tokens a process leased but did not
    spend are lost to the key's other processes, at most the lease size per process and
    second. Requests that find no token wait for a lease in flight rather than each asking
    Redis; a refusal resets the lease size to one.
    """

    LEASE_SECONDS = 1.0
    LEASE_MAX = 64

    def __init__(self, cache: Cache, max_keys: int = 100_000) -> None:
        self.cache = cache
        self.max_keys = max_keys
        self._leases: dict[uuid.UUID, _Lease] = {}

    @classmethod
    def largest_lease(cls, burst: int) -> int:
        return max(1, min(cls.LEASE_MAX, burst // 10))

    async def take(self, key_id: uuid.UUID, *, per_minute: int, burst: int) -> RateDecision:
        lease = self._lease(key_id)
        while True:
            if lease.tokens > 0 and time.monotonic() < lease.expires:
                lease.tokens -= 1
                return RateDecision(allowed=True, retry_after_seconds=1)
            if lease.pending is None:
                break
            await asyncio.shield(lease.pending)  # then look again
        want = min(lease.size, self.largest_lease(burst))
        pending = asyncio.get_running_loop().create_future()
        lease.tokens, lease.pending = 0, pending
        try:
            decision = await self.cache.take_token(
                key_id, per_minute=per_minute, burst=burst, want=want
            )
        finally:
            lease.pending = None
            pending.set_result(None)
        if decision.allowed:
            lease.tokens = decision.granted - 1
            lease.expires = time.monotonic() + self.LEASE_SECONDS
            lease.size = min(want * 2, self.LEASE_MAX)
        else:
            lease.size = 1
        return decision

    def _lease(self, key_id: uuid.UUID) -> _Lease:
        lease = self._leases.get(key_id)
        if lease is None:
            if len(self._leases) >= self.max_keys:  # forget every idle key's lease
                self._leases = {k: v for k, v in self._leases.items() if v.pending is not None}
            lease = self._leases[key_id] = _Lease()
        return lease


class LocalRateLimiter:
    """The same token bucket in process memory, for at most `max_keys` keys (least recently
    used ones are forgotten first). Each API process limits on its own, so with N processes a
    key gets up to N times the rate: the fallback while Redis is unreachable, and the limiter
    for failed authentications (which must not cost a Redis or database call each)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def peek(self, key: str, *, per_minute: int, burst: int) -> RateDecision:
        """Whether `take` would allow now, without taking a token."""
        rate = per_minute / 60.0
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        retry = 0.0 if tokens >= 1 else (1 - tokens) / rate
        return RateDecision(allowed=tokens >= 1, retry_after_seconds=max(1, math.ceil(retry)))

    def take(self, key: str, *, per_minute: int, burst: int) -> RateDecision:
        rate = per_minute / 60.0
        now = time.monotonic()
        tokens, last = self._buckets.pop(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            allowed, retry = True, 0.0
        else:
            self._buckets[key] = (tokens, now)
            allowed, retry = False, (1 - tokens) / rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return RateDecision(allowed=allowed, retry_after_seconds=max(1, math.ceil(retry)))
