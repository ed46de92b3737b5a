"""The transcripts a worker keeps for its own LLM step: only for the attempt and key that wrote
them, each taken once, bounded in count and size."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from aipp.core.models import Task, TaskState
from aipp.worker.pipeline import RecentTranscripts

from aipp_contract.keys import transcript_key


def summarizing(attempts: int = 1) -> Task:
    now = datetime.now(UTC)
    tenant, task_id = uuid.uuid4(), uuid.uuid4()
    return Task(
        id=task_id,
        tenant_id=tenant,
        state=TaskState.SUMMARIZING,
        filename="talk.wav",
        object_key=f"uploads/{tenant}/{task_id}/talk.wav",
        content_type="audio/wav",
        size_bytes=1000,
        language=None,
        attempts=attempts,
        error_code=None,
        error_message=None,
        transcript_key=transcript_key(tenant, task_id),
        result_key=None,
        summary=None,
        created_at=now,
        updated_at=now,
        queued_at=now,
        transcribing_at=now,
        summarizing_at=now,
        completed_at=None,
        failed_at=None,
    )


def test_the_writing_attempt_takes_its_transcript_once() -> None:
    recent, task = RecentTranscripts(), summarizing()
    recent.put(task, "hello")
    assert recent.take(task) == "hello"
    assert recent.take(task) is None  # a second delivery reads S3


def test_a_later_attempt_or_another_key_reads_s3() -> None:
    recent, task = RecentTranscripts(), summarizing(attempts=1)
    recent.put(task, "first attempt")
    assert recent.take(dataclasses.replace(task, attempts=2)) is None  # requeued: transcribed again
    recent.put(task, "first attempt")
    assert recent.take(dataclasses.replace(task, transcript_key="elsewhere.json")) is None


def test_entries_are_bounded_in_count_and_size() -> None:
    recent = RecentTranscripts(max_entries=2, max_chars=10)
    tasks = [summarizing() for _ in range(3)]
    for task in tasks:
        recent.put(task, "short")
    assert recent.take(tasks[0]) is None  # the oldest went first
    assert recent.take(tasks[2]) == "short"
    big = summarizing()
    recent.put(big, "x" * 11)
    assert recent.take(big) is None
