"""No task is stranded: a task owed work whose queue message was lost gets it again.

Every state change that owes a message is written before the message is sent: the upload check
and the API's multipart create move a task to `queued`, then send the STT message; the STT step
moves it to `summarizing`, then sends the LLM message. A process killed between the two, an SQS
error whose compensation also failed, or a message that expired or was purged, leaves a task
whose row says "work is owed" and no message to do it.

This loop reads the rows and re-sends. Every AIPP_RECONCILE_INTERVAL_SECONDS one worker process (a
Redis turn key, as for the upload sweep) looks for tasks in `queued`, `transcribing` or
`summarizing` that have not changed for AIPP_RECONCILE_AFTER_SECONDS and whose step lock is free (no
job is working on them), marks each as just re-sent (a compare-and-set on its `updated_at`, so a
task is re-sent at most once per period however many workers look) and sends the message of its
step: STT for `queued`/`transcribing`, LLM for `summarizing`.

Why a reconciler rather than an outbox table: the task row already is the durable record of the
owed message (its state names the step), so re-deriving messages from it covers every writer
(API, upload Lambda, workers) and every way a message goes missing, including ones an outbox
cannot see (a message lost or purged after it was sent). An outbox would need its own relay
loop and still this one for those cases. A re-sent message that turns out to be a duplicate
costs one receive: the step lock and the compare-and-set make the second delivery a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from redis.asyncio import Redis

from aipp.core.db import Database
from aipp.core.models import Task, TaskState, TaskType
from aipp.core.queue import Queue, TaskMessage
from aipp.worker.lock import TaskLocks
from aipp_contract.keys import transcript_key

log = logging.getLogger("aipp.worker.reconciler")
BATCH = 500
TURN_KEY = "reconcile:stranded"


def step_of(task: Task) -> TaskType:
    return TaskType.LLM if task.state is TaskState.SUMMARIZING else TaskType.STT


def message_for(task: Task) -> TaskMessage:
    if step_of(task) is TaskType.LLM:
        return TaskMessage(
            task_id=task.id,
            tenant_id=task.tenant_id,
            object_key=task.transcript_key or transcript_key(task.tenant_id, task.id),
            task_type=TaskType.LLM,
            language=task.language,
        )
    return TaskMessage(
        task_id=task.id,
        tenant_id=task.tenant_id,
        object_key=task.object_key,
        task_type=TaskType.STT,
        language=task.language,
        object_version=task.object_version,
    )


class Reconciler:
    def __init__(
        self,
        *,
        db: Database,
        queue: Queue,
        locks: TaskLocks,
        redis: Redis,
        interval_seconds: float,
        after_seconds: float,
        prefix: str = "aipp",
    ) -> None:
        self.db = db
        self.queue = queue
        self.locks = locks
        self.redis = redis
        self.interval = interval_seconds
        self.after = after_seconds
        self.key = f"{prefix}:{TURN_KEY}"
        self.token = uuid.uuid4().hex

    async def run(self) -> None:
        """Reconcile whenever this process holds the turn; runs until cancelled."""
        while True:
            try:
                if await self.take_turn():
                    await self.reconcile()
                    await self.db.prune_usage()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next interval tries again
                log.warning("reconcile failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.interval)

    async def take_turn(self) -> bool:
        ttl_ms = max(100, int(self.interval * 900))
        return bool(await self.redis.set(self.key, self.token, nx=True, px=ttl_ms))

    async def reconcile(self) -> list[Task]:
        """Re-send the message of every stranded task; returns the tasks re-sent."""
        resent: list[Task] = []
        for task in await self.db.stranded(self.after, limit=BATCH):
            if await self.locks.held(step_of(task), task.id):
                continue  # a job is on it (its heartbeat keeps the lock)
            if not await self.db.touch(task):
                continue  # moved meanwhile, or another worker re-sent it
            await self.queue.send(message_for(task))
            resent.append(task)
            log.warning(
                "stranded task re-sent",
                extra={"task_id": str(task.id), "state": task.state.value},
            )
        return resent
