"""`make dev` takes presigned uploads too: the local S3-events bridge, alone and in dev-api.sh."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from aipp.core.aws import s3_client
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.dev.s3_events import Bridge
from upload_handler.handler import objects_in

from tests.runtime.conftest import ON_SESSION_LOOP, AwsNames, aws_client, new_key

from .conftest import SAMPLE_WAV, dev_stack, eventually

pytestmark = ON_SESSION_LOOP


async def test_the_bridge_sends_each_new_object_once_and_retries_a_failed_call(
    settings: Settings, aws: AwsNames
) -> None:
    s3 = aws_client(aws.endpoint, "s3")
    prefix = f"uploads/{uuid.uuid4()}/"
    calls: list[dict[str, Any]] = []
    failing = {"on": False}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if failing["on"]:
            raise ConnectionError("database down")
        calls.append(event)
        return {"objects": []}

    bridge = Bridge(s3_client(settings), aws.bucket, "us-east-1", handler, prefix)
    s3.put_object(Bucket=aws.bucket, Key=f"{prefix}t1/a.wav", Body=b"one")
    s3.put_object(Bucket=aws.bucket, Key=f"{prefix}t2/b c.wav", Body=b"two")
    assert bridge.poll() == 2
    assert bridge.poll() == 0  # remembered
    event = calls[0]
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    assert event["resources"] == [f"arn:aws:s3:::{aws.bucket}"]
    announced = sorted(o.readings[0] for call in calls for o in objects_in(call))
    assert announced == [f"{prefix}t1/a.wav", f"{prefix}t2/b c.wav"]  # as the handler reads them
    assert {call["detail"]["object"]["size"] for call in calls} == {3}

    s3.put_object(Bucket=aws.bucket, Key=f"{prefix}t1/a.wav", Body=b"again")  # written again
    failing["on"] = True
    assert bridge.poll() == 0
    failing["on"] = False
    assert bridge.poll() == 1  # the failed call is made again
    assert calls[-1]["detail"]["object"]["size"] == 5


async def test_make_dev_takes_a_presigned_upload_to_completed(
    settings: Settings, db: Database, aws: AwsNames, tmp_path: Path
) -> None:
    """`WITH_WORKER=1 dev-api.sh` (what `make dev` runs), on the test's moto, database and queue."""
    with dev_stack(settings, aws, tmp_path / "dev.log") as url:
        audio = SAMPLE_WAV.read_bytes()
        async with httpx.AsyncClient(base_url=url, headers=await new_key(db), timeout=30) as api:
            created = await api.post(
                "/v1/tasks",
                json={
                    "filename": "memo.wav",
                    "content_type": "audio/wav",
                    "size_bytes": len(audio),
                },
            )
            assert created.status_code == 201, created.text
            upload = created.json()["upload"]
            async with httpx.AsyncClient() as s3:
                put = await s3.put(upload["url"], content=audio, headers=upload["headers"])
                assert put.status_code == 200, put.text
            task_id = created.json()["id"]

            async def completed() -> bool:
                view = (await api.get(f"/v1/tasks/{task_id}")).json()
                assert view["state"] != "failed", view
                return bool(view["state"] == "completed")

            await eventually("the presigned upload to complete", completed, 120)
            result = (await api.get(f"/v1/tasks/{task_id}/result")).json()
        words = set(result["transcript"].split())
        assert len(words & {"sunny", "warm", "office", "tomorrow", "morning"}) >= 3, result
        assert result["summary"]
