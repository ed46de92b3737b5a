"""Offline CPU speech recognition with PocketSphinx (its bundled US-English model)."""

from __future__ import annotations

import array
import asyncio
import queue
from typing import Any

from aipp.worker.audio import TARGET_RATE, to_pcm16k
from aipp.worker.providers.base import AudioInput, Transcript

UTTERANCE_SECONDS = 20
SEARCH_SECONDS = 3  # cut each utterance at the quietest 50 ms within its last seconds
FRAME = TARGET_RATE // 20


def _cut_points(pcm: bytes) -> list[tuple[int, int]]:
    """(start, end) sample ranges of at most UTTERANCE_SECONDS, cut where it is quietest."""
    samples = array.array("h", pcm)
    total = len(samples)
    limit = UTTERANCE_SECONDS * TARGET_RATE
    spans = []
    start = 0
    while total - start > limit:
        end = start + limit
        best, best_energy = end, None
        for frame_start in range(end - SEARCH_SECONDS * TARGET_RATE, end - FRAME, FRAME):
            energy = sum(abs(v) for v in samples[frame_start : frame_start + FRAME : 4])
            if best_energy is None or energy < best_energy:
                best, best_energy = frame_start + FRAME // 2, energy
        spans.append((start, best))
        start = best
    spans.append((start, total))
    return spans


class PocketSphinxTranscriber:
    name = "pocketsphinx"

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()  # decoders are not thread-safe

    def _decoder(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            from pocketsphinx import Decoder  # type: ignore[import-untyped]  # noqa: PLC0415

            return Decoder(samprate=TARGET_RATE, loglevel="FATAL")

    def _recognize(self, data: bytes) -> tuple[str, float]:
        pcm = to_pcm16k(data)
        decoder = self._decoder()
        try:
            words = []
            for start, end in _cut_points(pcm):
                decoder.start_utt()
                decoder.process_raw(pcm[2 * start : 2 * end], full_utt=True)
                decoder.end_utt()
                hyp = decoder.hyp()
                if hyp is not None and hyp.hypstr:
                    words.append(hyp.hypstr)
            return " ".join(words), len(pcm) / (2 * TARGET_RATE)
        finally:
            self._idle.put(decoder)

    async def transcribe(self, audio: AudioInput) -> Transcript:
        data = await audio.read()
        text, seconds = await asyncio.to_thread(self._recognize, data)
        return Transcript(
            text=text,
            language="en-US",
            details={"engine": "pocketsphinx"},
            duration_seconds=seconds,
        )
