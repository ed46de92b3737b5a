"""Every error is JSON `{"error": {"code", "message"}}`; 5xx only when a dependency is down."""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import botocore.exceptions
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

log = logging.getLogger("aipp.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    431: "header_too_large",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class DependencyDown(Exception):
    def __init__(self, dependency: str) -> None:
        super().__init__(f"{dependency} is unavailable")
        self.dependency = dependency


DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    DependencyDown,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # refused login (rotation)
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    OSError,
    TimeoutError,
)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in {"body"}) or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def validation_error(errors: list[Any]) -> ApiError:
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "malformed_json", "the request body is not valid JSON")
    if any(e.get("type") == "extra_forbidden" for e in errors):
        return ApiError(422, "unknown_field", _describe(errors))
    return ApiError(422, "validation_error", _describe(errors))


def dependency_of(exc: BaseException) -> str | None:  # noqa: PLR0911 - a table of cases
    """Which dependency an exception says is down, or None if it is not an outage."""
    if isinstance(exc, DependencyDown):
        return exc.dependency
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.TooManyConnectionsError
        | asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    ):
        return "database"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "redis"
    if isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectTimeoutError
        | botocore.exceptions.ReadTimeoutError
        | botocore.exceptions.ConnectionClosedError,
    ):
        return "s3/sqs"
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or exc.response.get("Error", {}).get("Code") in {
            "NoSuchBucket",
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        }:
            return "s3/sqs"
    if isinstance(exc, OSError | TimeoutError):
        return "database"
    return None


def _path_methods(app: Any) -> list[tuple[re.Pattern[str], set[str]]]:
    """(path regex, methods) of every documented path, from the OpenAPI document (cached)."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "path_methods", None)
    if table is None:
        table = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            methods = {m.upper() for m in operations}
            if "GET" in methods:
                methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
            table.append((re.compile(f"^{pattern}$"), methods))
        app.state.path_methods = table
    return table


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path."""
    methods: set[str] = set()
    for pattern, supported in _path_methods(request.app):
        if pattern.match(request.url.path):
            methods |= supported
    for route in request.app.router.routes:  # undocumented routes (/openapi.json, /docs)
        if isinstance(route, Route) and route.path_regex.match(request.url.path):
            methods |= set(route.methods or ())
    return sorted(methods)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the methods of the first route that matched the path; a path
        # served by several routes (GET and DELETE /v1/tasks/{id}) supports them all.
        allowed = allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not supported here; allowed: {', '.join(allowed)}"
    return error_response(exc.status_code, code, message, headers)


def answer(request: Request, exc: Exception) -> JSONResponse:
    """The JSON answer to an exception a route raised: its own status for an `ApiError` or an
    HTTP exception, 503 when a dependency is down, else 500 (logged with its traceback: a bug).
    The application's exception handlers and the hot routes (`aipp.api.hot`) both answer so."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, StarletteHTTPException):
        return _http_error(request, exc)
    dependency = dependency_of(exc)
    if dependency is None:
        log.error("unexpected error", exc_info=exc, extra={"path": request.url.path})
        return error_response(500, "internal_error", "an unexpected error occurred")
    log.warning(
        "dependency unavailable",
        extra={"dependency": dependency, "path": request.url.path, "err": repr(exc)},
    )
    return error_response(
        503,
        "dependency_unavailable",
        f"{dependency} is unavailable; see /readyz",
        {"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    async def _answer(request: Request, exc: Exception) -> JSONResponse:
        return answer(request, exc)

    app.add_exception_handler(ApiError, _answer)
    app.add_exception_handler(StarletteHTTPException, _answer)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(list(exc.errors()))
        return error_response(err.status, err.code, err.message)

    # Registered per class, so they are answered in place (a bare `Exception` handler would
    # answer too, but the server then logs the exception a second time as unhandled).
    for exc_class in (*DEPENDENCY_ERRORS, Exception):
        app.add_exception_handler(exc_class, _answer)
