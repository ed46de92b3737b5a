"""The two capabilities a worker needs, each behind one small Protocol."""

from __future__ import annotations

import math
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

# Audio held in memory before the spool file moves to disk (/tmp, the worker's scratch volume).
SPOOL_MEMORY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class AudioInput:
    """An uploaded audio object (one S3 version). Providers that need the bytes stream them into
    a spool file (`spooled()`, at most SPOOL_MEMORY_BYTES in memory) instead of holding the whole
    object; providers that read S3 themselves (Transcribe) use bucket, key and version."""

    task_id: uuid.UUID
    tenant_id: uuid.UUID
    bucket: str
    key: str
    content_type: str
    language: str | None
    download: Callable[[IO[bytes]], Awaitable[None]]
    version_id: str | None = None

    @asynccontextmanager
    async def spooled(self) -> AsyncIterator[IO[bytes]]:
        """The audio in a temporary file, positioned at its start; removed afterwards."""
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as file:
            await self.download(file)
            file.seek(0)
            yield file

    async def read(self) -> bytes:
        """The whole object in memory: only for local engines that decode it whole anyway."""
        async with self.spooled() as file:
            return file.read()


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
