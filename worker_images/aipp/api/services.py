"""The connections one API process holds, built in the lifespan and closed at shutdown."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from aipp.api.metrics import Metrics
from aipp.core.cache import Cache, create_redis
from aipp.core.config import Settings
from aipp.core.db import Database, Principal, create_pool, hash_api_key
from aipp.core.queue import Queue
from aipp.core.storage import Storage

AUTH_CACHE_SECONDS = 30.0
AUTH_CACHE_SIZE = 10_000


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: Storage
    queue: Queue
    cache: Cache
    metrics: Metrics
    _auth_cache: dict[bytes, tuple[Principal, float]] = field(default_factory=dict)

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> Services:
        pool = await create_pool(settings)
        return cls(
            settings=settings,
            db=Database(pool),
            storage=Storage(settings),
            queue=Queue(settings),
            cache=Cache(create_redis(settings)),
            metrics=metrics,
        )

    async def close(self) -> None:
        await self.db.close()
        await self.cache.close()

    async def principal(self, key: str) -> Principal | None:
        """Look a key up, with a short in-process cache of positive answers."""
        digest = hash_api_key(key)
        now = time.monotonic()
        hit = self._auth_cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        principal = await self.db.principal_for_key(key)
        if principal is not None:
            if len(self._auth_cache) >= AUTH_CACHE_SIZE:
                self._auth_cache.clear()
            self._auth_cache[digest] = (principal, now + AUTH_CACHE_SECONDS)
        return principal

    def forget_key(self, key_id: uuid.UUID) -> None:
        self._auth_cache = {d: v for d, v in self._auth_cache.items() if v[0].key_id != key_id}
