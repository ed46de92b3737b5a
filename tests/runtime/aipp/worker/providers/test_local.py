"""The local defaults: PocketSphinx on a spoken sample, and the extractive summarizer."""

from __future__ import annotations

import uuid
from typing import IO

from aipp.worker.providers.base import AudioInput
from aipp.worker.providers.extractive import ExtractiveSummarizer, summarize_text
from aipp.worker.providers.pocketsphinx import PocketSphinxTranscriber

from tests.runtime.conftest import ON_SESSION_LOOP

from ..conftest import SAMPLE_WAV


@ON_SESSION_LOOP
async def test_pocketsphinx_hears_the_spoken_sample() -> None:
    data = SAMPLE_WAV.read_bytes()

    async def download(file: IO[bytes]) -> None:
        file.write(data)

    sample = AudioInput(uuid.uuid4(), uuid.uuid4(), "b", "k.wav", "audio/wav", None, download)
    transcript = await PocketSphinxTranscriber().transcribe(sample)
    # "The weather today is sunny and warm. We will meet at the office tomorrow morning."
    assert (
        len(set(transcript.text.split()) & {"sunny", "warm", "office", "tomorrow", "morning"}) >= 3
    )


@ON_SESSION_LOOP
async def test_extractive_summary_keeps_the_central_sentences_in_order() -> None:
    text = (
        "The budget meeting started late. The budget for the new office was approved. "
        "Someone brought coffee. The office move is planned for May and the budget covers it. "
        "It rained outside. Everyone agreed the office budget is final."
    )
    summary = await ExtractiveSummarizer().summarize(text, "en-US")
    chosen = summary.text.split(". ")
    assert len(chosen) == 2  # 30 % of six sentences
    assert all("budget" in s and "office" in s for s in chosen)  # the central topic, not the coffee
    assert text.index(chosen[0]) < text.index(chosen[1].rstrip("."))  # in the speaker's order
    assert summary.text == (await ExtractiveSummarizer().summarize(text, "en-US")).text


def test_unpunctuated_speech_is_cut_into_runs_of_words() -> None:
    words = " ".join(["alpha beta gamma delta"] * 30)  # 120 words, no punctuation
    summary = summarize_text(words)
    assert 0 < len(summary.split()) < 120
    assert summarize_text("") == "" and summarize_text("Just one.") == "Just one."
