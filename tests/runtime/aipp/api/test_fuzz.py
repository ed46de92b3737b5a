"""Property-based: whatever a client sends, with every dependency up, the API never answers 5xx,
and every error is the JSON error shape."""

from __future__ import annotations

import json
import re
import string
import uuid
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest_asyncio
from aipp.core.db import Database
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ...conftest import ON_SESSION_LOOP, AwsNames, bucket_keys, drain_queue, new_key, wav_bytes

pytestmark = ON_SESSION_LOOP

header_text = st.text(alphabet=string.printable.strip() + " ", max_size=60)
any_text = st.text(max_size=40)
segment = st.one_of(
    st.uuids().map(str),
    any_text.map(lambda t: quote(t, safe="")),
    st.sampled_from(["", ".", "..", "%00", "%2F", "result", "0" * 40]),
)
path = st.one_of(
    st.just("/v1/tasks"),
    segment.map(lambda s: f"/v1/tasks/{s}"),
    segment.map(lambda s: f"/v1/tasks/{s}/result"),
    st.sampled_from(["/healthz", "/readyz", "/metrics", "/openapi.json", "/v1", "/"]),
)
query = st.dictionaries(
    st.sampled_from(["state", "limit", "cursor", "other"]),
    st.one_of(any_text, st.integers(-5, 500).map(str), st.sampled_from(["queued", "failed"])),
    max_size=3,
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
task_body = st.fixed_dictionaries(
    {},
    optional={
        "filename": st.one_of(any_text, json_value),
        "content_type": st.one_of(st.sampled_from(["audio/mpeg", "audio/wav", "x/y"]), json_value),
        "size_bytes": st.one_of(st.integers(-10, 10**12), json_value),
        "language": st.one_of(st.sampled_from(["en", "en-US", "xx-"]), json_value),
        "extra": json_value,
    },
)
near_valid_body = st.fixed_dictionaries(
    {
        "filename": st.one_of(st.sampled_from(["a.mp3", "talk 1.wav"]), any_text),
        "content_type": st.sampled_from(["audio/mpeg", "audio/wav", "audio/x-wav", "video/mp4"]),
        "size_bytes": st.integers(1, 2_000_000),
    },
    optional={"language": st.one_of(st.sampled_from(["en", "pt-BR"]), any_text)},
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "multipart/form-data; boundary=zz",
        "application/x-www-form-urlencoded",
        "",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):  # half the time: the create endpoint, the richest input surface
        request: dict[str, Any] = {"method": "POST", "url": "/v1/tasks", "params": {}}
    else:
        method = draw(st.sampled_from(["GET", "GET", "POST", "DELETE", "PUT"]))
        request = {"method": method, "url": draw(path), "params": draw(query)}
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(header_text)
    kind = draw(st.sampled_from(["json", "raw", "multipart", "none"]))
    if kind == "json":
        request["content"] = json.dumps(
            draw(st.one_of(near_valid_body, task_body, json_value))
        ).encode()
        headers["Content-Type"] = draw(st.one_of(st.just("application/json"), content_types))
    elif kind == "raw":
        request["content"] = draw(st.binary(max_size=300))
        headers["Content-Type"] = draw(content_types)
    elif kind == "multipart":
        audio = draw(st.one_of(st.just(wav_bytes(300)), st.binary(max_size=200)))
        filename = draw(st.one_of(st.just("memo.wav"), any_text))
        request["files"] = {draw(st.sampled_from(["file", "file", "audio"])): (filename, audio)}
        if draw(st.booleans()):
            request["data"] = {"language": draw(any_text)}
    request["headers"] = headers
    return request


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def auth(db: Database) -> dict[str, str]:
    return await new_key(db)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def documented(client: httpx.AsyncClient) -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    """(path regex, operations) of the served OpenAPI document."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    return [
        (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"), ops)
        for template, ops in paths.items()
    ]


def _operation(
    documented: list[tuple[re.Pattern[str], dict[str, Any]]], method: str, url: str
) -> dict[str, Any] | None:
    path = unquote(urlsplit(url).path)  # as the server routes it
    for pattern, operations in documented:
        if pattern.match(path):
            return operations.get(method.lower())  # type: ignore[no-any-return]
    return None


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_no_request_gets_a_5xx_and_every_answer_is_documented(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    documented: list[tuple[re.Pattern[str], dict[str, Any]]],
    request: dict[str, Any],
) -> None:
    request["headers"] = {**auth, **request["headers"]}
    response = await client.request(**request)
    event(f"status {response.status_code}")
    assert response.status_code < 500, (request, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    operation = _operation(documented, request["method"], str(response.request.url))
    if operation is not None:  # a documented operation lists every status it answers
        assert str(response.status_code) in operation["responses"], (request, response.text)
    elif response.status_code == 405:
        assert response.headers["allow"]


async def test_fuzzing_left_only_complete_tasks(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, aws: AwsNames
) -> None:
    """Every task the fuzzer managed to create is whole: queued ones have their object."""
    page = (await client.get("/v1/tasks", params={"limit": "100"}, headers=auth)).json()
    for item in page["items"]:
        task = await db.get_task(uuid.UUID(item["id"]))
        assert task is not None
        if task.state == "queued":
            assert bucket_keys(aws, task.object_key) == [task.object_key]
    drain_queue(aws)
