"""A process sends only the task types its kind declares (`aipp_contract.messages.QUEUE_USE`),
the same declaration the stacks grant SendMessage from."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aipp.core.config import Settings
from aipp.core.models import TaskType
from aipp.core.queue import Queue, TaskMessage

from aipp_contract.messages import Kind


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        self.sent.append(kwargs)
        return {"MessageId": "m"}


def _message(task_type: TaskType) -> TaskMessage:
    return TaskMessage(
        task_id=uuid.uuid4(), tenant_id=uuid.uuid4(), object_key="k", task_type=task_type
    )


@pytest.mark.asyncio
async def test_the_api_sends_stt_only_and_the_worker_both() -> None:
    settings = Settings(stt_queue_url="stt", llm_queue_url="llm")
    api = Recorder()
    queue = Queue(settings, client=api, kind=Kind.API)  # type: ignore[arg-type]
    await queue.send(_message(TaskType.STT))
    with pytest.raises(ValueError, match="does not send llm"):
        await queue.send(_message(TaskType.LLM))
    assert [m["QueueUrl"] for m in api.sent] == ["stt"]
    assert api.sent[0]["MessageAttributes"]["task_type"]["StringValue"] == "stt"
    worker = Recorder()
    queue = Queue(settings, client=worker, kind=Kind.WORKER)  # type: ignore[arg-type]
    for task_type in TaskType:
        await queue.send(_message(task_type))
    assert [m["QueueUrl"] for m in worker.sent] == ["stt", "llm"]
