"""The connections one API process holds, built in the lifespan and closed at shutdown."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis.exceptions

from aipp.api.metrics import Metrics
from aipp.core.cache import Cache, LocalRateLimiter, RateDecision, TokenLeases, create_redis
from aipp.core.config import Settings
from aipp.core.db import Credentials, Database, Principal, Quota, create_pool, hash_api_key
from aipp.core.queue import Queue
from aipp.core.storage import Storage
from aipp_contract.messages import Kind

log = logging.getLogger("aipp.api")
AUTH_CACHE_SIZE = 10_000
# After Redis failed to answer, the rate limiter skips it for this long (no request waits for a
# dead Redis), then tries it again.
REDIS_RETRY_SECONDS = 5.0
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: Storage
    queue: Queue
    cache: Cache
    metrics: Metrics
    _auth_cache: dict[bytes, tuple[Principal | None, float]] = field(default_factory=dict)
    _local_limiter: LocalRateLimiter = field(default_factory=LocalRateLimiter)
    _failure_limiter: LocalRateLimiter = field(default_factory=LocalRateLimiter)
    _redis_down_until: float = 0.0
    _leases: TokenLeases = field(init=False)

    def __post_init__(self) -> None:
        self._leases = TokenLeases(self.cache)

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> Services:
        credentials = Credentials.from_settings(settings)
        pool = await create_pool(settings, credentials=credentials)
        reader = (
            await create_pool(settings, credentials=credentials.on_host(settings.db_read_host))
            if settings.db_read_host
            else None
        )
        return cls(
            settings=settings,
            db=Database(pool, reader),
            storage=Storage(settings),
            queue=Queue(settings, kind=Kind.API),
            cache=Cache(create_redis(settings)),
            metrics=metrics,
        )

    async def close(self) -> None:
        await self.db.close()
        await self.cache.close()

    @property
    def quota(self) -> Quota:
        return Quota(
            in_flight=self.settings.quota_tasks_in_flight,
            per_day=self.settings.quota_tasks_per_day,
        )

    def cached_principal(self, key: str) -> tuple[bool, Principal | None]:
        """(known, principal) from the in-process cache: a valid key for AIPP_AUTH_CACHE_SECONDS, an
        unknown one for AIPP_AUTH_NEGATIVE_CACHE_SECONDS."""
        hit = self._auth_cache.get(hash_api_key(key))
        if hit is not None and hit[1] > time.monotonic():
            return True, hit[0]
        return False, None

    async def principal(self, key: str) -> Principal | None:
        """Look a key up: the in-process cache first, then the database."""
        known, principal = self.cached_principal(key)
        if known:
            return principal
        principal = await self.db.principal_for_key(key)
        ttl = (
            self.settings.auth_cache_seconds
            if principal is not None
            else self.settings.auth_negative_cache_seconds
        )
        if ttl > 0:
            if len(self._auth_cache) >= AUTH_CACHE_SIZE:
                self._auth_cache.clear()
            self._auth_cache[hash_api_key(key)] = (principal, time.monotonic() + ttl)
        return principal

    def failure_budget(self, client: str, *, take: bool) -> RateDecision:
        """Unknown-key lookups left for this client address (in-process, never Redis): checked
        before a lookup, and one taken for each key that turned out unknown."""
        per_minute = self.settings.auth_failures_per_minute
        limiter = self._failure_limiter.take if take else self._failure_limiter.peek
        return limiter(f"auth-failure:{client}", per_minute=per_minute, burst=per_minute)

    async def take_token(self, principal: Principal) -> RateDecision:
        """The per-key token bucket in Redis, leased a few tokens at a time (`TokenLeases`);
        while Redis is unreachable, an in-process bucket (counted in
        `aipp_rate_limit_fallback_total`) instead of refusing every request."""
        per_minute = self.settings.rate_limit_per_minute
        burst = self.settings.rate_limit_burst
        if time.monotonic() >= self._redis_down_until:
            try:
                return await self._leases.take(principal.key_id, per_minute=per_minute, burst=burst)
            except REDIS_ERRORS as exc:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                log.warning(
                    "rate limiter: Redis unavailable, limiting in-process", extra={"err": repr(exc)}
                )
        self.metrics.rate_limit_fallback.inc()
        return self._local_limiter.take(str(principal.key_id), per_minute=per_minute, burst=burst)
