"""Bad input gets a clear 4xx JSON error and leaves nothing half-written behind."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aipp.core.db import Database

from ...conftest import ON_SESSION_LOOP, AwsNames, bucket_keys, drain_queue, new_key, wav_bytes

pytestmark = ON_SESSION_LOOP

MAX = 1024 * 1024  # max_upload_bytes in the test settings
GOOD = {"filename": "a.mp3", "content_type": "audio/mpeg", "size_bytes": 100}


@dataclass
class Case:
    name: str
    status: int
    code: str
    method: str = "POST"
    path: str = "/v1/tasks"
    kwargs: dict[str, Any] = field(default_factory=dict)


def _multipart(name: str, body: bytes, ctype: str = "audio/wav", **extra: Any) -> dict[str, Any]:
    return {"files": {"file": (name, body, ctype)}, **extra}


def _raw_multipart(filename: bytes) -> dict[str, Any]:
    """A hand-made multipart body, so the filename reaches the server byte for byte."""
    body = (
        b'--zz\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: audio/wav\r\n\r\n'
        + wav_bytes()
        + b"\r\n--zz--\r\n"
    )
    return _raw(body, "multipart/form-data; boundary=zz")


def _raw(body: bytes, ctype: str | None) -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": ctype} if ctype else {}}


CASES = [
    Case("text/plain body", 415, "unsupported_media_type", kwargs=_raw(b"hello", "text/plain")),
    Case("no content type", 415, "unsupported_media_type", kwargs=_raw(b"{}", None)),
    Case("malformed JSON", 400, "malformed_json", kwargs=_raw(b'{"filename": ', "application/json")),
    Case("JSON array", 422, "validation_error", kwargs=_raw(b"[1, 2]", "application/json")),
    Case("unknown field", 422, "unknown_field", kwargs={"json": {**GOOD, "owner": "x"}}),
    Case("missing filename", 422, "validation_error", kwargs={"json": {"content_type": "audio/mpeg", "size_bytes": 1}}),
    Case("declared size too big", 413, "file_too_large", kwargs={"json": {**GOOD, "size_bytes": MAX + 1}}),
    Case("declared size zero", 422, "validation_error", kwargs={"json": {**GOOD, "size_bytes": 0}}),
    Case("size not a number", 422, "validation_error", kwargs={"json": {**GOOD, "size_bytes": "big"}}),
    Case("video content type", 415, "unsupported_content_type", kwargs={"json": {**GOOD, "content_type": "video/mp4"}}),
    Case("path in filename", 422, "invalid_filename", kwargs={"json": {**GOOD, "filename": "../x.mp3"}}),
    Case("backslash in filename", 422, "invalid_filename", kwargs={"json": {**GOOD, "filename": "a\\b.mp3"}}),
    Case("control char in filename", 422, "invalid_filename", kwargs={"json": {**GOOD, "filename": "a\x07.mp3"}}),
    Case("bad language", 422, "validation_error", kwargs={"json": {**GOOD, "language": "english!"}}),
    Case("empty file", 400, "empty_file", kwargs=_multipart("a.wav", b"")),
    Case("oversized file", 413, "file_too_large", kwargs=_multipart("a.wav", wav_bytes(MAX + 1))),
    Case("body over the hard limit", 413, "payload_too_large", kwargs=_multipart("a.wav", wav_bytes(MAX + 100_000))),
    Case("not audio", 415, "not_audio", kwargs=_multipart("a.wav", b"%PDF-1.7\n" + bytes(500))),
    Case("audio type not allowed", 415, "unsupported_content_type", kwargs=_multipart("a.wav", b"\x1a\x45\xdf\xa3" + bytes(60))),
    Case("path in upload filename", 422, "invalid_filename", kwargs=_raw_multipart(b"..\\evil.wav")),
    Case("slash in upload filename", 422, "invalid_filename", kwargs=_raw_multipart(b"up/evil.wav")),
    Case("control char in upload filename", 422, "invalid_filename", kwargs=_raw_multipart(b"e\x01vil.wav")),
    Case("unknown form field", 422, "unknown_field", kwargs=_multipart("a.wav", wav_bytes(), data={"owner": "x"})),
    Case("form without file", 422, "validation_error", kwargs={"data": {"file": "not a file"}, "files": {"language": (None, b"en")}}),
    Case("broken multipart", 422, "validation_error", kwargs=_raw(b"--zz\r\ngarbage", "multipart/form-data; boundary=zz")),
    Case("idempotency key too long", 422, "validation_error", kwargs={"json": GOOD, "headers": {"Idempotency-Key": "k" * 300}}),
    Case("huge header", 431, "header_too_large", kwargs={"json": GOOD, "headers": {"X-Junk": "j" * 10_000}}),
    Case("bad UUID", 422, "validation_error", method="GET", path="/v1/tasks/not-a-uuid"),
    Case("bad UUID on delete", 422, "validation_error", method="DELETE", path="/v1/tasks/1234"),
    Case("unknown task", 404, "task_not_found", method="GET", path=f"/v1/tasks/{uuid.uuid4()}"),
    Case("bad cursor", 400, "invalid_cursor", method="GET", path="/v1/tasks?cursor=%%%"),
    Case("limit zero", 422, "validation_error", method="GET", path="/v1/tasks?limit=0"),
    Case("unknown state", 422, "validation_error", method="GET", path="/v1/tasks?state=done"),
    Case("unknown route", 404, "not_found", method="GET", path="/v1/nothing"),
    Case("wrong method", 405, "method_not_allowed", method="PUT", path="/v1/tasks"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input(
    case: Case, client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    auth = await new_key(db)
    kwargs = dict(case.kwargs)
    kwargs["headers"] = {**auth, **kwargs.get("headers", {})}
    response = await client.request(case.method, case.path, **kwargs)
    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert error["code"] == case.code
    assert isinstance(error["message"], str) and error["message"]
    # Nothing half-written: no row, no object, no message.
    principal = await db.principal_for_key(auth["Authorization"].removeprefix("Bearer "))
    assert principal is not None
    rows = await db.pool.fetchval(
        "SELECT count(*) FROM tasks WHERE tenant_id = $1", principal.tenant_id
    )
    assert rows == 0
    assert bucket_keys(aws, f"uploads/{principal.tenant_id}/") == []
    assert [m for m in drain_queue(aws) if str(principal.tenant_id) in m["Body"]] == []
