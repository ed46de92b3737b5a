"""Creating a task: the checks, the row, and for a multipart upload the saga that stores the
file and queues it, undoing what was done when a later step fails.

A JSON request gets a task `awaiting_upload` and a presigned PUT URL (the upload Lambda queues
it once the file arrives). A multipart request carries the file: row (`queued`, so the upload
Lambda leaves the object alone) → object in S3 → message on the queue; a failure removes the row
and the object, so no row is left without its object and no object without its row. A crash
between the steps leaves a queued row, whose message the workers' reconciler sends.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import IO

from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.responses import Response

from aipp.api.errors import ApiError, validation_error
from aipp.api.responses import model_response
from aipp.api.schemas import (
    LANGUAGE_PATTERN,
    CreateTaskRequest,
    TaskCreated,
    UploadInstructions,
)
from aipp.api.services import Services
from aipp.core.audio import accepted_content_types, filename_problem, normalize_content_type
from aipp.core.db import NewTask, Principal, QuotaExceeded
from aipp.core.models import Task, TaskState, TaskType
from aipp.core.queue import TaskMessage
from aipp_contract.keys import task_prefixes, upload_key
from aipp_contract.upload import (
    EMPTY_FILE,
    FILE_TOO_LARGE,
    NOT_AUDIO,
    SNIFF_BYTES,
    Rejection,
    inspect_upload,
)


def _check_filename(name: str) -> None:
    problem = filename_problem(name)
    if problem:
        raise ApiError(422, "invalid_filename", problem)


def _check_type(services: Services, content_type: str) -> str:
    """The canonical type of an accepted `content_type` (exactly one of the schema's enum)."""
    accepted = accepted_content_types(services.settings.allowed_content_types)
    if content_type not in accepted:
        raise ApiError(
            415,
            "unsupported_content_type",
            f"content type {content_type!r} is not accepted; allowed: {', '.join(accepted)}",
        )
    return normalize_content_type(content_type)


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise ApiError(413, FILE_TOO_LARGE, f"the file exceeds the limit of {limit} bytes")


# The HTTP status of each upload rejection (aipp_contract.upload) of a multipart upload.
_REJECTION_STATUS = {EMPTY_FILE: 400, FILE_TOO_LARGE: 413, NOT_AUDIO: 415}


def _rejected(rejection: Rejection) -> ApiError:
    hint = ""
    if rejection.code == FILE_TOO_LARGE:
        hint = "; send larger files with an upload URL (JSON request)"
    status = _REJECTION_STATUS[rejection.code]
    return ApiError(status, rejection.code, rejection.message + hint)


def _created(services: Services, task: Task, *, replayed: bool, with_upload: bool) -> Response:
    view = TaskCreated.of(task)
    if with_upload and task.state is TaskState.AWAITING_UPLOAD:
        expires = services.settings.presign_expires_seconds
        view.upload = UploadInstructions.model_construct(
            url=services.storage.presign_put(
                task.object_key, task.content_type, task.size_bytes, expires
            ),
            method="PUT",
            headers={"Content-Type": task.content_type, "Content-Length": str(task.size_bytes)},
            expires_at=datetime.now(UTC) + timedelta(seconds=expires),
        )
    headers = {"Location": f"/v1/tasks/{task.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return model_response(view, status_code=201, headers=headers)


async def _insert(services: Services, new: NewTask) -> tuple[Task, bool]:
    try:
        task, created = await services.db.insert_task(new, services.quota)
    except QuotaExceeded as exc:
        services.metrics.quota_refused.labels(exc.kind).inc()
        raise ApiError(
            429,
            "quota_exceeded",
            f"{exc.kind} quota of {exc.limit} reached: {exc.message}",
            {"Retry-After": str(exc.retry_after)},
        ) from None
    if not created and task.request_hash != new.request_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request body",
        )
    return task, created


async def create_from_json(
    request: Request, services: Services, principal: Principal, idem: str | None
) -> Response:
    raw = await request.body()
    try:
        body = CreateTaskRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(list(exc.errors())) from None
    _check_filename(body.filename)
    content_type = _check_type(services, body.content_type)
    _check_size(body.size_bytes, services.settings.max_upload_bytes)
    task_id = uuid.uuid4()
    request_hash = None
    if idem:
        canonical = json.dumps(body.model_dump(), sort_keys=True)
        request_hash = hashlib.sha256(b"json\0" + canonical.encode()).hexdigest()
    new = NewTask(
        id=task_id,
        tenant_id=principal.tenant_id,
        state=TaskState.AWAITING_UPLOAD,
        filename=body.filename,
        object_key=upload_key(principal.tenant_id, task_id, body.filename),
        content_type=content_type,
        size_bytes=body.size_bytes,
        language=body.language,
        idempotency_key=idem,
        request_hash=request_hash,
    )
    task, created = await _insert(services, new)
    if created:
        services.metrics.tasks_created.labels(task.state.value).inc()
    elif task.state is TaskState.AWAITING_UPLOAD:
        # A replay gets a fresh upload URL, so its upload window starts again (the expiry sweep
        # counts from `updated_at`); if the task moved on meanwhile, answer with where it is.
        task = await services.db.renew_upload(task.id) or (
            await services.db.get_task(task.id, principal.tenant_id) or task
        )
    return _created(services, task, replayed=not created, with_upload=True)


def _digest_file(file: IO[bytes], parts: list[bytes]) -> str:
    """The idempotency hash of a multipart request, reading the spooled file in chunks."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    content = hashlib.sha256()
    file.seek(0)
    while chunk := file.read(1024 * 1024):
        content.update(chunk)
    digest.update(content.digest())
    file.seek(0)
    return digest.hexdigest()


def _size_of(file: IO[bytes]) -> int:
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    return size


async def create_from_multipart(  # long: one flow of checks, store and queue, undone on failure
    request: Request, services: Services, principal: Principal, idem: str | None
) -> Response:
    """The file is spooled to disk by the form parser (1 MiB in memory at most), checked from
    its first bytes, hashed and streamed to S3 in chunks: memory per request stays bounded."""
    try:
        form = await request.form(max_files=1, max_fields=2)
    except MultiPartException as exc:
        raise ApiError(400, "malformed_multipart", str(exc)) from None
    try:
        unknown = set(form.keys()) - {"file", "language"}
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown form fields: {sorted(unknown)}")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "validation_error", "form field `file` must be a file")
        language = form.get("language")
        if language is not None and (not isinstance(language, str) or not _language_ok(language)):
            raise ApiError(422, "validation_error", "language must be a BCP-47 tag like en-US")
        filename = upload.filename or ""
        _check_filename(filename)
        file = upload.file
        size = await run_in_threadpool(_size_of, file)
        head = await run_in_threadpool(file.read, SNIFF_BYTES)
        found = inspect_upload(size, head, limit=services.settings.max_multipart_bytes)
        if isinstance(found, Rejection):
            raise _rejected(found)
        content_type = _check_type(services, found)
        request_hash = None
        if idem:
            request_hash = await run_in_threadpool(
                _digest_file, file, [b"multipart", filename.encode(), (language or "").encode()]
            )
        task_id = uuid.uuid4()
        new = NewTask(
            id=task_id,
            tenant_id=principal.tenant_id,
            state=TaskState.QUEUED,
            filename=filename,
            object_key=upload_key(principal.tenant_id, task_id, filename),
            content_type=content_type,
            size_bytes=size,
            language=language,
            idempotency_key=idem,
            request_hash=request_hash,
        )
        task, created = await _insert(services, new)
        if not created:
            return _created(services, task, replayed=True, with_upload=False)
        # The row exists (queued, so the upload Lambda leaves the object alone); store, then
        # queue. Undo on failure so that no row is left without its object, and no object
        # without its row. A crash between the two leaves a queued row: the reconciler sends
        # its message.
        await run_in_threadpool(file.seek, 0)
        try:
            version = await services.storage.put_file(task.object_key, file, content_type)
            if version is not None:
                task = await services.db.set_object_version(task.id, version) or task
        except BaseException:
            await services.db.delete_task(task.id, task.tenant_id)
            raise
    finally:
        await form.close()
    try:
        await services.queue.send(
            TaskMessage(
                task_id=task.id,
                tenant_id=task.tenant_id,
                object_key=task.object_key,
                task_type=TaskType.STT,
                language=task.language,
                object_version=task.object_version,
            )
        )
    except BaseException:
        await services.db.delete_task(task.id, task.tenant_id)
        await services.storage.delete_prefix(task_prefixes(task.tenant_id, task.id)[0])
        raise
    services.metrics.tasks_created.labels(task.state.value).inc()
    return _created(services, task, replayed=False, with_upload=False)


def _language_ok(value: str) -> bool:
    return len(value) <= 35 and re.fullmatch(LANGUAGE_PATTERN, value) is not None
