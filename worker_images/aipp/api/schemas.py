"""Request and response bodies of the task API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self, cast

from pydantic import BaseModel, ConfigDict, Field

from aipp.core.models import Task, TaskState

LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"  # URL-safe base64 without padding


class CreateTaskRequest(BaseModel):
    """Ask for a presigned upload URL; the file is then PUT to it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    filename: str = Field(
        min_length=1,
        max_length=255,
        description="name of the audio file: at most 255 bytes as UTF-8, no `/` or `\\`, no"
        " control characters, no leading or trailing whitespace, not `.` or `..`",
    )
    content_type: str = Field(
        min_length=1,
        max_length=100,
        description="the audio type (the upload check reads the file's bytes to confirm it)",
    )
    size_bytes: int = Field(gt=0, description="exact size of the file in bytes")
    language: str | None = Field(
        default=None, max_length=35, pattern=LANGUAGE_PATTERN, description="BCP-47, e.g. en-US"
    )


class UploadInstructions(BaseModel):
    url: str = Field(description="presigned S3 URL")
    method: str = Field(description="always PUT")
    headers: dict[str, str] = Field(description="send exactly these headers with the upload")
    expires_at: datetime = Field(description="the URL stops working at this time")


class TaskError(BaseModel):
    code: str
    message: str


def _is_none(value: Any) -> bool:
    return value is None


class TaskView(BaseModel):
    id: uuid.UUID
    state: TaskState
    created_at: datetime
    updated_at: datetime
    error: TaskError | None = Field(default=None, exclude_if=_is_none)

    @classmethod
    def of(cls, task: Task) -> Self:
        """The view of a task read from the database (typed already: built without validation)."""
        error = None
        if task.state is TaskState.FAILED:
            error = TaskError.model_construct(
                code=task.error_code or "failed", message=task.error_message or "task failed"
            )
        view = cls.model_construct(
            id=task.id,
            state=task.state,
            created_at=task.created_at,
            updated_at=task.updated_at,
            error=error,
        )
        return cast(Self, view)  # the pydantic plugin types model_construct as the base class


class TaskCreated(TaskView):
    upload: UploadInstructions | None = Field(default=None, exclude_if=_is_none)


class TaskPage(BaseModel):
    items: list[TaskView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


class TaskResult(BaseModel):
    id: uuid.UUID
    transcript: str
    summary: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
