"""The STT step records the audio length its provider measured (tasks.audio_seconds)."""

from __future__ import annotations

import json
import math
import uuid
import wave
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from aipp.core.cache import Cache, create_redis
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import TaskState, TaskType
from aipp.core.queue import Queue, TaskMessage
from aipp.core.storage import Storage
from aipp.worker.lock import TaskLocks
from aipp.worker.pipeline import Job, Outcome, Pipeline
from aipp.worker.providers.base import AudioInput, Transcript, seconds_or_none
from aipp.worker.providers.openai import OpenAITranscriber
from aipp.worker.providers.pocketsphinx import PocketSphinxTranscriber
from aipp.worker.providers.transcribe import TranscribeTranscriber

from aipp_contract.keys import transcribe_output_key
from tests.runtime.conftest import ON_SESSION_LOOP, AwsNames

from .conftest import SAMPLE_WAV, make_queues, queued_tasks
from .providers import test_openai as fake_openai
from .providers import test_transcribe as fake_transcribe
from .providers.stubs import stubbed_client

pytestmark = ON_SESSION_LOOP


class Measured:
    """A transcriber that reports a fixed length, as Whisper or Transcribe would."""

    name = "measured"

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    async def transcribe(self, audio: AudioInput) -> Transcript:
        return Transcript(text="hello", language="en-US", duration_seconds=self.seconds)


@pytest_asyncio.fixture(loop_scope="session")
async def pipeline_parts(
    settings: Settings, db: Database, aws: AwsNames
) -> AsyncIterator[tuple[Settings, Cache]]:
    queues = make_queues(aws)
    wired = settings.model_copy(update={"stt_queue_url": queues.url, "llm_queue_url": queues.url})
    cache = Cache(create_redis(wired))
    yield wired, cache
    await cache.redis.aclose()


def _pipeline(settings: Settings, db: Database, cache: Cache, seconds: float | None) -> Pipeline:
    return Pipeline(
        settings=settings,
        db=db,
        storage=Storage(settings),
        queue=Queue(settings),
        cache=cache,
        locks=TaskLocks(cache.redis, ttl_ms=30_000, prefix=cache.prefix),
        transcriber=Measured(seconds),
        summarizer=None,
    )


async def _audio_seconds(db: Database, task_id: uuid.UUID) -> float | None:
    value: float | None = await db.pool.fetchval(
        "SELECT audio_seconds FROM tasks WHERE id = $1", task_id
    )
    return value


@pytest.mark.parametrize("seconds", [93.5, None])
async def test_the_stt_step_stores_the_length_with_the_transcript(
    db: Database, pipeline_parts: tuple[Settings, Cache], seconds: float | None
) -> None:
    settings, cache = pipeline_parts
    [task_id] = await queued_tasks(db, 1)
    task = await db.get_task(task_id)
    assert task is not None
    job = Job(
        message=TaskMessage(
            task_id=task.id,
            tenant_id=task.tenant_id,
            object_key=task.object_key,
            task_type=TaskType.STT,
        ),
        receive_count=1,
    )
    outcome = await _pipeline(settings, db, cache, seconds).transcribe(job)
    assert outcome is Outcome.DONE
    done = await db.get_task(task_id)
    assert done is not None and done.state is TaskState.SUMMARIZING
    assert await _audio_seconds(db, task_id) == seconds


async def test_the_column_refuses_lengths_that_are_not_lengths(db: Database) -> None:
    [task_id] = await queued_tasks(db, 1)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.pool.execute("UPDATE tasks SET audio_seconds = $2 WHERE id = $1", task_id, bad)


async def test_reported_lengths_are_checked_before_they_are_stored() -> None:
    assert seconds_or_none(12) == 12.0
    assert seconds_or_none("61.25") == 61.25  # Transcribe writes times as text
    for bad in (None, -3, math.nan, math.inf, "soon", [1], 1e9):
        assert seconds_or_none(bad) is None


async def test_pocketsphinx_measures_the_decoded_audio() -> None:
    with wave.open(str(SAMPLE_WAV)) as w:
        expected = w.getnframes() / w.getframerate()
    audio = fake_openai.audio(SAMPLE_WAV.read_bytes())
    transcript = await PocketSphinxTranscriber().transcribe(audio)
    assert transcript.duration_seconds == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(
    ("answer", "seconds"),
    [
        ({"text": "hi", "usage": {"type": "duration", "seconds": 42}}, 42.0),  # vLLM, OpenAI
        ({"text": "hi", "duration": 41.5}, 41.5),  # verbose_json servers
        ({"text": "hi"}, None),
    ],
)
async def test_whisper_servers_report_the_length_they_transcribed(
    answer: dict[str, object], seconds: float | None
) -> None:
    server = fake_openai.FakeOpenAI()
    try:
        server.script = [fake_openai.ok(answer)]
        client = fake_openai.client(server, fake_openai.Sleeps(), "transcription_failed")
        result = await OpenAITranscriber(client, model="whisper").transcribe(fake_openai.audio())
        assert result.duration_seconds == seconds
    finally:
        server.server.shutdown()
        server.server.server_close()


async def test_transcribe_reports_the_end_of_the_last_word(aws: AwsNames) -> None:
    storage = Storage(Settings(audio_bucket=aws.bucket, aws_endpoint_url=aws.endpoint))
    a = fake_transcribe.audio(aws.bucket)
    name = {"TranscriptionJobName": f"aipp-{a.task_id}"}
    document = {
        "results": {
            "transcripts": [{"transcript": "Hello there."}],
            "items": [
                {"type": "pronunciation", "start_time": "0.4", "end_time": "0.9"},
                {"type": "pronunciation", "start_time": "1.0", "end_time": "61.25"},
                {"type": "punctuation"},
            ],
        }
    }
    await storage.put(
        transcribe_output_key(a.tenant_id, a.task_id),
        json.dumps(document).encode(),
        "application/json",
    )
    with stubbed_client("transcribe") as (client, stub):
        stub.add_response(
            "start_transcription_job",
            fake_transcribe.job(a, "QUEUED"),
            fake_transcribe.start_params(a),
        )
        stub.add_response("get_transcription_job", fake_transcribe.job(a, "COMPLETED"), name)
        sleeps = fake_transcribe.Sleeps()
        result = await TranscribeTranscriber(client, storage, sleep=sleeps).transcribe(a)
    assert result.duration_seconds == 61.25
