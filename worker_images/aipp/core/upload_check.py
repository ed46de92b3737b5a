"""The upload check: is the object at a task's key acceptable audio? Then queue the task.

Run by the upload Lambda for each S3 "Object Created" event, and by the workers' expiry sweep
for a task whose upload window ended while its object is in the bucket (an event that never
arrived: the Lambda was down longer than the grace period), so uploaded audio is checked, not
deleted.

The object must really be audio of an allowed type (magic bytes from one ranged GET, never the
client's word), within the size limit and of the size the client declared: the upload rules of
`aipp_contract.upload`, which the API applies to a multipart upload too. Then the task moves
`awaiting_upload → queued` with a compare-and-set that records the object version that was
read, and the STT message is sent (carrying that version: the worker reads exactly it). A
second check of the same object finds the task no longer `awaiting_upload` and does nothing; a
PUT over an accepted object (the URL is still valid) is removed, which restores the accepted
version; an upload after the task expired as `upload_expired` is deleted.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import UPLOAD_EXPIRED, Task, TaskState, TaskType
from aipp.core.queue import Queue, TaskMessage
from aipp.core.storage import Storage
from aipp_contract.upload import NOT_AUDIO, SNIFF_BYTES, Rejection, inspect_upload

log = logging.getLogger("aipp.upload_check")


@dataclass
class UploadCheck:
    settings: Settings
    db: Database
    storage: Storage
    queue: Queue

    async def _reject(self, task: Task, version: str | None, code: str, message: str) -> str:
        failed = await self.db.transition(
            task.id,
            TaskState.AWAITING_UPLOAD,
            TaskState.FAILED,
            error_code=code,
            error_message=message,
        )
        if failed is None:
            return "duplicate"
        await self.storage.delete([task.object_key], version_id=version)
        log.info("upload rejected", extra={"task_id": str(task.id), "code": code})
        return f"rejected:{code}"

    async def _not_waiting(self, task: Task, version: str | None) -> str:
        """The task no longer waits for an upload: a second delivery, a PUT over the accepted
        object, or an upload after the task expired (`upload_expired`)."""
        current = await self.db.get_task(task.id)
        if current is None:
            await self.storage.delete([task.object_key], version_id=version)
            return "ignored:no-task"
        if current.state is TaskState.FAILED and current.error_code == UPLOAD_EXPIRED:
            await self.storage.delete([task.object_key], version_id=version)
            return "ignored:upload-expired"
        accepted = current.object_version
        if accepted is not None:
            now = version or await self.storage.current_version(task.object_key)
            if now is not None and now != accepted:
                # Removing the newer version makes the accepted one current again.
                await self.storage.delete([task.object_key], version_id=now)
                log.warning(
                    "a PUT over an accepted upload was removed", extra={"task_id": str(task.id)}
                )
                return "ignored:replaced-upload-removed"
        return "duplicate"

    async def check(self, task: Task, version: str | None = None) -> str:
        """What happened to the object at `task.object_key` (optionally: that version)."""
        if task.state is not TaskState.AWAITING_UPLOAD:
            return await self._not_waiting(task, version)
        head = await self.storage.read_head(task.object_key, SNIFF_BYTES, version)
        if head is None:
            return "ignored:object-gone"
        found = inspect_upload(
            head.size,
            head.data,
            limit=self.settings.max_upload_bytes,
            declared_size=task.size_bytes,
        )
        if isinstance(found, Rejection):
            return await self._reject(task, head.version_id, found.code, found.message)
        if found not in self.settings.allowed_content_types:
            return await self._reject(
                task,
                head.version_id,
                NOT_AUDIO,
                "the uploaded file is not audio of an allowed type",
            )
        queued = await self.db.transition(
            task.id, TaskState.AWAITING_UPLOAD, TaskState.QUEUED, object_version=head.version_id
        )
        if queued is None:  # the expiry sweep (or another delivery) got there first
            return await self._not_waiting(task, head.version_id)
        await self.send_stt(queued)
        log.info("task queued", extra={"task_id": str(task.id)})
        return "queued"

    async def send_stt(self, task: Task) -> None:
        """Send the task's STT message. A crash or an SQS error right after the move to `queued`
        leaves a queued task without a message: the workers' reconciler re-sends it (and on an
        error here the move is undone at once, so that a retried event can queue it again)."""
        message = TaskMessage(
            task_id=task.id,
            tenant_id=task.tenant_id,
            object_key=task.object_key,
            task_type=TaskType.STT,
            language=task.language,
            object_version=task.object_version,
        )
        try:
            await self.queue.send(message)
        except BaseException:
            await self.db.undo_queued(task.id)
            raise

    async def check_key(self, task_id: uuid.UUID, key: str, version: str | None = None) -> str:
        task = await self.db.get_task(task_id)
        if task is None or task.object_key != key:
            await self.storage.delete([key], version_id=version)
            return "ignored:no-task"
        return await self.check(task, version)
