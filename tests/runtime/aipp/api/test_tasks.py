"""The task API end to end: real PostgreSQL and Redis, S3 and SQS on moto's server."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
from aipp.api.services import Services
from aipp.core.db import Database
from aipp.core.models import TaskState

from aipp_contract.keys import transcript_key

from ...conftest import (
    ON_SESSION_LOOP,
    AwsNames,
    bucket_keys,
    drain_queue,
    new_key,
    wav_bytes,
)

pytestmark = ON_SESSION_LOOP

UPLOAD = {"filename": "call.mp3", "content_type": "audio/mpeg", "size_bytes": 4096}


async def test_json_create_returns_a_presigned_put_bound_to_type_and_size(
    client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    auth = await new_key(db)
    response = await client.post("/v1/tasks", json={**UPLOAD, "language": "en-US"}, headers=auth)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "awaiting_upload"
    assert set(body) == {"id", "state", "created_at", "updated_at", "upload"}
    upload = body["upload"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "audio/mpeg", "Content-Length": "4096"}
    url = urlsplit(upload["url"])
    assert url.path.startswith(f"/{aws.bucket}/uploads/")
    assert url.path.endswith(f"/{body['id']}/call.mp3")
    signed = parse_qs(url.query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-type", "content-length"} <= set(signed)
    assert response.headers["location"] == f"/v1/tasks/{body['id']}"
    assert drain_queue(aws) == []  # nothing is queued before the upload


async def test_multipart_create_stores_the_object_and_queues_at_once(
    client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    auth = await new_key(db)
    audio = wav_bytes(3000)
    response = await client.post(
        "/v1/tasks",
        files={"file": ("memo.wav", audio, "audio/wav")},
        data={"language": "de"},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "queued"
    assert "upload" not in body
    task = await db.get_task(uuid.UUID(body["id"]))
    assert task is not None
    assert (task.size_bytes, task.content_type, task.language) == (3000, "audio/wav", "de")
    assert bucket_keys(aws, f"uploads/{task.tenant_id}/{task.id}/") == [task.object_key]
    messages = drain_queue(aws)
    assert len(messages) == 1
    assert messages[0]["MessageAttributes"]["task_type"]["StringValue"] == "stt"
    sent = json.loads(messages[0]["Body"])
    assert sent["task_id"] == body["id"]
    assert sent["tenant_id"] == str(task.tenant_id)
    assert sent["object_key"] == task.object_key


async def test_get_list_and_pagination(client: httpx.AsyncClient, db: Database) -> None:
    auth = await new_key(db)
    ids = []
    for _ in range(5):
        r = await client.post("/v1/tasks", json=UPLOAD, headers=auth)
        ids.append(r.json()["id"])
    one = await client.get(f"/v1/tasks/{ids[0]}", headers=auth)
    assert one.status_code == 200
    assert set(one.json()) == {"id", "state", "created_at", "updated_at"}

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/tasks", params=params, headers=auth)).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first, each exactly once

    failed_id = uuid.UUID(ids[1])
    await db.transition(
        failed_id,
        TaskState.AWAITING_UPLOAD,
        TaskState.FAILED,
        error_code="not_audio",
        error_message="the uploaded file is not audio",
    )
    only_failed = (await client.get("/v1/tasks?state=failed", headers=auth)).json()
    assert [i["id"] for i in only_failed["items"]] == [str(failed_id)]
    assert only_failed["items"][0]["error"] == {
        "code": "not_audio",
        "message": "the uploaded file is not audio",
    }


async def test_result_is_409_until_completed_then_served_and_cached(
    client: httpx.AsyncClient, db: Database, aws: AwsNames, api: tuple[object, object]
) -> None:
    auth = await new_key(db)
    created = await client.post(
        "/v1/tasks", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, headers=auth
    )
    task_id = uuid.UUID(created.json()["id"])
    drain_queue(aws)
    early = await client.get(f"/v1/tasks/{task_id}/result", headers=auth)
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "task_not_completed"

    # What the workers do (issue 4): transcript to S3, summary to the DB, state changes.
    task = await db.get_task(task_id)
    assert task is not None
    services: Services = api[0].state.services  # type: ignore[attr-defined]
    key = transcript_key(task.tenant_id, task.id)
    await services.storage.put_json(key, {"text": "hello world"})
    await db.transition(task_id, TaskState.QUEUED, TaskState.TRANSCRIBING)
    await db.transition(task_id, TaskState.TRANSCRIBING, TaskState.SUMMARIZING, transcript_key=key)
    await db.transition(task_id, TaskState.SUMMARIZING, TaskState.COMPLETED, summary="a greeting")

    result = await client.get(f"/v1/tasks/{task_id}/result", headers=auth)
    assert result.status_code == 200
    assert result.json() == {
        "id": str(task_id),
        "transcript": "hello world",
        "summary": "a greeting",
    }
    # Served from Redis from now on, even if S3 and the DB row change underneath.
    await services.storage.delete([key])
    again = await client.get(f"/v1/tasks/{task_id}/result", headers=auth)
    assert again.json()["transcript"] == "hello world"


async def test_delete_removes_objects_row_and_cache(
    client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    auth = await new_key(db)
    created = await client.post(
        "/v1/tasks", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, headers=auth
    )
    task_id = created.json()["id"]
    task = await db.get_task(uuid.UUID(task_id))
    assert task is not None
    assert bucket_keys(aws, f"uploads/{task.tenant_id}/{task_id}/")
    gone = await client.delete(f"/v1/tasks/{task_id}", headers=auth)
    assert gone.status_code == 204
    assert bucket_keys(aws, f"uploads/{task.tenant_id}/{task_id}/") == []
    assert await db.get_task(uuid.UUID(task_id)) is None
    assert (await client.get(f"/v1/tasks/{task_id}", headers=auth)).status_code == 404
    assert (await client.delete(f"/v1/tasks/{task_id}", headers=auth)).status_code == 404
    drain_queue(aws)


async def test_a_tenant_never_sees_another_tenants_task(
    client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    alice, bob = await new_key(db), await new_key(db)
    created = await client.post(
        "/v1/tasks", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, headers=alice
    )
    task_id = created.json()["id"]
    for method, path in [
        ("GET", f"/v1/tasks/{task_id}"),
        ("GET", f"/v1/tasks/{task_id}/result"),
        ("DELETE", f"/v1/tasks/{task_id}"),
    ]:
        response = await client.request(method, path, headers=bob)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "task_not_found"
    assert (await client.get("/v1/tasks", headers=bob)).json()["items"] == []
    assert (await client.get(f"/v1/tasks/{task_id}", headers=alice)).status_code == 200
    drain_queue(aws)


async def test_keys_work_in_either_header_and_bad_keys_are_401(
    client: httpx.AsyncClient, db: Database
) -> None:
    auth = await new_key(db)
    key = auth["Authorization"].removeprefix("Bearer ")
    assert (await client.get("/v1/tasks", headers={"X-API-Key": key})).status_code == 200
    for headers in [{}, {"X-API-Key": key + "x"}, {"Authorization": f"Basic {key}"}]:
        response = await client.get("/v1/tasks", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_idempotency_key_replays_and_rejects_a_different_body(
    client: httpx.AsyncClient, db: Database
) -> None:
    auth = {**(await new_key(db)), "Idempotency-Key": "order-42"}
    first = await client.post("/v1/tasks", json=UPLOAD, headers=auth)
    second = await client.post("/v1/tasks", json=UPLOAD, headers=auth)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    other = await client.post("/v1/tasks", json={**UPLOAD, "size_bytes": 1}, headers=auth)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_twenty_concurrent_identical_posts_make_exactly_one_task(
    client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    auth = {**(await new_key(db)), "Idempotency-Key": str(uuid.uuid4())}
    audio = wav_bytes(5000)
    responses = await asyncio.gather(
        *(
            client.post("/v1/tasks", files={"file": ("x.wav", audio, "audio/wav")}, headers=auth)
            for _ in range(20)
        )
    )
    assert {r.status_code for r in responses} == {201}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    listed = (await client.get("/v1/tasks", headers=auth)).json()["items"]
    assert [i["id"] for i in listed] == list(ids)
    assert len(drain_queue(aws)) == 1
