"""Messages reach the handler registered for their task type; one handler per type."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
from aipp.core.models import TaskType
from aipp.core.queue import TaskMessage
from aipp.worker.pipeline import STEPS, Job, Outcome, Pipeline, step


def test_every_task_type_has_exactly_its_handler() -> None:
    assert {TaskType.STT: Pipeline.transcribe, TaskType.LLM: Pipeline.summarize} == STEPS
    with pytest.raises(ValueError, match="a handler of stt messages is already registered"):
        step(TaskType.STT)(Pipeline.summarize)


@pytest.mark.asyncio
async def test_handle_dispatches_on_the_message_type(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[TaskType] = []

    async def record(pipeline: Pipeline, job: Job) -> Outcome:
        seen.append(job.message.task_type)
        return Outcome.NOT_READY

    for task_type in TaskType:
        monkeypatch.setitem(STEPS, task_type, record)
    pipeline = cast(Pipeline, object.__new__(Pipeline))
    for task_type in (TaskType.LLM, TaskType.STT):
        message = TaskMessage(
            task_id=uuid.uuid4(), tenant_id=uuid.uuid4(), object_key="k", task_type=task_type
        )
        assert await pipeline.handle(Job(message=message, receive_count=1)) is Outcome.NOT_READY
    assert seen == [TaskType.LLM, TaskType.STT]
