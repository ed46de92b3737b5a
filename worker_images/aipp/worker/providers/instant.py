"""Test and benchmark providers: no model, a fixed answer after an optional delay.

They measure the pipeline without the providers (`make bench-pipeline`) and let fault tests
hold a job in flight. Each call can be appended to a file (AIPP_INSTANT_PROVIDER_LOG) so that a test
can count how often each task was really transcribed and summarized.
"""

from __future__ import annotations

import asyncio
import os
import time

from aipp.worker.providers.base import AudioInput, Summary, Transcript


def _record(path: str | None, kind: str, ident: str) -> None:
    if path:
        line = f"{kind} {ident} {os.getpid()} {time.time():.6f}\n".encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one O_APPEND write: whole lines even across processes
        finally:
            os.close(fd)


class InstantTranscriber:
    name = "instant"

    def __init__(self, delay: float = 0.0, log: str | None = None) -> None:
        self.delay = delay
        self.log = log

    async def transcribe(self, audio: AudioInput) -> Transcript:
        if self.delay:
            await asyncio.sleep(self.delay)
        _record(self.log, "stt", str(audio.task_id))
        return Transcript(
            text=f"Instant transcript of task {audio.task_id}. It has two sentences.",
            language=audio.language,
        )


class InstantSummarizer:
    name = "instant"

    def __init__(self, delay: float = 0.0, log: str | None = None) -> None:
        self.delay = delay
        self.log = log

    async def summarize(self, transcript: str, language: str | None) -> Summary:
        if self.delay:
            await asyncio.sleep(self.delay)
        first = transcript.split(". ", 1)[0]
        _record(self.log, "llm", first.rsplit(" ", 1)[-1].rstrip("."))
        return Summary(text=f"Summary: {first}.")
