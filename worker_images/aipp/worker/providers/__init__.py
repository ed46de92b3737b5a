"""Speech-to-text and summarization providers, chosen by AIPP_STT_PROVIDER and AIPP_LLM_PROVIDER."""

from __future__ import annotations

from aipp.core.aws import bedrock_runtime_client, transcribe_client
from aipp.core.config import Settings
from aipp.core.storage import Storage
from aipp.worker.providers.base import AudioInput, Summarizer, Summary, Transcriber, Transcript

__all__ = [
    "AudioInput",
    "Summarizer",
    "Summary",
    "Transcriber",
    "Transcript",
    "build_summarizer",
    "build_transcriber",
]


def build_transcriber(settings: Settings, storage: Storage) -> Transcriber:
    name = settings.stt_provider
    if name == "transcribe":
        from aipp.worker.providers.transcribe import TranscribeTranscriber  # noqa: PLC0415

        return TranscribeTranscriber(
            transcribe_client(settings),
            storage,
            language=settings.transcribe_language,
            max_wait_seconds=min(
                settings.transcribe_max_wait_seconds, settings.worker_job_deadline_seconds
            ),
        )
    if name == "openai":
        from aipp.worker.providers.openai import OpenAIClient, OpenAITranscriber  # noqa: PLC0415

        client = OpenAIClient(
            settings.openai_stt_base_url or settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=settings.openai_timeout_seconds,
            connect_timeout=settings.openai_connect_timeout_seconds,
            code="transcription_failed",
        )
        return OpenAITranscriber(client, model=settings.openai_stt_model)
    if name == "pocketsphinx":
        from aipp.worker.providers.pocketsphinx import PocketSphinxTranscriber  # noqa: PLC0415

        return PocketSphinxTranscriber()
    if name == "instant":
        from aipp.worker.providers.instant import InstantTranscriber  # noqa: PLC0415

        return InstantTranscriber(
            settings.instant_provider_delay_seconds, settings.instant_provider_log
        )
    raise ValueError(f"unknown AIPP_STT_PROVIDER {name!r}")


def build_summarizer(settings: Settings) -> Summarizer:
    name = settings.llm_provider
    if name == "bedrock":
        from aipp.worker.providers.bedrock import BedrockSummarizer  # noqa: PLC0415

        return BedrockSummarizer(
            bedrock_runtime_client(settings, read_timeout=settings.openai_timeout_seconds),
            model_id=settings.bedrock_model_id,
            max_tokens=settings.llm_max_output_tokens,
            chunk_chars=settings.llm_chunk_chars,
        )
    if name == "openai":
        from aipp.worker.providers.openai import OpenAIClient, OpenAISummarizer  # noqa: PLC0415

        client = OpenAIClient(
            settings.openai_llm_base_url or settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=settings.openai_timeout_seconds,
            connect_timeout=settings.openai_connect_timeout_seconds,
            code="summarization_failed",
        )
        return OpenAISummarizer(
            client,
            model=settings.openai_llm_model,
            max_tokens=settings.llm_max_output_tokens,
            chunk_chars=settings.llm_chunk_chars,
        )
    if name == "extractive":
        from aipp.worker.providers.extractive import ExtractiveSummarizer  # noqa: PLC0415

        return ExtractiveSummarizer()
    if name == "instant":
        from aipp.worker.providers.instant import InstantSummarizer  # noqa: PLC0415

        return InstantSummarizer(
            settings.instant_provider_delay_seconds, settings.instant_provider_log
        )
    raise ValueError(f"unknown AIPP_LLM_PROVIDER {name!r}")
