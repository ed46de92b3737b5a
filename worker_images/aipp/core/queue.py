"""The SQS client: every message carries the `task_type` attribute (stt or llm).

A process built for one kind (`aipp_contract.messages.Kind`) sends only the task types its kind
declares in `QUEUE_USE`: the IAM grants follow that declaration, and a send outside it fails here,
in tests, rather than as AccessDenied in AWS."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from aipp.core.aws import sqs_client
from aipp.core.config import Settings
from aipp.core.models import TaskType
from aipp_contract.messages import QUEUE_USE, TASK_TYPE_ATTRIBUTE, Kind

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["TASK_TYPE_ATTRIBUTE", "Queue", "TaskMessage"]


class TaskMessage(BaseModel):
    """The body of every queue message (JSON)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task_id: uuid.UUID
    tenant_id: uuid.UUID
    object_key: str
    task_type: TaskType
    language: str | None = None
    # The S3 version the upload check accepted (STT): the worker reads exactly this version.
    object_version: str | None = None


class Queue:
    """Sends task messages; `kind` limits them to what that kind of process may send (None:
    any type, for operator commands)."""

    def __init__(
        self, settings: Settings, client: SQSClient | None = None, *, kind: Kind | None = None
    ) -> None:
        self.urls = {TaskType.STT: settings.stt_queue_url, TaskType.LLM: settings.llm_queue_url}
        self.client = client or sqs_client(settings)
        self.sends = QUEUE_USE[kind].sends if kind is not None else frozenset(TaskType)
        self.kind = kind

    async def send(self, message: TaskMessage) -> str:
        if message.task_type not in self.sends:
            raise ValueError(f"a {self.kind} process does not send {message.task_type} messages")
        response = await asyncio.to_thread(
            self.client.send_message,
            QueueUrl=self.urls[message.task_type],
            MessageBody=message.model_dump_json(),
            MessageAttributes={
                TASK_TYPE_ATTRIBUTE: {
                    "DataType": "String",
                    "StringValue": message.task_type.value,
                }
            },
        )
        return response["MessageId"]

    async def ping(self) -> None:
        for url in set(self.urls.values()):
            await asyncio.to_thread(
                self.client.get_queue_attributes, QueueUrl=url, AttributeNames=["QueueArn"]
            )
