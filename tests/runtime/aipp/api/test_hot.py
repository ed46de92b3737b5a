"""The hot routes (`aipp.api.hot`) answer exactly as FastAPI's routing does: each request goes to
the application and to the same application without the hot routes, and the answers match."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aipp.api.hot import HotRoutes
from aipp.core.config import Settings
from aipp.core.db import Database
from fastapi import FastAPI
from fastapi.routing import APIRouter

from ...conftest import ON_SESSION_LOOP, AwsNames, drain_queue, new_key, running_app, wav_bytes

pytestmark = ON_SESSION_LOOP

UPLOAD = {"filename": "call.mp3", "content_type": "audio/mpeg", "size_bytes": 4096}
# What differs between two creates of the same request: the ids, the times, the signature.
_VARYING = re.compile(
    rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    rb"|\d{4}-\d\d-\d\dT[0-9:.]+Z?(\+00:00)?|\d{8}T\d{6}Z|X-Amz-Signature=[0-9a-f]+"
)


@asynccontextmanager
async def without_hot_routes(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as (app, client):
        app.user_middleware = [m for m in app.user_middleware if m.cls is not HotRoutes]
        yield client


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> dict[int, int]:
    """How many requests FastAPI's router was handed, per application."""
    calls: dict[int, int] = {}
    original = APIRouter.__call__

    async def counting(self: APIRouter, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            app = id(scope["app"])
            calls[app] = calls.get(app, 0) + 1
        await original(self, scope, receive, send)

    monkeypatch.setattr(APIRouter, "__call__", counting)
    return calls


def _same(response: httpx.Response) -> tuple[int, str, bytes, list[tuple[str, str]]]:
    headers = sorted(
        (k, _VARYING.sub(b"*", v.encode()).decode())
        for k, v in response.headers.items()
        if k not in {"date", "content-length"}  # the bodies are compared themselves
    )
    return (
        response.status_code,
        response.headers.get("content-type", ""),
        _VARYING.sub(b"*", response.content),
        headers,
    )


async def test_hot_routes_answer_as_fastapi_does(
    api: tuple[FastAPI, httpx.AsyncClient],
    settings: Settings,
    db: Database,
    aws: AwsNames,
    routed: dict[int, int],
) -> None:
    app, hot = api
    auth = await new_key(db)
    created = await hot.post("/v1/tasks", json=UPLOAD, headers=auth)
    task_id = created.json()["id"]
    replay = {**auth, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    assert (await hot.post("/v1/tasks", json=UPLOAD, headers=replay)).status_code == 201
    wav = {"file": ("memo.wav", wav_bytes(3000), "audio/wav")}
    # (method, path, request arguments, served by the hot routes)
    cases: list[tuple[str, str, dict[str, Any], bool]] = [
        ("GET", f"/v1/tasks/{task_id}", {"headers": auth}, True),
        ("GET", f"/v1/tasks/{task_id.upper()}", {"headers": auth}, True),
        ("GET", f"/v1/tasks/{uuid.uuid4()}", {"headers": auth}, True),
        ("GET", f"/v1/tasks/{task_id}", {}, True),
        ("GET", f"/v1/tasks/{task_id}", {"headers": {"X-API-Key": "aipp_nope"}}, True),
        ("GET", f"/v1/tasks/{task_id}?state=x", {"headers": auth}, True),
        ("GET", f"/v1/tasks/{task_id.replace('-', '')}", {"headers": auth}, False),
        ("GET", "/v1/tasks/not-a-uuid", {"headers": auth}, False),
        ("POST", "/v1/tasks", {"json": UPLOAD, "headers": auth}, True),
        ("POST", "/v1/tasks", {"json": UPLOAD, "headers": replay}, True),
        ("POST", "/v1/tasks", {"json": {**UPLOAD, "size_bytes": 5}, "headers": replay}, True),
        ("POST", "/v1/tasks", {"json": {**UPLOAD, "x": 1}, "headers": auth}, True),
        ("POST", "/v1/tasks", {"content": b"{", "headers": {**auth, "Content-Type": "application/json"}}, True),
        ("POST", "/v1/tasks", {"content": b"x", "headers": {**auth, "Content-Type": "text/plain"}}, True),
        ("POST", "/v1/tasks", {"content": b"--x", "headers": {**auth, "Content-Type": "multipart/form-data; boundary=x"}}, True),
        ("POST", "/v1/tasks", {"files": wav, "headers": auth}, True),
        ("POST", "/v1/tasks", {"json": UPLOAD}, True),
        ("POST", "/v1/tasks", {"content": b"{" * (settings.max_json_body_bytes + 1), "headers": {**auth, "Content-Type": "application/json"}}, True),
        ("POST", "/v1/tasks", {"json": UPLOAD, "headers": {**auth, "Idempotency-Key": ""}}, False),
        ("POST", "/v1/tasks", {"json": UPLOAD, "headers": {**auth, "Idempotency-Key": "k" * 256}}, False),
    ]  # fmt: skip
    async with without_hot_routes(settings) as plain:
        for method, path, kwargs, is_hot in cases:
            before = routed.get(id(app), 0)
            served = await hot.request(method, path, **kwargs)
            assert (routed.get(id(app), 0) == before) is is_hot, (method, path)
            expected = await plain.request(method, path, **kwargs)
            assert _same(served) == _same(expected), (method, path, served.text)
    drain_queue(aws)


async def test_hot_routes_are_counted_and_logged_by_their_route(
    client: httpx.AsyncClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    auth = await new_key(db)
    created = (await client.post("/v1/tasks", json=UPLOAD, headers=auth)).json()
    with caplog.at_level("INFO", logger="aipp.access"):
        assert (await client.get(f"/v1/tasks/{created['id']}", headers=auth)).status_code == 200
    [line] = [r for r in caplog.records if r.name == "aipp.access"]
    assert (line.route, line.status) == ("/v1/tasks/{task_id}", 200)  # type: ignore[attr-defined]
    assert line.key == auth["Authorization"].split()[1][: len(line.key)]  # type: ignore[attr-defined]
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/tasks/{task_id}",status="200"' in metrics
