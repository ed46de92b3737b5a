"""The upload Lambda on real PostgreSQL, with S3 and SQS on moto's server."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import pytest_asyncio
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import TaskState
from upload_handler import handler as upload

from ..conftest import (
    ON_SESSION_LOOP,
    AwsNames,
    aws_client,
    bucket_keys,
    drain_queue,
    new_key,
    wav_bytes,
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def runtime(settings: Settings) -> AsyncIterator[upload.Runtime]:
    rt = await upload.build_runtime(settings)
    yield rt
    await rt.db.close()


def eventbridge(bucket: str, key: str, size: int) -> dict[str, Any]:
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": size}},
    }


async def _uploaded(
    client: httpx.AsyncClient, db: Database, body: bytes, declared: int | None = None
) -> tuple[uuid.UUID, str]:
    """Create a task through the API and PUT `body` to its presigned URL, as a client would."""
    auth = await new_key(db)
    created = await client.post(
        "/v1/tasks",
        json={
            "filename": "my talk.wav",
            "content_type": "audio/wav",
            "size_bytes": declared or len(body),
        },
        headers=auth,
    )
    upload_info = created.json()["upload"]
    async with httpx.AsyncClient() as s3:
        put = await s3.put(upload_info["url"], content=body, headers=upload_info["headers"])
        assert put.status_code == 200, put.text
    task = await db.get_task(uuid.UUID(created.json()["id"]))
    assert task is not None
    return task.id, task.object_key


@ON_SESSION_LOOP
async def test_valid_upload_is_queued_once_even_when_the_event_comes_twice(
    runtime: upload.Runtime, client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    drain_queue(aws)
    body = wav_bytes(4000)
    task_id, key = await _uploaded(client, db, body)
    event = eventbridge(aws.bucket, key, len(body))
    first = await upload.process_event(runtime, event)
    assert first == {"objects": [{"key": key, "outcome": "queued"}]}
    second = await upload.process_event(runtime, event)
    assert second == {"objects": [{"key": key, "outcome": "duplicate"}]}
    task = await db.get_task(task_id)
    assert task is not None
    assert task.state is TaskState.QUEUED
    messages = drain_queue(aws)
    assert len(messages) == 1
    assert messages[0]["MessageAttributes"]["task_type"]["StringValue"] == "stt"
    assert json.loads(messages[0]["Body"])["task_id"] == str(task_id)


@ON_SESSION_LOOP
async def test_classic_s3_notification_with_encoded_key(
    runtime: upload.Runtime, client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    body = wav_bytes(1000)
    _, key = await _uploaded(client, db, body)
    record = {"s3": {"bucket": {"name": aws.bucket}, "object": {"key": key.replace(" ", "+")}}}
    result = await upload.process_event(runtime, {"Records": [record]})
    assert result["objects"][0]["outcome"] == "queued"
    assert len(drain_queue(aws)) == 1


@ON_SESSION_LOOP
async def test_queue_batch_reports_only_the_event_that_failed(
    runtime: upload.Runtime,
    client: httpx.AsyncClient,
    db: Database,
    aws: AwsNames,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In AWS the events arrive in SQS batches: one failing event must not fail its batch
    (its neighbours would be checked again) nor be dropped (it is retried, then kept)."""
    drain_queue(aws)
    good_body, bad_body = wav_bytes(1200), wav_bytes(1300)
    good_id, good_key = await _uploaded(client, db, good_body)
    bad_id, bad_key = await _uploaded(client, db, bad_body)
    real_read = runtime.storage.read_head

    async def flaky_read(key: str, size: int, version: str | None = None) -> Any:
        if key == bad_key:
            raise ConnectionError("S3 unreachable")
        return await real_read(key, size, version)

    monkeypatch.setattr(runtime.storage, "read_head", flaky_read)
    records = [
        {
            "messageId": f"m{i}",
            "eventSource": "aws:sqs",
            "body": json.dumps(eventbridge(aws.bucket, key, len(body))),
        }
        for i, (key, body) in enumerate([(good_key, good_body), (bad_key, bad_body)])
    ]
    result = await upload.process_event(runtime, {"Records": records})
    assert result["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    assert result["objects"] == [{"key": good_key, "outcome": "queued"}]
    good, bad = await db.get_task(good_id), await db.get_task(bad_id)
    assert good is not None and good.state is TaskState.QUEUED
    assert bad is not None and bad.state is TaskState.AWAITING_UPLOAD  # retried, not lost
    assert bad_key in bucket_keys(aws, bad_key)
    assert len(drain_queue(aws)) == 1

    monkeypatch.setattr(runtime.storage, "read_head", real_read)  # S3 is back: the retry
    retried = await upload.process_event(runtime, {"Records": records[1:]})
    assert retried == {"objects": [{"key": bad_key, "outcome": "queued"}], "batchItemFailures": []}
    assert len(drain_queue(aws)) == 1


@pytest.mark.parametrize(
    "case",
    [
        (b"%PDF-1.7\n" + bytes(200), None, "not_audio"),
        (b"\x1a\x45\xdf\xa3" + bytes(200), None, "not_audio"),  # webm: not allowed here
        (wav_bytes(600), 500, "size_mismatch"),
    ],
    ids=["pdf", "type not allowed", "size differs from declared"],
)
@ON_SESSION_LOOP
async def test_bad_upload_fails_the_task_and_removes_the_object(
    runtime: upload.Runtime,
    client: httpx.AsyncClient,
    db: Database,
    aws: AwsNames,
    case: tuple[bytes, int | None, str],
) -> None:
    body, declared, code = case
    auth, task_id, key = await _uploaded_raw(client, db, aws, body, declared)
    result = await upload.process_event(runtime, eventbridge(aws.bucket, key, len(body)))
    assert result["objects"][0]["outcome"] == f"rejected:{code}"
    task = await db.get_task(task_id)
    assert task is not None
    assert (task.state, task.error_code) == (TaskState.FAILED, code)
    assert key not in bucket_keys(aws, key)
    assert drain_queue(aws) == []
    visible = await client.get(f"/v1/tasks/{task_id}", headers=auth)
    assert visible.json()["error"]["code"] == code


@ON_SESSION_LOOP
async def test_oversized_object_is_rejected(
    settings: Settings, client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    small = await upload.build_runtime(settings.model_copy(update={"max_upload_bytes": 100}))
    try:
        body = wav_bytes(400)
        _, key = await _uploaded(client, db, body)
        result = await upload.process_event(small, eventbridge(aws.bucket, key, len(body)))
        assert result["objects"][0]["outcome"] == "rejected:file_too_large"
    finally:
        await small.db.close()


@ON_SESSION_LOOP
async def test_objects_without_a_task_are_removed_and_others_ignored(
    runtime: upload.Runtime, aws: AwsNames
) -> None:
    stray = f"uploads/{uuid.uuid4()}/{uuid.uuid4()}/x.wav"
    aws_client(aws.endpoint, "s3").put_object(Bucket=aws.bucket, Key=stray, Body=wav_bytes())
    event = {
        "Records": [
            {"s3": {"bucket": {"name": aws.bucket}, "object": {"key": stray}}},
            {"s3": {"bucket": {"name": aws.bucket}, "object": {"key": "transcripts/a.json"}}},
            {"s3": {"bucket": {"name": "another-bucket"}, "object": {"key": stray}}},
        ]
    }
    outcomes = [o["outcome"] for o in (await upload.process_event(runtime, event))["objects"]]
    assert outcomes == ["ignored:no-task", "ignored:not-an-upload", "ignored:other-bucket"]
    assert bucket_keys(aws, stray) == []
    assert await upload.process_event(runtime, {"detail-type": "Object Created"}) == {"objects": []}


async def _uploaded_raw(
    client: httpx.AsyncClient, db: Database, aws: AwsNames, body: bytes, declared: int | None
) -> tuple[dict[str, str], uuid.UUID, str]:
    """Like a client that lies: the object is written straight to S3, whatever it is."""
    auth = await new_key(db)
    created = await client.post(
        "/v1/tasks",
        json={
            "filename": "a.wav",
            "content_type": "audio/wav",
            "size_bytes": declared or len(body),
        },
        headers=auth,
    )
    task = await db.get_task(uuid.UUID(created.json()["id"]))
    assert task is not None
    aws_client(aws.endpoint, "s3").put_object(Bucket=aws.bucket, Key=task.object_key, Body=body)
    return auth, task.id, task.object_key


def test_lambda_entrypoint_reads_the_environment_at_cold_start(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, aws: AwsNames
) -> None:
    for name, value in {
        "AIPP_DATABASE_URL": settings.database_dsn(),
        "AIPP_REDIS_URL": settings.redis_dsn(),
        "AIPP_AUDIO_BUCKET": aws.bucket,
        "AIPP_STT_QUEUE_URL": aws.queue_url,
        "AIPP_LLM_QUEUE_URL": aws.queue_url,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(upload, "_RUNTIME", None)
    stray = f"uploads/{uuid.uuid4()}/{uuid.uuid4()}/x.wav"
    try:
        result = upload.handler(eventbridge(aws.bucket, stray, 10), None)
        assert result == {"objects": [{"key": stray, "outcome": "ignored:no-task"}]}
        assert upload._RUNTIME is not None
        assert upload._RUNTIME.settings.audio_bucket == aws.bucket
    finally:
        if upload._RUNTIME is not None:
            upload._LOOP.run_until_complete(upload._RUNTIME.db.close())


@pytest.fixture(scope="module", autouse=True)
def versioned(aws: AwsNames) -> None:
    """The audio bucket is versioned in AWS (cdk_constructs/audio_bucket.py)."""
    aws_client(aws.endpoint, "s3").put_bucket_versioning(
        Bucket=aws.bucket, VersioningConfiguration={"Status": "Enabled"}
    )


async def _named_upload(
    client: httpx.AsyncClient, db: Database, filename: str, body: bytes
) -> tuple[uuid.UUID, str]:
    auth = await new_key(db)
    created = await client.post(
        "/v1/tasks",
        json={"filename": filename, "content_type": "audio/wav", "size_bytes": len(body)},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    info = created.json()["upload"]
    async with httpx.AsyncClient() as s3:
        assert (await s3.put(info["url"], content=body, headers=info["headers"])).status_code == 200
    task = await db.get_task(uuid.UUID(created.json()["id"]))
    assert task is not None
    return task.id, task.object_key


ENCODINGS = {
    "eventbridge as stored": lambda bucket, key: eventbridge(bucket, key, 0),
    "eventbridge percent-encoded": lambda bucket, key: eventbridge(bucket, quote(key), 0),
    "eventbridge form-encoded": lambda bucket, key: eventbridge(bucket, quote_plus(key), 0),
    "classic notification": lambda bucket, key: {
        "Records": [{"s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}}}]
    },
}


@pytest.mark.parametrize(
    "filename", ["my talk+notes.wav", "réunion d'équipe 1+1=2 %41.wav", "会議 メモ.wav"]
)
@pytest.mark.parametrize("shape", list(ENCODINGS))
@ON_SESSION_LOOP
async def test_keys_with_spaces_plus_and_non_ascii_in_every_event_shape(
    *,
    runtime: upload.Runtime,
    client: httpx.AsyncClient,
    db: Database,
    aws: AwsNames,
    filename: str,
    shape: str,
) -> None:
    drain_queue(aws)
    body = wav_bytes(1500)
    _, key = await _named_upload(client, db, filename, body)
    event = ENCODINGS[shape](aws.bucket, key)
    assert await upload.process_event(runtime, event) == {
        "objects": [{"key": key, "outcome": "queued"}]
    }
    assert (await upload.process_event(runtime, event))["objects"][0]["outcome"] == "duplicate"
    messages = drain_queue(aws)
    assert [json.loads(m["Body"])["object_key"] for m in messages] == [key]
    stored = aws_client(aws.endpoint, "s3").get_object(Bucket=aws.bucket, Key=key)["Body"].read()
    assert stored == body


@ON_SESSION_LOOP
async def test_a_put_over_an_accepted_upload_is_removed_and_the_accepted_version_read(
    runtime: upload.Runtime, client: httpx.AsyncClient, db: Database, aws: AwsNames
) -> None:
    accepted, swapped = wav_bytes(2000), b"RIFF" + bytes(4) + b"WAVEfmt " + b"\x07" * 1988
    task_id, key = await _named_upload(client, db, "a.wav", accepted)
    assert await upload.process_object(runtime, aws.bucket, key) == "queued"
    task = await db.get_task(task_id)
    assert task is not None and task.object_version
    message = json.loads(drain_queue(aws)[0]["Body"])
    assert message["object_version"] == task.object_version
    s3 = aws_client(aws.endpoint, "s3")
    put = s3.put_object(Bucket=aws.bucket, Key=key, Body=swapped)  # the URL is still valid
    # The worker reads the accepted version whatever is current.
    read = io.BytesIO()
    assert await runtime.storage.download(key, read, task.object_version)
    assert read.getvalue() == accepted
    # And the PUT's own event removes it, which makes the accepted audio current again.
    event = eventbridge(aws.bucket, key, len(swapped))
    event["detail"]["object"]["version-id"] = put["VersionId"]
    outcome = (await upload.process_event(runtime, event))["objects"][0]["outcome"]
    assert outcome == "ignored:replaced-upload-removed"
    assert s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read() == accepted
    versions = s3.list_object_versions(Bucket=aws.bucket, Prefix=key).get("Versions", [])
    assert [v["VersionId"] for v in versions] == [task.object_version]
    assert drain_queue(aws) == []
