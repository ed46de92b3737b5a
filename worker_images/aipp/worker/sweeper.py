"""Tasks whose upload never arrives end `failed` (`upload_expired`) instead of waiting forever.

Every worker process runs this loop; a Redis key taken with SET NX for one interval makes one of
them sweep per interval. Correctness does not depend on that key: the sweep is a compare-and-set
in PostgreSQL (`Database.expire_upload`), so an upload being queued at the same moment either
wins (the task is `queued`, the sweep leaves it alone) or loses (the task is `failed`, and the
upload check sees it is no longer waiting and removes the late object) — never both.

Before failing a task the sweep looks in S3: when the object is there, its "Object Created"
event never got through (the upload Lambda was down, throttled or misconfigured for longer than
the grace period), so the sweep runs the upload check itself instead of deleting the audio.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from redis.asyncio import Redis

from aipp.core.db import Database
from aipp.core.models import UPLOAD_EXPIRED, Task
from aipp.core.storage import Storage
from aipp.core.upload_check import UploadCheck
from aipp.worker.webhook import Webhook
from aipp_contract.keys import task_prefixes

log = logging.getLogger("aipp.worker.sweeper")
BATCH = 500
TURN_KEY = "sweep:upload-expiry"  # under the cache prefix: one per deployment's Redis


class UploadSweeper:
    def __init__(
        self,
        *,
        db: Database,
        storage: Storage,
        redis: Redis,
        interval_seconds: float,
        presign_seconds: int,
        grace_seconds: int,
        prefix: str = "aipp",
        webhook: Webhook | None = None,
        check: UploadCheck | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        self.redis = redis
        self.interval = interval_seconds
        self.presign_seconds = presign_seconds
        self.expire_after = presign_seconds + grace_seconds
        self.key = f"{prefix}:{TURN_KEY}"
        self.webhook = webhook
        self.check = check
        self.token = uuid.uuid4().hex

    @property
    def message(self) -> str:
        return (
            f"no audio was uploaded within {self.presign_seconds} s (the upload URL's lifetime);"
            " create a new task to try again"
        )

    async def run(self) -> None:
        """Sweep whenever this process holds the turn; runs until cancelled."""
        while True:
            try:
                if await self.take_turn():
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next interval tries again
                log.warning("upload sweep failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.interval)

    async def take_turn(self) -> bool:
        """One sweep per interval across all workers: the key lives a little under one interval."""
        ttl_ms = max(100, int(self.interval * 900))
        return bool(await self.redis.set(self.key, self.token, nx=True, px=ttl_ms))

    async def sweep(self) -> list[Task]:
        """Check the uploads whose event never came; fail every other task whose upload window
        ended. Returns the tasks failed as `upload_expired`."""
        expired: list[Task] = []
        checked = 0
        while True:
            batch = await self.db.uploads_past_window(self.expire_after, limit=BATCH)
            progressed = 0
            for task in batch:
                if (
                    self.check is not None
                    and await self.storage.head_size(task.object_key) is not None
                ):
                    outcome = await self.check.check(task)
                    log.warning(
                        "an upload without its event was checked by the sweep",
                        extra={"task_id": str(task.id), "outcome": outcome},
                    )
                    checked += 1
                    progressed += 1
                    continue
                moved = await self.db.expire_upload(
                    task.id, self.expire_after, code=UPLOAD_EXPIRED, message=self.message
                )
                if moved is not None:
                    progressed += 1
                    expired.append(moved)
                    await self._after(moved)
            if len(batch) < BATCH or progressed == 0:
                break
        if expired or checked:
            log.info("expired uploads swept", extra={"failed": len(expired), "checked": checked})
        return expired

    async def _after(self, task: Task) -> None:
        log.info("task failed", extra={"task_id": str(task.id), "code": UPLOAD_EXPIRED})
        try:
            await self.storage.delete_prefix(task_prefixes(task.tenant_id, task.id)[0])
        except Exception as exc:  # the upload check removes it when its event arrives
            log.warning("late upload not removed", extra={"error": repr(exc)})
        if self.webhook is not None:
            await self.webhook.send(task)
