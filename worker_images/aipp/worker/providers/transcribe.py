"""AWS Transcribe batch jobs on the uploaded S3 object.

The job name is `aipp-<task id>` (`aipp_contract.keys`): IAM allows only
`transcription-job/aipp-*`, and a redelivered
message finds its job already started (ConflictException) and waits for it instead of paying
twice. Waiting is backoff polling (2 s doubling to 30 s, with jitter), never a busy loop. Account
limits (100 concurrent jobs by default, 10 TPS to start) answer LimitExceededException or
ThrottlingException: the worker backs off and tries again rather than failing the task.
The transcript JSON is written to our bucket under `transcripts/` (the worker may read there).

Transcribe reads the object's current version (its MediaFileUri takes no version), so the job is
started only while the current version is the one the upload check accepted; a PUT over it is
removed by the upload check, after which the job starts. A task deleted while its job runs: the
job cannot be stopped, so `discard` waits for it to end and then removes its output and the job.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aipp.core.storage import Storage
from aipp.worker.errors import JobError, ProviderError, ProviderUnavailable
from aipp.worker.providers.base import AudioInput, Transcript, seconds_or_none
from aipp_contract.keys import transcribe_job_name, transcribe_output_key

if TYPE_CHECKING:
    from mypy_boto3_transcribe import TranscribeServiceClient

Sleep = Callable[[float], Awaitable[None]]

MEDIA_FORMATS = {
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/mp4": "mp4",
    "audio/flac": "flac",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
}
BUSY = {"LimitExceededException", "ThrottlingException", "TooManyRequestsException"}
UNAVAILABLE = {"InternalFailureException", "ServiceUnavailableException"}
POLL_FIRST, POLL_MAX = 2.0, 30.0
START_FIRST, START_MAX = 5.0, 60.0


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class TranscribeTranscriber:
    name = "transcribe"

    def __init__(
        self,
        client: TranscribeServiceClient,
        storage: Storage,
        *,
        language: str = "en-US",
        max_wait_seconds: float = 4 * 3600.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.storage = storage
        self.language = language
        self.max_wait = max_wait_seconds
        self.sleep = sleep

    async def _backoff(self, delay: float, cap: float) -> float:
        await self.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not crypto
        return min(cap, delay * 2)

    def _request(self, audio: AudioInput) -> dict[str, Any]:
        media_format = MEDIA_FORMATS.get(audio.content_type)
        if media_format is None:
            raise ProviderError(
                "unsupported_audio",
                f"Transcribe does not take {audio.content_type}",
                retryable=False,
            )
        request: dict[str, Any] = {
            "TranscriptionJobName": transcribe_job_name(audio.task_id),
            "Media": {"MediaFileUri": f"s3://{audio.bucket}/{audio.key}"},
            "MediaFormat": media_format,
            "OutputBucketName": audio.bucket,
            "OutputKey": transcribe_output_key(audio.tenant_id, audio.task_id),
        }
        language = audio.language or self.language
        if language.lower() == "auto":
            request["IdentifyLanguage"] = True
        else:
            request["LanguageCode"] = language
        return request

    async def _start(self, request: dict[str, Any], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        delay = START_FIRST
        while True:
            try:
                await asyncio.to_thread(self.client.start_transcription_job, **request)
                return
            except ClientError as exc:
                code = _code(exc)
                if code == "ConflictException":
                    return  # already started by an earlier delivery of this message
                if code in BUSY and loop.time() < deadline:
                    delay = await self._backoff(delay, START_MAX)
                    continue
                message = exc.response.get("Error", {}).get("Message", "")
                if code in BUSY or code in UNAVAILABLE:
                    raise ProviderUnavailable(
                        "transcription_busy" if code in BUSY else "transcription_failed",
                        f"the speech service is unavailable ({code})",
                        detail=message,
                    ) from None
                raise ProviderError(
                    "transcription_failed",
                    f"the speech service rejected the job ({code})",
                    retryable=False,
                    detail=message,
                ) from None

    async def _status(self, name: str, deadline: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        delay = POLL_FIRST
        while True:
            try:
                answer = await asyncio.to_thread(
                    self.client.get_transcription_job, TranscriptionJobName=name
                )
            except ClientError as exc:
                if _code(exc) not in BUSY:
                    raise
                answer = None
            if answer is not None:
                job: dict[str, Any] = dict(answer["TranscriptionJob"])
                if job.get("TranscriptionJobStatus") in {"COMPLETED", "FAILED"}:
                    return job
            if loop.time() >= deadline:
                raise ProviderError(
                    "transcription_timeout",
                    f"Transcribe job {name} did not finish in {self.max_wait:.0f} s",
                    retryable=True,
                )
            delay = await self._backoff(delay, POLL_MAX)

    async def _check_version(self, audio: AudioInput) -> None:
        if audio.version_id is None:
            return
        current = await self.storage.current_version(audio.key)
        if current is None:
            raise JobError("audio_missing", "the uploaded audio no longer exists", retryable=False)
        if current != audio.version_id:
            raise JobError(
                "audio_replaced",
                "the audio was uploaded again after it was checked; waiting for the check",
                retryable=True,
                retry_after=30,
            )

    async def discard(self, task_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
        """After the task was deleted: wait for its job to end, then remove output and job."""
        name = transcribe_job_name(task_id)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        try:
            await self._status(name, deadline)
        except ClientError as exc:
            if _code(exc) in {"BadRequestException", "NotFoundException"}:
                return  # never started
            raise
        await self.storage.delete_prefix(transcribe_output_key(tenant_id, task_id))
        await asyncio.to_thread(self.client.delete_transcription_job, TranscriptionJobName=name)

    async def transcribe(self, audio: AudioInput) -> Transcript:
        deadline = asyncio.get_running_loop().time() + self.max_wait
        request = self._request(audio)
        await self._check_version(audio)
        name = request["TranscriptionJobName"]
        await self._start(request, deadline)
        job = await self._status(name, deadline)
        if job["TranscriptionJobStatus"] == "FAILED":
            # Clear the failed job so that a later attempt (if any) can start it afresh.
            await asyncio.to_thread(self.client.delete_transcription_job, TranscriptionJobName=name)
            raise ProviderError(
                "transcription_failed",
                "the speech service could not transcribe the audio",
                retryable=False,
                detail=str(job.get("FailureReason", "the job failed")),
            )
        document = await self.storage.get_json(request["OutputKey"])
        try:
            text = " ".join(t["transcript"] for t in document["results"]["transcripts"])
        except (KeyError, TypeError):
            raise ProviderError(
                "transcription_failed", "Transcribe's output has no transcript", retryable=True
            ) from None
        ends = [i["end_time"] for i in document["results"].get("items", []) if "end_time" in i]
        return Transcript(
            text=text.strip(),
            language=job.get("LanguageCode") or request.get("LanguageCode"),
            details={"job": name},
            # the end of the last recognised word: the length minus any trailing silence
            duration_seconds=seconds_or_none(ends[-1]) if ends else None,
        )
