"""The queues: task types, the message attribute and body, and who sends and receives what."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from aipp_contract.env import Var


class TaskType(StrEnum):
    """The value of the `task_type` SQS message attribute."""

    STT = "stt"
    LLM = "llm"


# Every message carries this String attribute; the worker dispatches on it.
TASK_TYPE_ATTRIBUTE = "task_type"


class Kind(StrEnum):
    """The kinds of platform process; each gets its own environment and role."""

    API = "api"
    WORKER = "worker"
    MIGRATION = "migration"
    UPLOAD_CHECK = "upload_check"


# The variable that names the queue new work of each type is sent to.
SEND_TO: Mapping[TaskType, Var] = {
    TaskType.STT: Var.STT_QUEUE_URL,
    TaskType.LLM: Var.LLM_QUEUE_URL,
}


@dataclass(frozen=True)
class QueueUse:
    """What a kind of process does with queues, each named by the variable holding its URL."""

    sends: frozenset[TaskType] = frozenset()  # messages it sends, to the SEND_TO queue of a type
    receives: tuple[Var, ...] = ()  # queues it receives (and deletes) messages from
    reads: tuple[Var, ...] = ()  # queues it only reads the attributes of (readiness)


QUEUE_USE: Mapping[Kind, QueueUse] = {
    # Creates tasks (STT); `/readyz` reads the attributes of both queues.
    Kind.API: QueueUse(
        sends=frozenset({TaskType.STT}), reads=(Var.STT_QUEUE_URL, Var.LLM_QUEUE_URL)
    ),
    # Queues an accepted upload (STT); its events arrive through its event source mapping.
    Kind.UPLOAD_CHECK: QueueUse(sends=frozenset({TaskType.STT})),
    # Hands STT on to LLM; its reconciler re-sends a stranded task of either type; it consumes
    # its own queue and its dead-letter queue.
    Kind.WORKER: QueueUse(
        sends=frozenset(TaskType),
        receives=(Var.WORKER_QUEUE_URL, Var.WORKER_DLQ_URL),
    ),
    Kind.MIGRATION: QueueUse(),
}
