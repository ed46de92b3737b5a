"""The `transcribe` provider against botocore's Stubber (real request shapes), S3 on moto."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import IO, Any

import pytest
from aipp.core.config import Settings
from aipp.core.storage import Storage
from aipp.worker.errors import ProviderError
from aipp.worker.providers.base import AudioInput
from aipp.worker.providers.transcribe import TranscribeTranscriber
from botocore.stub import Stubber

from aipp_contract.keys import transcribe_output_key
from tests.runtime.conftest import ON_SESSION_LOOP, AwsNames

from .stubs import stubbed_client

pytestmark = ON_SESSION_LOOP


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    with stubbed_client("transcribe") as pair:
        yield pair


@pytest.fixture
def storage(aws: AwsNames) -> Storage:
    return Storage(Settings(audio_bucket=aws.bucket, aws_endpoint_url=aws.endpoint))


def audio(bucket: str, language: str | None = None) -> AudioInput:
    async def download(file: IO[bytes]) -> None:
        raise AssertionError("Transcribe reads the object from S3 itself")

    tenant, task = uuid.uuid4(), uuid.uuid4()
    return AudioInput(
        task_id=task,
        tenant_id=tenant,
        bucket=bucket,
        key=f"uploads/{tenant}/{task}/call.mp3",
        content_type="audio/mpeg",
        language=language,
        download=download,
    )


def start_params(a: AudioInput, **language: Any) -> dict[str, Any]:
    return {
        "TranscriptionJobName": f"aipp-{a.task_id}",
        "Media": {"MediaFileUri": f"s3://{a.bucket}/{a.key}"},
        "MediaFormat": "mp3",
        "OutputBucketName": a.bucket,
        "OutputKey": transcribe_output_key(a.tenant_id, a.task_id),
        **(language or {"LanguageCode": "en-US"}),
    }


def job(a: AudioInput, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "TranscriptionJob": {
            "TranscriptionJobName": f"aipp-{a.task_id}",
            "TranscriptionJobStatus": status,
            **extra,
        }
    }


async def put_output(storage: Storage, a: AudioInput, text: str) -> None:
    document = {"jobName": f"aipp-{a.task_id}", "results": {"transcripts": [{"transcript": text}]}}
    await storage.put(
        transcribe_output_key(a.tenant_id, a.task_id),
        json.dumps(document).encode(),
        "application/json",
    )


async def test_starts_a_job_on_the_object_and_polls_with_growing_waits(
    stubbed: tuple[Any, Stubber], storage: Storage, aws: AwsNames
) -> None:
    client, stub = stubbed
    a = audio(aws.bucket)
    stub.add_response("start_transcription_job", job(a, "QUEUED"), start_params(a))
    for status in ("QUEUED", "IN_PROGRESS", "IN_PROGRESS"):
        stub.add_response(
            "get_transcription_job", job(a, status), {"TranscriptionJobName": f"aipp-{a.task_id}"}
        )
    stub.add_response(
        "get_transcription_job",
        job(a, "COMPLETED", LanguageCode="en-US"),
        {"TranscriptionJobName": f"aipp-{a.task_id}"},
    )
    await put_output(storage, a, "Hello from Transcribe.")
    sleeps = Sleeps()
    result = await TranscribeTranscriber(client, storage, sleep=sleeps).transcribe(a)
    assert result.text == "Hello from Transcribe."
    assert result.language == "en-US"
    assert len(sleeps.calls) == 3 and all(s > 0 for s in sleeps.calls)
    assert sleeps.calls[0] < sleeps.calls[1] < sleeps.calls[2]  # backoff, not a busy loop


async def test_limit_exceeded_backs_off_instead_of_failing(
    stubbed: tuple[Any, Stubber], storage: Storage, aws: AwsNames
) -> None:
    client, stub = stubbed
    a = audio(aws.bucket, language="auto")
    params = start_params(a, IdentifyLanguage=True)
    for _ in range(3):
        stub.add_client_error(
            "start_transcription_job",
            service_error_code="LimitExceededException",
            service_message="You have reached the limit of concurrent jobs.",
            http_status_code=400,
            expected_params=params,
        )
    stub.add_response("start_transcription_job", job(a, "IN_PROGRESS"), params)
    stub.add_response(
        "get_transcription_job",
        job(a, "COMPLETED", LanguageCode="de-DE"),
        {"TranscriptionJobName": f"aipp-{a.task_id}"},
    )
    await put_output(storage, a, "Guten Tag.")
    sleeps = Sleeps()
    result = await TranscribeTranscriber(client, storage, sleep=sleeps).transcribe(a)
    assert result.text == "Guten Tag." and result.language == "de-DE"
    assert len(sleeps.calls) == 3 and sleeps.calls[0] < sleeps.calls[2]


async def test_a_redelivered_message_waits_for_the_job_it_already_started(
    stubbed: tuple[Any, Stubber], storage: Storage, aws: AwsNames
) -> None:
    client, stub = stubbed
    a = audio(aws.bucket, language="fr-FR")
    stub.add_client_error(
        "start_transcription_job",
        service_error_code="ConflictException",
        service_message="The requested job name already exists.",
        http_status_code=400,
        expected_params=start_params(a, LanguageCode="fr-FR"),
    )
    stub.add_response(
        "get_transcription_job", job(a, "COMPLETED"), {"TranscriptionJobName": f"aipp-{a.task_id}"}
    )
    await put_output(storage, a, "Bonjour.")
    result = await TranscribeTranscriber(client, storage, sleep=Sleeps()).transcribe(a)
    assert result.text == "Bonjour."


async def test_a_failed_job_fails_the_task_with_transcribes_reason(
    stubbed: tuple[Any, Stubber], storage: Storage, aws: AwsNames
) -> None:
    client, stub = stubbed
    a = audio(aws.bucket)
    name = {"TranscriptionJobName": f"aipp-{a.task_id}"}
    stub.add_response("start_transcription_job", job(a, "IN_PROGRESS"), start_params(a))
    stub.add_response(
        "get_transcription_job",
        job(a, "FAILED", FailureReason="The media format provided does not match."),
        name,
    )
    stub.add_response("delete_transcription_job", {}, name)
    with pytest.raises(ProviderError) as failure:
        await TranscribeTranscriber(client, storage, sleep=Sleeps()).transcribe(a)
    assert not failure.value.retryable
    # The service's own words are logged (detail); the tenant reads our message.
    assert failure.value.detail == "The media format provided does not match."
    assert failure.value.message == "the speech service could not transcribe the audio"


async def test_access_denied_is_a_permanent_failure(
    stubbed: tuple[Any, Stubber], storage: Storage, aws: AwsNames
) -> None:
    client, stub = stubbed
    a = audio(aws.bucket)
    stub.add_client_error(
        "start_transcription_job",
        service_error_code="AccessDeniedException",
        service_message="not allowed",
        http_status_code=403,
    )
    with pytest.raises(ProviderError) as failure:
        await TranscribeTranscriber(client, storage, sleep=Sleeps()).transcribe(a)
    assert not failure.value.retryable and "AccessDeniedException" in failure.value.message
