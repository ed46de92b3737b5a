"""The /v1/tasks endpoints."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import IO, Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from aipp.api.deps import PrincipalDep, ServicesDep
from aipp.api.errors import ApiError, validation_error
from aipp.api.responses import AUTHENTICATED, errors
from aipp.api.schemas import (
    CURSOR_PATTERN,
    LANGUAGE_PATTERN,
    CreateTaskRequest,
    TaskCreated,
    TaskPage,
    TaskResult,
    TaskView,
    UploadInstructions,
)
from aipp.api.services import REDIS_ERRORS, Services
from aipp.core.audio import accepted_content_types, filename_problem, normalize_content_type
from aipp.core.db import NewTask, Principal, QuotaExceeded
from aipp.core.models import Task, TaskState, TaskType
from aipp.core.queue import TaskMessage
from aipp.core.results import load_result
from aipp_contract.keys import task_prefixes, upload_key
from aipp_contract.upload import (
    EMPTY_FILE,
    FILE_TOO_LARGE,
    NOT_AUDIO,
    SNIFF_BYTES,
    Rejection,
    inspect_upload,
)

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
log = logging.getLogger("aipp.api")

CREATE_ERRORS = errors(
    *AUTHENTICATED,
    415,
    s400="`malformed_json`, `malformed_multipart`, `empty_file`, `bad_request`",
    s413="`file_too_large` (the declared or sent file is over its limit),"
    " `payload_too_large` (the request body is)",
    s415="`unsupported_media_type` (the body is neither JSON nor multipart),"
    " `unsupported_content_type` (the audio type is not accepted), `not_audio` (the file's"
    " bytes are not audio)",
    s422="`validation_error`, `unknown_field`, `invalid_filename`, `idempotency_key_reused`",
    s429="`rate_limited`, or `quota_exceeded` (the tenant's tasks in flight or tasks per day)",
)
LIST_ERRORS = errors(*AUTHENTICATED, s400="`invalid_cursor`, `bad_request`")
ONE_ERRORS = errors(*AUTHENTICATED, 404)
RESULT_ERRORS = errors(*AUTHENTICATED, 404, 409)

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
        "file": {
            "type": "string",
            "format": "binary",
            "description": "the audio file (its bytes decide the type; at most"
            " AIPP_MAX_MULTIPART_BYTES bytes, given as maxLength)",
        },
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
    _check_size(body.size_bytes, services.settings.max_upload_bytes)
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


async def _create_from_multipart(  # long: one flow of checks, store and queue, undone on failure
    request: Request, services: Services, principal: Principal, idem: str | None
) -> JSONResponse:
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


@router.post(
    "",
    status_code=201,
    response_model=TaskCreated,
    responses=CREATE_ERRORS,
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
        if not re.fullmatch(CURSOR_PATTERN, cursor):
            raise ValueError("not a cursor")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        created = datetime.fromisoformat(when)
        if created.tzinfo is None:
            raise ValueError("naive timestamp")
        return created, uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


@router.get(
    "", response_model=TaskPage, responses=LIST_ERRORS, summary="List your tasks, newest first"
)
async def list_tasks(
    principal: PrincipalDep,
    services: ServicesDep,
    state: Annotated[TaskState | None, Query(description="only tasks in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="`next_cursor` of the previous page (400 `invalid_cursor` otherwise)",
            json_schema_extra={"pattern": CURSOR_PATTERN},
        ),
    ] = None,
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


@router.get("/{task_id}", response_model=TaskView, responses=ONE_ERRORS, summary="One task")
async def get_task(task_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> TaskView:
    return TaskView.of(await _owned(services, principal, task_id))


@router.get(
    "/{task_id}/result",
    response_model=TaskResult,
    responses=RESULT_ERRORS,
    summary="Transcript and summary of a completed task (409 until then)",
)
async def get_result(
    task_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep
) -> dict[str, Any]:
    # The row first: a deleted task's result must not be served from the cache.
    task = await _owned(services, principal, task_id)
    if task.state is not TaskState.COMPLETED:
        detail = f": {task.error_message}" if task.state is TaskState.FAILED else ""
        raise ApiError(409, "task_not_completed", f"task {task_id} is {task.state.value}{detail}")
    return await load_result(task, services.storage, services.cache)


@router.delete(
    "/{task_id}",
    status_code=204,
    response_class=Response,
    responses=ONE_ERRORS,
    summary="Delete a task with its audio, transcript and result",
)
async def delete_task(
    task_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep
) -> Response:
    task = await _owned(services, principal, task_id)
    prefixes = task_prefixes(task.tenant_id, task.id)
    # Objects first (S3 down: 503 and nothing is lost, the client retries), then the row: from
    # then on no in-flight job can record a result (its compare-and-set finds nothing) and one
    # that writes late removes what it wrote. A second pass catches a write in between. Every
    # version goes, Transcribe's own output too.
    for prefix in prefixes:
        await services.storage.delete_prefix(prefix)
    await services.db.delete_task(task.id, task.tenant_id)
    for prefix in prefixes:
        try:
            await services.storage.delete_prefix(prefix)
        except Exception as exc:  # the job that wrote it removes it too
            log.warning("second pass of a task deletion failed", extra={"err": repr(exc)})
    with contextlib.suppress(*REDIS_ERRORS):  # a stale entry is never served (row check first)
        await services.cache.drop_result(task.tenant_id, task.id)
    return Response(status_code=204)
