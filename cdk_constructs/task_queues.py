"""The task queues: one queue + DLQ for both task types, or one pair per task type.

While an environment moves between the two layouts (phase 1 <-> 2, docs/phase-switch.md) both
exist side by side; each keeps its construct ids, so neither is replaced by the switch.

Message contract (docs/architecture-phase1.md): every message carries the String message
attribute `task_type` (`stt` or `llm`); the body is JSON with at least `task_id`, `tenant_id`
and `object_key`. In `single` mode one worker program consumes both types from one queue:
SQS cannot filter on receive, and a message received by the wrong consumer would still count
towards its DLQ receive limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from aipp_contract.messages import TaskType
from phases.models import QueueConfig


@dataclass(frozen=True)
class QueuePair:
    """A work queue, its dead-letter queue, and the task types it carries."""

    queue: sqs.Queue
    dlq: sqs.Queue
    task_types: tuple[TaskType, ...]

    @property
    def name(self) -> str:
        return "-".join(t.value for t in self.task_types)


QueueMode = Literal["single", "per_type"]
LAYOUTS: dict[str, tuple[tuple[TaskType, ...], ...]] = {
    "single": ((TaskType.STT, TaskType.LLM),),
    "per_type": ((TaskType.STT,), (TaskType.LLM,)),
}


class TaskQueues(Construct):
    """Exposes `pairs` (every pair), `layout(mode)` and `for_type(task_type, mode)`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: QueueConfig,
        modes: tuple[QueueMode, ...] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._layouts = {
            mode: tuple(self._pair(config, types) for types in LAYOUTS[mode])
            for mode in (modes or (config.mode,))
        }
        self.pairs: tuple[QueuePair, ...] = tuple(p for ps in self._layouts.values() for p in ps)

    def layout(self, mode: QueueMode) -> tuple[QueuePair, ...]:
        return self._layouts[mode]

    def _pair(self, config: QueueConfig, types: tuple[TaskType, ...]) -> QueuePair:
        label = "Tasks" if len(types) > 1 else types[0].value.capitalize()
        dlq = sqs.Queue(
            self,
            f"{label}Dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(config.dlq_retention_days),
        )
        queue = sqs.Queue(
            self,
            f"{label}Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(config.visibility_timeout_seconds),
            retention_period=Duration.days(config.retention_days),
            receive_message_wait_time=Duration.seconds(20),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dlq, max_receive_count=config.max_receive_count
            ),
        )
        return QueuePair(queue=queue, dlq=dlq, task_types=types)

    def for_type(self, task_type: TaskType, mode: QueueMode) -> QueuePair:
        return next(p for p in self._layouts[mode] if task_type in p.task_types)
