"""Where a completed task's transcript and summary live, and how they are read back."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis.exceptions

from aipp.core.cache import Cache
from aipp.core.models import Task, TaskState
from aipp.core.storage import Storage

log = logging.getLogger("aipp.results")
CACHE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _text(document: Any, field: str) -> str:
    if isinstance(document, dict):
        value = document.get(field)
        return value if isinstance(value, str) else ""
    return document if isinstance(document, str) else ""


async def load_result(task: Task, storage: Storage, cache: Cache) -> dict[str, Any]:
    """`{"id", "transcript", "summary"}` of a completed task: Redis first, then the DB and S3."""
    if task.state is not TaskState.COMPLETED:
        raise ValueError(f"task {task.id} is {task.state}, not completed")
    cached = None
    with contextlib.suppress(*CACHE_ERRORS):  # Redis down: read from the DB and S3
        cached = await cache.get_result(task.tenant_id, task.id)
    if cached is not None:
        return cached
    transcript = ""
    if task.transcript_key:
        transcript = _text(await storage.get_json(task.transcript_key), "text")
    summary = task.summary
    if summary is None and task.result_key:
        summary = _text(await storage.get_json(task.result_key), "summary")
    result = {"id": str(task.id), "transcript": transcript, "summary": summary or ""}
    try:
        await cache.set_result(task.tenant_id, task.id, result)
    except CACHE_ERRORS as exc:
        log.warning("result not cached", extra={"err": repr(exc)})
    return result
