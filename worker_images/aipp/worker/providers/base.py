"""The two capabilities a worker needs, each behind one small Protocol."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class AudioInput:
    """An uploaded audio object; `read()` downloads it only for providers that need the bytes."""

    task_id: uuid.UUID
    tenant_id: uuid.UUID
    bucket: str
    key: str
    content_type: str
    language: str | None
    read: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    duration_seconds: float | None = None  # the audio's length, when the provider can tell


def seconds_or_none(value: object) -> float | None:
    """A duration a provider reported (a number or numeric text), if it is a sane one."""
    try:
        seconds = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        return None
    return seconds if 0 <= seconds < 1e7 else None  # NaN fails both comparisons


@dataclass(frozen=True)
class Summary:
    text: str
    details: dict[str, Any] = field(default_factory=dict)


class Transcriber(Protocol):
    name: str

    async def transcribe(self, audio: AudioInput) -> Transcript: ...


class Summarizer(Protocol):
    name: str

    async def summarize(self, transcript: str, language: str | None) -> Summary: ...
