"""S3 "Object Created" (EventBridge, through the upload-events queue) → check the object → queue.

In AWS the function consumes an SQS queue whose messages are the bucket's EventBridge events;
it answers with the ids of the messages it could not handle (`batchItemFailures`), so only
those are retried and, after the queue's receive limit, kept in its DLQ. A bare EventBridge
event or a classic S3 notification is handled too (local development, tests).

The object must really be audio of an allowed type (magic bytes from one ranged GET, never the
client's word), within the size limit and of the size the client declared. Then the task moves
`awaiting_upload → queued` with a compare-and-set and the STT message is sent. A second delivery
of the same event finds the task no longer `awaiting_upload` and does nothing; an upload that
arrives after the workers failed its task as `upload_expired` is deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aipp.core.audio import SNIFF_BYTES, sniff_audio
from aipp.core.config import Settings, load_settings
from aipp.core.db import Database, create_pool
from aipp.core.logging import configure_logging
from aipp.core.models import UPLOAD_EXPIRED, TaskState, TaskType, parse_upload_key
from aipp.core.queue import Queue, TaskMessage
from aipp.core.storage import Storage

log = logging.getLogger("aipp.upload_handler")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    storage: Storage
    queue: Queue


# One event loop per Lambda container, so the connection pool survives warm invocations.
_LOOP = asyncio.new_event_loop()
_RUNTIME: Runtime | None = None


async def build_runtime(settings: Settings) -> Runtime:
    # One object at a time per execution environment: DB_POOL_MAX (1) is all it needs.
    settings = settings.model_copy(update={"db_pool_min": 0})
    return Runtime(
        settings=settings,
        db=Database(await create_pool(settings)),
        storage=Storage(settings),
        queue=Queue(settings),
    )


def objects_in(event: dict[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of each object an event announces; both event shapes are accepted."""
    detail = event.get("detail")
    if isinstance(detail, dict):
        bucket = detail.get("bucket", {}).get("name")
        key = detail.get("object", {}).get("key")
        return [(bucket, key)] if isinstance(bucket, str) and isinstance(key, str) else []
    found = []
    for record in event.get("Records", []) or []:
        s3 = record.get("s3", {}) if isinstance(record, dict) else {}
        bucket = s3.get("bucket", {}).get("name")
        key = s3.get("object", {}).get("key")
        if isinstance(bucket, str) and isinstance(key, str):
            found.append((bucket, unquote_plus(key)))  # classic notifications URL-encode keys
    return found


async def _reject(rt: Runtime, task_id: uuid.UUID, key: str, code: str, message: str) -> str:
    failed = await rt.db.transition(
        task_id,
        TaskState.AWAITING_UPLOAD,
        TaskState.FAILED,
        error_code=code,
        error_message=message,
    )
    if failed is None:
        return "duplicate"
    await rt.storage.delete([key])
    log.info("upload rejected", extra={"task_id": str(task_id), "code": code})
    return f"rejected:{code}"


async def _not_waiting(rt: Runtime, task_id: uuid.UUID, key: str) -> str:
    """The task no longer waits for this upload: a second delivery, or an upload that came
    after the task expired (`upload_expired`), whose object nobody will ever read."""
    task = await rt.db.get_task(task_id)
    if task is not None and task.state is TaskState.FAILED and task.error_code == UPLOAD_EXPIRED:
        await rt.storage.delete([key])
        return "ignored:upload-expired"
    return "duplicate"


async def process_object(rt: Runtime, bucket: str, key: str) -> str:  # noqa: PLR0911 - one exit per outcome
    """What happened to one object: queued, rejected:<code>, duplicate or ignored:<why>."""
    if bucket != rt.settings.audio_bucket:
        return "ignored:other-bucket"
    parsed = parse_upload_key(key)
    if parsed is None:
        return "ignored:not-an-upload"
    tenant_id, task_id, _ = parsed
    task = await rt.db.get_task(task_id)
    if task is None or task.tenant_id != tenant_id or task.object_key != key:
        # No row owns this object (task deleted meanwhile, or a stray key): remove it.
        await rt.storage.delete([key])
        return "ignored:no-task"
    if task.state is not TaskState.AWAITING_UPLOAD:
        return await _not_waiting(rt, task_id, key)

    head = await rt.storage.read_head(key, SNIFF_BYTES)
    if head is None:
        return "ignored:object-gone"
    data, size = head
    limit = rt.settings.max_upload_bytes
    if size == 0:
        return await _reject(rt, task_id, key, "empty_file", "the uploaded file is empty")
    if size > limit:
        return await _reject(
            rt, task_id, key, "file_too_large", f"the file exceeds the limit of {limit} bytes"
        )
    if size != task.size_bytes:
        return await _reject(
            rt,
            task_id,
            key,
            "size_mismatch",
            f"uploaded {size} bytes, but the task declared {task.size_bytes}",
        )
    sniffed = sniff_audio(data)
    if sniffed is None or sniffed not in rt.settings.allowed_content_types:
        return await _reject(
            rt, task_id, key, "not_audio", "the uploaded file is not audio of an allowed type"
        )

    queued = await rt.db.transition(task_id, TaskState.AWAITING_UPLOAD, TaskState.QUEUED)
    if queued is None:  # the expiry sweep (or another delivery) got there first
        return await _not_waiting(rt, task_id, key)
    message = TaskMessage(
        task_id=task_id,
        tenant_id=tenant_id,
        object_key=key,
        task_type=TaskType.STT,
        language=task.language,
    )
    try:
        await rt.queue.send(message)
    except BaseException:
        await rt.db.undo_queued(task_id)  # so that the retried event can queue it again
        raise
    log.info("task queued", extra={"task_id": str(task_id)})
    return "queued"


async def process_event(rt: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    records = event.get("Records") or []
    if records and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records):
        return await process_queue_batch(rt, records)
    outcomes = [
        {"key": key, "outcome": await process_object(rt, bucket, key)}
        for bucket, key in objects_in(event)
    ]
    return {"objects": outcomes}


async def process_queue_batch(rt: Runtime, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Each message is one EventBridge event; a failure is reported for that message alone."""
    outcomes: list[dict[str, str]] = []
    failures: list[dict[str, str]] = []
    for record in records:
        try:
            body = json.loads(record["body"])
            for bucket, key in objects_in(body if isinstance(body, dict) else {}):
                outcomes.append({"key": key, "outcome": await process_object(rt, bucket, key)})
        except Exception:
            log.exception("upload event failed", extra={"message_id": record.get("messageId")})
            failures.append({"itemIdentifier": str(record.get("messageId"))})
    return {"objects": outcomes, "batchItemFailures": failures}


def _runtime() -> Runtime:
    global _RUNTIME  # noqa: PLW0603 - one runtime per Lambda container, built at cold start
    if _RUNTIME is None:
        # DB_SECRET_ARN is read by the pool at its first connection and again after a rotation.
        settings = load_settings()
        configure_logging(settings.log_level)
        _RUNTIME = _LOOP.run_until_complete(build_runtime(settings))
    return _RUNTIME


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _LOOP.run_until_complete(process_event(_runtime(), event))
