"""S3 "Object Created" (EventBridge, through the upload-events queue) → the upload check → queue.

In AWS the function consumes an SQS queue whose messages are the bucket's EventBridge events;
it answers with the ids of the messages it could not handle (`batchItemFailures`), so only
those are retried and, after the queue's receive limit, kept in its DLQ. A bare EventBridge
event or a classic S3 notification is handled too (local development, tests).

The check itself (`aipp.core.upload_check`) is shared with the workers' expiry sweep; this module
reads the events and finds which task each object belongs to.

Object keys in events. A classic S3 notification URL-encodes the key ("The s3 key ... is URL
encoded. For example, 'red flower.jpg' becomes 'red+flower.jpg'", AWS S3 User Guide,
notification-content-structure). For EventBridge the S3 User Guide's event structure page
(ev-events, "Event message detail field") says nothing about encoding and its examples show plain
keys, while AWS Lambda Powertools for Python decodes the EventBridge key with `unquote_plus` too
(`S3EventBridgeNotificationObject.key`). As the sources disagree, nothing here guesses: every
reading of the key (as sent, percent-decoded, form-decoded) is tried against the key the task
row recorded, and only an exact match is acted on. Keys with spaces, `+`, `%` and non-ASCII
names are tested in both event shapes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

from aipp.core.config import Settings, load_settings
from aipp.core.db import Database, create_pool
from aipp.core.logging import configure_logging
from aipp.core.queue import Queue
from aipp.core.storage import Storage
from aipp.core.upload_check import UploadCheck

from aipp_contract.keys import parse_upload_key
from aipp_contract.messages import Kind

log = logging.getLogger("aipp.upload_handler")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    storage: Storage
    queue: Queue

    @property
    def check(self) -> UploadCheck:
        return UploadCheck(self.settings, self.db, self.storage, self.queue)


@dataclass(frozen=True)
class EventObject:
    bucket: str
    readings: tuple[str, ...]  # the key as sent first, then its decodings (no duplicates)
    version: str | None


# One event loop per Lambda container, so the connection pool survives warm invocations.
_LOOP = asyncio.new_event_loop()
_RUNTIME: Runtime | None = None


async def build_runtime(settings: Settings) -> Runtime:
    # One object at a time per execution environment: AIPP_DB_POOL_MAX (1) is all it needs.
    settings = settings.model_copy(update={"db_pool_min": 0})
    return Runtime(
        settings=settings,
        db=Database(await create_pool(settings)),
        storage=Storage(settings),
        queue=Queue(settings, kind=Kind.UPLOAD_CHECK),
    )


def _readings(key: str, *, form_encoded: bool) -> tuple[str, ...]:
    order = (
        [unquote_plus(key), key, unquote(key)]
        if form_encoded
        else [key, unquote(key), unquote_plus(key)]
    )
    return tuple(dict.fromkeys(order))


def objects_in(event: dict[str, Any]) -> list[EventObject]:
    """Each object an event announces; both event shapes are accepted."""
    detail = event.get("detail")
    if isinstance(detail, dict):
        bucket = detail.get("bucket", {}).get("name")
        obj = detail.get("object", {})
        key = obj.get("key")
        if not (isinstance(bucket, str) and isinstance(key, str)):
            return []
        version = obj.get("version-id")
        return [EventObject(bucket, _readings(key, form_encoded=False), version or None)]
    found = []
    for record in event.get("Records", []) or []:
        s3 = record.get("s3", {}) if isinstance(record, dict) else {}
        bucket = s3.get("bucket", {}).get("name")
        obj = s3.get("object", {})
        key = obj.get("key")
        if isinstance(bucket, str) and isinstance(key, str):
            version = obj.get("versionId")
            found.append(EventObject(bucket, _readings(key, form_encoded=True), version or None))
    return found


async def _resolve(rt: Runtime, readings: tuple[str, ...]) -> tuple[str, str] | None:
    """(key, outcome-or-empty): the reading that is the task's own key, else why none is."""
    parsed = [(k, parse_upload_key(k)) for k in readings]
    uploads = [(k, p) for k, p in parsed if p is not None]
    if not uploads:
        return None
    for key, (_, task_id, _) in uploads:
        task = await rt.db.get_task(task_id)
        if task is not None and task.object_key == key:
            return key, ""
    # No task owns any reading: remove the object that is really there (a stray, or the upload
    # of a task deleted meanwhile).
    for key, _ in uploads:
        if await rt.storage.head_size(key) is not None:
            await rt.storage.delete([key])
            return key, "ignored:no-task"
    return uploads[0][0], "ignored:no-task"


async def process_object(rt: Runtime, bucket: str, key: str, version: str | None = None) -> str:
    """What happened to one object: queued, rejected:<code>, duplicate or ignored:<why>."""
    return (await _process(rt, EventObject(bucket, (key,), version)))[1]


async def _process(rt: Runtime, obj: EventObject) -> tuple[str, str]:
    if obj.bucket != rt.settings.audio_bucket:
        return obj.readings[0], "ignored:other-bucket"
    resolved = await _resolve(rt, obj.readings)
    if resolved is None:
        return obj.readings[0], "ignored:not-an-upload"
    key, outcome = resolved
    if outcome:
        return key, outcome
    parsed = parse_upload_key(key)
    assert parsed is not None
    return key, await rt.check.check_key(parsed[1], key, obj.version)


async def process_event(rt: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    records = event.get("Records") or []
    if records and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records):
        return await process_queue_batch(rt, records)
    outcomes = []
    for obj in objects_in(event):
        key, outcome = await _process(rt, obj)
        outcomes.append({"key": key, "outcome": outcome})
    return {"objects": outcomes}


async def process_queue_batch(rt: Runtime, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Each message is one EventBridge event; a failure is reported for that message alone."""
    outcomes: list[dict[str, str]] = []
    failures: list[dict[str, str]] = []
    for record in records:
        try:
            body = json.loads(record["body"])
            for obj in objects_in(body if isinstance(body, dict) else {}):
                key, outcome = await _process(rt, obj)
                outcomes.append({"key": key, "outcome": outcome})
        except Exception:
            log.exception("upload event failed", extra={"message_id": record.get("messageId")})
            failures.append({"itemIdentifier": str(record.get("messageId"))})
    return {"objects": outcomes, "batchItemFailures": failures}


def _runtime() -> Runtime:
    global _RUNTIME  # noqa: PLW0603 - one runtime per Lambda container, built at cold start
    if _RUNTIME is None:
        # AIPP_DB_SECRET_ARN is read by the pool at its first connection and again after a rotation.
        settings = load_settings()
        configure_logging(settings.log_level)
        _RUNTIME = _LOOP.run_until_complete(build_runtime(settings))
    return _RUNTIME


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _LOOP.run_until_complete(process_event(_runtime(), event))
