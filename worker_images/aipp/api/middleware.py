"""Pure ASGI middleware: header and body limits, metrics and one JSON access-log line.

The body limit depends on the request: a multipart upload to `POST /v1/tasks` may carry up to
AIPP_MAX_MULTIPART_BYTES (plus framing), every other body AIPP_MAX_JSON_BODY_BYTES. The limit is
enforced on the declared Content-Length and again on the bytes actually received (chunked bodies),
so an oversized body is refused after at most the limit was read, whatever the client declares.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aipp.api.errors import error_body
from aipp.api.metrics import Metrics

log = logging.getLogger("aipp.access")


class BodyTooLarge(Exception):
    pass


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Response:
    """The app's `send`, noting the status and whether the response has started."""

    __slots__ = ("_send", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
        await self._send(message)


class LimitsAndMetrics:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_header_bytes: int,
        body_limit: Callable[[Scope], int],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_header_bytes = max_header_bytes
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        response = _Response(send)
        try:
            await self._handle(scope, receive, response)
        finally:
            self._observe(scope, response.status, time.perf_counter() - start)

    async def _handle(self, scope: Scope, receive: Receive, response: _Response) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            await _send_error(
                response.send,
                431,
                "header_too_large",
                f"request headers exceed {self.max_header_bytes} bytes",
            )
            return
        limit = self.body_limit(scope)
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _send_error(
                    response.send, 400, "bad_request", "Content-Length is not a number"
                )
                return
            if length > limit:
                await _send_error(
                    response.send,
                    413,
                    "payload_too_large",
                    f"the request body exceeds {limit} bytes",
                )
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, response.send)
        except BodyTooLarge:
            if not response.started:
                await _send_error(
                    response.send,
                    413,
                    "payload_too_large",
                    f"the request body exceeds {limit} bytes",
                )

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.observe_request(method, template, status, elapsed)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "key": (scope.get("state") or {}).get("api_key_prefix"),
                },
            )
