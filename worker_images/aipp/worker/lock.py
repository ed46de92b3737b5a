"""The Redis idempotency lock: one job per (task type, task) at a time, across all workers.

The token is the job's own (one per received message), so a job that retries in-process after a
Redis hiccup takes its own lock again. The lock lives slightly shorter than the message's
visibility and is refreshed with it, so a message that reappears after a crash (SIGKILL) finds
the lock expired and can continue the task.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from aipp.core.models import TaskType

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class TaskLocks:
    def __init__(self, redis: Redis, *, ttl_ms: int, prefix: str = "aipp") -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh = redis.register_script(_REFRESH)
        self._release = redis.register_script(_RELEASE)

    def key(self, task_type: TaskType, task_id: uuid.UUID) -> str:
        return f"{self.prefix}:lock:{task_type.value}:{task_id}"

    async def acquire(self, task_type: TaskType, task_id: uuid.UUID, token: str) -> bool:
        got = await self._acquire(keys=[self.key(task_type, task_id)], args=[token, self.ttl_ms])
        return bool(int(got))

    async def refresh(self, task_type: TaskType, task_id: uuid.UUID, token: str) -> bool:
        got = await self._refresh(keys=[self.key(task_type, task_id)], args=[token, self.ttl_ms])
        return bool(int(got))

    async def release(self, task_type: TaskType, task_id: uuid.UUID, token: str) -> None:
        await self._release(keys=[self.key(task_type, task_id)], args=[token])

    async def held(self, task_type: TaskType, task_id: uuid.UUID) -> bool:
        return bool(await self.redis.exists(self.key(task_type, task_id)))
