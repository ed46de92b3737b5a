"""The /v1/tasks endpoints."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from aipp.api.creation import create_from_json, create_from_multipart
from aipp.api.deps import KEY_REQUIRED, authenticate
from aipp.api.errors import ApiError
from aipp.api.responses import AUTHENTICATED, errors, model_response
from aipp.api.schemas import (
    CURSOR_PATTERN,
    LANGUAGE_PATTERN,
    TaskCreated,
    TaskPage,
    TaskResult,
    TaskView,
)
from aipp.api.services import REDIS_ERRORS, Services
from aipp.core.db import Principal
from aipp.core.models import Task, TaskState
from aipp.core.results import load_result
from aipp_contract.keys import task_prefixes

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


@router.post(
    "",
    status_code=201,
    response_model=TaskCreated,
    responses=CREATE_ERRORS,
    openapi_extra={**_REQUEST_BODY, **KEY_REQUIRED},
    summary="Create a task: JSON for a presigned upload URL, or multipart with the file",
)
async def create_task(request: Request, idem: IdempotencyKey = None) -> Response:
    principal, services = await authenticate(request)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        return await create_from_json(request, services, principal, idem)
    if media == "multipart/form-data":
        return await create_from_multipart(request, services, principal, idem)
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
    "",
    response_model=TaskPage,
    responses=LIST_ERRORS,
    openapi_extra=KEY_REQUIRED,
    summary="List your tasks, newest first",
)
async def list_tasks(
    request: Request,
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
    principal, services = await authenticate(request)
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


@router.get(
    "/{task_id}",
    response_model=TaskView,
    responses=ONE_ERRORS,
    openapi_extra=KEY_REQUIRED,
    summary="One task",
)
async def get_task(task_id: uuid.UUID, request: Request) -> Response:
    principal, services = await authenticate(request)
    return model_response(TaskView.of(await _owned(services, principal, task_id)))


@router.get(
    "/{task_id}/result",
    response_model=TaskResult,
    responses=RESULT_ERRORS,
    openapi_extra=KEY_REQUIRED,
    summary="Transcript and summary of a completed task (409 until then)",
)
async def get_result(task_id: uuid.UUID, request: Request) -> dict[str, Any]:
    principal, services = await authenticate(request)
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
    openapi_extra=KEY_REQUIRED,
    summary="Delete a task with its audio, transcript and result",
)
async def delete_task(task_id: uuid.UUID, request: Request) -> Response:
    principal, services = await authenticate(request)
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
