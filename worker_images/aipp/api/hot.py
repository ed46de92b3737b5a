"""The two hot routes, `GET /v1/tasks/{id}` and `POST /v1/tasks`, called without FastAPI's
router and parameter machinery.

Matching a request against every route, solving the parameters and running the exception
middleware cost about as much CPU as the route's own work (`make bench-api-cpu`). This layer
sits inside `LimitsAndMetrics` (header and body limits, metrics and the access log apply as
before) and calls the same endpoint functions with the same `Request`, when the request is one
whose parameters need no checking beyond what is done here: a task id in its canonical form, an
`Idempotency-Key` of 1 to 255 characters or none. Everything else, malformed parameters included,
goes to FastAPI, which answers as it always has. Errors are answered by `errors.answer`, as the
application's exception handlers answer them; the routes, their parameters and the OpenAPI
document stay defined in `routes/tasks.py`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from aipp.api.errors import answer
from aipp.api.middleware import BodyTooLarge
from aipp.api.routes import tasks

_TASK_PATH = re.compile(
    r"/v1/tasks/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
)
_IDEMPOTENCY_KEY = b"idempotency-key"
_MAX_IDEMPOTENCY_KEY = 255


def _route(routes: Sequence[BaseRoute], endpoint: Callable[..., object]) -> APIRoute:
    """The route serving `endpoint`, as FastAPI puts it in the scope (`scope["route"]`: the
    metrics and the access log name the route by its path)."""
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            return route
    raise LookupError(f"no route serves {endpoint.__qualname__}")


def _idempotency_key(scope: Scope) -> tuple[bool, str | None]:
    """(whether the header is absent or valid, its value)."""
    for name, value in scope["headers"]:
        if name == _IDEMPOTENCY_KEY:
            key = value.decode("latin-1")
            return 1 <= len(key) <= _MAX_IDEMPOTENCY_KEY, key
    return True, None


class HotRoutes:
    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.one_task = _route(routes, tasks.get_task)
        self.create_task = _route(routes, tasks.create_task)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method = scope["method"]
            if method == "GET":
                match = _TASK_PATH.fullmatch(scope["path"])
                if match:
                    task_id = uuid.UUID(match.group(1))
                    scope["route"] = self.one_task
                    await self._serve(scope, receive, send, lambda r: tasks.get_task(task_id, r))
                    return
            elif method == "POST" and scope["path"] == "/v1/tasks":
                valid, key = _idempotency_key(scope)
                if valid:
                    scope["route"] = self.create_task
                    await self._serve(scope, receive, send, lambda r: tasks.create_task(r, key))
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _serve(
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> None:
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except BodyTooLarge:  # answered by LimitsAndMetrics
            raise
        except Exception as exc:
            response = answer(request, exc)
        await response(scope, receive, send)
