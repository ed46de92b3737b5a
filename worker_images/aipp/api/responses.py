"""The error answers each operation can give, for the OpenAPI document.

Every operation lists every status it can answer with its error body and the codes it carries,
so that generated clients and contract tools can rely on the document. The middleware answers
400 (a non-numeric Content-Length), 413 (a body over the limit) and 431 (headers over the limit)
on every route; 500 is the answer to a bug, 503 to a dependency that is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from aipp.api.schemas import ErrorResponse

RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}

_DESCRIPTIONS: dict[int, str] = {
    400: "bad request: `bad_request` (Content-Length not a number)",
    401: "`unauthorized`: no API key, or one that is not valid (or was revoked)",
    404: "`task_not_found`: no such task for this tenant",
    409: "`task_not_completed`: the task has no result yet, or failed",
    413: "`payload_too_large`: the request body exceeds its limit",
    415: "unsupported media type",
    422: "`validation_error`: a parameter or field is not valid",
    429: "`rate_limited` (per-key rate, or too many invalid keys from one address)",
    431: "`header_too_large`: the request headers exceed their limit",
    500: "`internal_error`: an unexpected error (a bug); nothing was half-written",
    503: "`dependency_unavailable`: the database, S3 or the queue is down (see /readyz)",
}


def errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """Responses for `statuses` plus the ones every route can give (400, 413, 431, 500);
    `descriptions` (keyed `s<status>`) replace the default text of a status."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in sorted({400, 413, 431, 500, *statuses}):
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": descriptions.get(f"s{status}", _DESCRIPTIONS[status]),
        }
        if status == 429 or (status == 503 and "s503" not in descriptions):
            entry["headers"] = RETRY_AFTER
        answers[status] = entry
    return answers


# The statuses every authenticated /v1 operation can answer.
AUTHENTICATED = (401, 422, 429, 503)


def model_response(
    model: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """`model` as its JSON, serialized once by pydantic. An endpoint that returns a model has
    FastAPI validate it against the response model again and encode it in Python; the route's
    `response_model` still documents the answer."""
    return Response(
        model.__pydantic_serializer__.to_json(model),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )
