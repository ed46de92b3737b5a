"""Redis access: the result cache and the per-key token bucket (with an in-process twin)."""

from __future__ import annotations

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

# Atomic token bucket: refill by elapsed server time, take one token if there is one.
_RATE_LIMIT_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry)}
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

    async def take_token(self, key_id: uuid.UUID, *, per_minute: int, burst: int) -> RateDecision:
        allowed, retry = await self._bucket(
            keys=[f"{self.prefix}:ratelimit:{key_id}"], args=[per_minute / 60.0, burst]
        )
        return RateDecision(
            allowed=bool(int(allowed)), retry_after_seconds=max(1, math.ceil(float(retry)))
        )


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
