"""The task model and its state machine."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from aipp_contract.messages import TaskType

__all__ = [
    "OPEN_STATES",
    "STATE_TIMESTAMP",
    "TRANSITIONS",
    "UPLOAD_EXPIRED",
    "InvalidTransition",
    "Task",
    "TaskState",
    "TaskType",
    "check_transition",
]


class TaskState(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    QUEUED = "queued"
    TRANSCRIBING = "transcribing"
    SUMMARIZING = "summarizing"
    COMPLETED = "completed"
    FAILED = "failed"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.AWAITING_UPLOAD: frozenset({TaskState.QUEUED, TaskState.FAILED}),
    TaskState.QUEUED: frozenset({TaskState.TRANSCRIBING, TaskState.FAILED}),
    TaskState.TRANSCRIBING: frozenset({TaskState.SUMMARIZING, TaskState.FAILED}),
    TaskState.SUMMARIZING: frozenset({TaskState.COMPLETED, TaskState.FAILED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.FAILED: frozenset(),
}

# The error code of a task whose upload never arrived (the workers' expiry sweep).
UPLOAD_EXPIRED = "upload_expired"

# States in which a task is still owed work: it counts against its tenant's in-flight quota,
# and the reconciler re-sends its message when it sits there unlocked for too long.
OPEN_STATES = frozenset(
    {TaskState.AWAITING_UPLOAD, TaskState.QUEUED, TaskState.TRANSCRIBING, TaskState.SUMMARIZING}
)

# The column that records when a task entered each state.
STATE_TIMESTAMP: dict[TaskState, str] = {
    TaskState.AWAITING_UPLOAD: "created_at",
    TaskState.QUEUED: "queued_at",
    TaskState.TRANSCRIBING: "transcribing_at",
    TaskState.SUMMARIZING: "summarizing_at",
    TaskState.COMPLETED: "completed_at",
    TaskState.FAILED: "failed_at",
}


class InvalidTransition(ValueError):
    def __init__(self, source: TaskState, target: TaskState) -> None:
        super().__init__(f"a task cannot move from {source} to {target}")
        self.source = source
        self.target = target


def check_transition(source: TaskState, target: TaskState) -> None:
    if target not in TRANSITIONS[source]:
        raise InvalidTransition(source, target)


@dataclass(frozen=True, slots=True)
class Task:
    id: uuid.UUID
    tenant_id: uuid.UUID
    state: TaskState
    filename: str
    object_key: str
    content_type: str
    size_bytes: int
    language: str | None
    attempts: int
    error_code: str | None
    error_message: str | None
    transcript_key: str | None
    result_key: str | None
    summary: str | None
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    transcribing_at: datetime | None
    summarizing_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    object_version: str | None = None
    retryable: bool = False
    request_hash: str | None = None  # of the create request that carried an Idempotency-Key

    @classmethod
    def from_row(cls, row: Any) -> Task:
        return cls(
            id=row["id"],
            tenant_id=row["tenant_id"],
            state=TaskState(row["state"]),
            filename=row["filename"],
            object_key=row["object_key"],
            content_type=row["content_type"],
            size_bytes=row["size_bytes"],
            language=row["language"],
            attempts=row["attempts"],
            error_code=row["error_code"],
            error_message=row["error_message"],
            transcript_key=row["transcript_key"],
            result_key=row["result_key"],
            summary=row["summary"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            queued_at=row["queued_at"],
            transcribing_at=row["transcribing_at"],
            summarizing_at=row["summarizing_at"],
            completed_at=row["completed_at"],
            failed_at=row["failed_at"],
            object_version=row.get("object_version"),
            retryable=bool(row.get("retryable") or False),
            request_hash=row.get("request_hash"),
        )
