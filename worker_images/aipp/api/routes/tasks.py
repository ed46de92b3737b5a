"""The /v1/tasks endpoints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from aipp.api.deps import PrincipalDep, ServicesDep
from aipp.api.errors import ApiError, validation_error
from aipp.api.schemas import (
    LANGUAGE_PATTERN,
    CreateTaskRequest,
    ErrorResponse,
    TaskCreated,
    TaskPage,
    TaskResult,
    TaskView,
    UploadInstructions,
)
from aipp.api.services import Services
from aipp.core.audio import filename_problem, normalize_content_type, sniff_audio
from aipp.core.db import NewTask, Principal
from aipp.core.models import Task, TaskState, TaskType, result_key, transcript_key, upload_key
from aipp.core.queue import TaskMessage
from aipp.core.results import load_result

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 422, 429, 431, 503)
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="same key + same body returns the same task; a different body gets 422",
    ),
]

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the audio file"},
        "language": {"type": "string", "maxLength": 35, "pattern": LANGUAGE_PATTERN},
    },
    "additionalProperties": False,
}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CreateTaskRequest"}},
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
        },
    }
}


def _check_filename(name: str) -> None:
    problem = filename_problem(name)
    if problem:
        raise ApiError(422, "invalid_filename", problem)


def _check_type(services: Services, content_type: str) -> str:
    normalized = normalize_content_type(content_type)
    allowed = services.settings.allowed_content_types
    if normalized not in allowed:
        raise ApiError(
            415,
            "unsupported_content_type",
            f"content type {content_type!r} is not accepted; allowed: {', '.join(allowed)}",
        )
    return normalized


def _check_size(services: Services, size: int) -> None:
    limit = services.settings.max_upload_bytes
    if size > limit:
        raise ApiError(413, "file_too_large", f"the file exceeds the limit of {limit} bytes")


def _created(services: Services, task: Task, *, replayed: bool, with_upload: bool) -> JSONResponse:
    view = TaskCreated.model_validate(TaskView.of(task).model_dump())
    if with_upload and task.state is TaskState.AWAITING_UPLOAD:
        expires = services.settings.presign_expires_seconds
        view.upload = UploadInstructions(
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
    return JSONResponse(view.model_dump(mode="json"), status_code=201, headers=headers)


async def _insert(services: Services, new: NewTask) -> tuple[Task, bool]:
    task, created = await services.db.insert_task(new)
    if not created:
        stored = await services.db.request_hash(task.tenant_id, task.id)
        if stored != new.request_hash:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request body",
            )
    return task, created


async def _create_from_json(
    request: Request, services: Services, principal: Principal, idem: str | None
) -> JSONResponse:
    raw = await request.body()
    try:
        body = CreateTaskRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(list(exc.errors())) from None
    _check_filename(body.filename)
    content_type = _check_type(services, body.content_type)
    _check_size(services, body.size_bytes)
    task_id = uuid.uuid4()
    canonical = json.dumps(body.model_dump(), sort_keys=True)
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
        request_hash=hashlib.sha256(b"json\0" + canonical.encode()).hexdigest() if idem else None,
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


async def _create_from_multipart(
    request: Request, services: Services, principal: Principal, idem: str | None
) -> JSONResponse:
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
        limit = services.settings.max_upload_bytes
        data = await upload.read(limit + 1)
    finally:
        await form.close()
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    _check_size(services, len(data))
    sniffed = sniff_audio(data[:64])
    if sniffed is None:
        raise ApiError(415, "not_audio", "the file is not audio of a recognised format")
    content_type = _check_type(services, sniffed)

    task_id = uuid.uuid4()
    digest = hashlib.sha256()
    for part in (b"multipart", filename.encode(), (language or "").encode(), data):
        digest.update(hashlib.sha256(part).digest())
    new = NewTask(
        id=task_id,
        tenant_id=principal.tenant_id,
        state=TaskState.QUEUED,
        filename=filename,
        object_key=upload_key(principal.tenant_id, task_id, filename),
        content_type=content_type,
        size_bytes=len(data),
        language=language,
        idempotency_key=idem,
        request_hash=digest.hexdigest() if idem else None,
    )
    task, created = await _insert(services, new)
    if not created:
        return _created(services, task, replayed=True, with_upload=False)
    # The row exists (queued, so the upload Lambda leaves it alone); store, then queue. Undo on
    # failure so that no row is left without its object, and no object without its row.
    try:
        await services.storage.put(task.object_key, data, content_type)
    except BaseException:
        await services.db.delete_task(task.id, task.tenant_id)
        raise
    try:
        await services.queue.send(
            TaskMessage(
                task_id=task.id,
                tenant_id=task.tenant_id,
                object_key=task.object_key,
                task_type=TaskType.STT,
                language=task.language,
            )
        )
    except BaseException:
        await services.storage.delete([task.object_key])
        await services.db.delete_task(task.id, task.tenant_id)
        raise
    services.metrics.tasks_created.labels(task.state.value).inc()
    return _created(services, task, replayed=False, with_upload=False)


def _language_ok(value: str) -> bool:
    return len(value) <= 35 and re.fullmatch(LANGUAGE_PATTERN, value) is not None


@router.post(
    "",
    status_code=201,
    response_model=TaskCreated,
    responses=_ERRORS,
    openapi_extra=_REQUEST_BODY,
    summary="Create a task: JSON for a presigned upload URL, or multipart with the file",
)
async def create_task(
    request: Request, principal: PrincipalDep, services: ServicesDep, idem: IdempotencyKey = None
) -> JSONResponse:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        return await _create_from_json(request, services, principal, idem)
    if media == "multipart/form-data":
        return await _create_from_multipart(request, services, principal, idem)
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/json (for an upload URL) or multipart/form-data (with the file)",
    )


def _encode_cursor(task: Task) -> str:
    raw = f"{task.created_at.isoformat()}|{task.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        created = datetime.fromisoformat(when)
        if created.tzinfo is None:
            raise ValueError("naive timestamp")
        return created, uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


@router.get("", response_model=TaskPage, responses=_ERRORS, summary="List your tasks, newest first")
async def list_tasks(
    principal: PrincipalDep,
    services: ServicesDep,
    state: Annotated[TaskState | None, Query(description="only tasks in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskPage:
    after = _decode_cursor(cursor) if cursor else None
    tasks = await services.db.list_tasks(
        principal.tenant_id, state=state, limit=limit + 1, after=after
    )
    more = len(tasks) > limit
    tasks = tasks[:limit]
    return TaskPage(
        items=[TaskView.of(t) for t in tasks],
        next_cursor=_encode_cursor(tasks[-1]) if more and tasks else None,
    )


async def _owned(services: Services, principal: Principal, task_id: uuid.UUID) -> Task:
    task = await services.db.get_task(task_id, principal.tenant_id)
    if task is None:
        raise ApiError(404, "task_not_found", f"no task {task_id}")
    return task


@router.get("/{task_id}", response_model=TaskView, responses=_ERRORS, summary="One task")
async def get_task(task_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> TaskView:
    return TaskView.of(await _owned(services, principal, task_id))


@router.get(
    "/{task_id}/result",
    response_model=TaskResult,
    responses={**_ERRORS, 409: {"model": ErrorResponse}},
    summary="Transcript and summary of a completed task (409 until then)",
)
async def get_result(
    task_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep
) -> dict[str, Any]:
    cached = await services.cache.get_result(principal.tenant_id, task_id)
    if cached is not None:
        return cached
    task = await _owned(services, principal, task_id)
    if task.state is not TaskState.COMPLETED:
        detail = f": {task.error_message}" if task.state is TaskState.FAILED else ""
        raise ApiError(409, "task_not_completed", f"task {task_id} is {task.state.value}{detail}")
    return await load_result(task, services.storage, services.cache)


@router.delete(
    "/{task_id}",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
    summary="Delete a task with its audio, transcript and result",
)
async def delete_task(
    task_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep
) -> Response:
    task = await _owned(services, principal, task_id)
    keys = {
        task.object_key,
        transcript_key(task.tenant_id, task.id),
        result_key(task.tenant_id, task.id),
    }
    keys.update(k for k in (task.transcript_key, task.result_key) if k)
    await services.storage.delete(sorted(keys))
    await services.cache.drop_result(task.tenant_id, task.id)
    await services.db.delete_task(task.id, task.tenant_id)
    return Response(status_code=204)
