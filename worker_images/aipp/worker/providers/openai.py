"""Any OpenAI-compatible server: `/v1/audio/transcriptions` (Whisper on vLLM or faster-whisper)
and `/v1/chat/completions` (vLLM). Phases 2-3 deploy these.

429 waits for Retry-After, and 5xx or a refused connection (a model server still loading its
weights answers either for minutes) back off, a few times here; then `ProviderUnavailable` hands
the wait to the worker, which keeps the message and calls again with longer backoff until the
job deadline, so an outage does not spend the message's receives. Any other 4xx is the input's
fault and fails the task; the server's words go to the log, not to the tenant.

AIPP_STT_PROVIDER=openai and AIPP_LLM_PROVIDER=openai may name different servers
(AIPP_OPENAI_STT_BASE_URL, AIPP_OPENAI_LLM_BASE_URL), models (AIPP_OPENAI_STT_MODEL,
AIPP_OPENAI_LLM_MODEL) and timeouts (AIPP_OPENAI_TIMEOUT_SECONDS per request,
AIPP_OPENAI_CONNECT_TIMEOUT_SECONDS per connection). The audio is streamed from a spool file, never
held whole in memory.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from aipp.worker.errors import ProviderError, ProviderUnavailable
from aipp.worker.providers.base import AudioInput, Summary, Transcript, seconds_or_none
from aipp.worker.providers.chunked import load_prompts, summarize_chunked

Sleep = Callable[[float], Awaitable[None]]
MAX_TRIES = 4
MAX_WAIT = 60.0


def api_root(url: str) -> str:
    """`http://h:8000`, `http://h:8000/` and `http://h:8000/v1` all name the same server."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if isinstance(body.get("detail"), str):
            return str(body["detail"])[:300]
    return response.text[:300]


class OpenAIClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        code: str,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=api_root(base_url),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )
        self.code = code
        self.sleep = sleep

    async def close(self) -> None:
        await self.http.aclose()

    async def post(self, path: str, **kwargs: Any) -> Any:
        """POST and decode JSON, with in-process retries for 429/5xx/connection errors."""
        for attempt in range(1, MAX_TRIES + 1):
            last = attempt == MAX_TRIES
            wait = min(MAX_WAIT, 2.0 ** (attempt - 1) + random.uniform(0, 0.5))  # noqa: S311
            try:
                response = await self.http.post(path, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise ProviderUnavailable(
                        self.code, "the model server is unreachable", detail=repr(exc)
                    ) from None
                await self.sleep(wait)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                after = _retry_after(response)
                if last:
                    raise ProviderUnavailable(
                        self.code,
                        f"the model server answered {response.status_code}",
                        retry_after=after,
                        detail=_error_text(response),
                    )
                await self.sleep(min(MAX_WAIT, after) if after is not None else wait)
                continue
            if response.status_code >= 400:
                raise ProviderError(
                    self.code,
                    f"the model server rejected the request ({response.status_code})",
                    retryable=response.status_code in (408, 409),
                    detail=_error_text(response),
                )
            try:
                return response.json()
            except (ValueError, json.JSONDecodeError):
                if last:
                    raise ProviderError(
                        self.code, "the server answered with malformed JSON", retryable=True
                    ) from None
                await self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


class OpenAITranscriber:
    name = "openai"

    def __init__(self, client: OpenAIClient, *, model: str) -> None:
        self.client = client
        self.model = model

    async def transcribe(self, audio: AudioInput) -> Transcript:
        fields = {"model": self.model, "response_format": "json", "temperature": "0"}
        if audio.language:
            fields["language"] = audio.language.split("-", 1)[0].lower()  # ISO 639-1
        filename = audio.key.rsplit("/", 1)[-1] or "audio"
        async with audio.spooled() as file:
            # httpx streams the file part in chunks (and rewinds it for each retry).
            body = await self.client.post(
                "/v1/audio/transcriptions",
                data=fields,
                files={"file": (filename, file, audio.content_type)},
            )
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise ProviderError(
                "transcription_failed", "the server's answer has no `text`", retryable=True
            )
        language = body.get("language") if isinstance(body.get("language"), str) else None
        usage = body.get("usage")  # vLLM and OpenAI: {"type": "duration", "seconds": N}
        seconds = usage.get("seconds") if isinstance(usage, dict) else body.get("duration")
        return Transcript(
            text=text.strip(),
            language=language or audio.language,
            details={"model": self.model},
            duration_seconds=seconds_or_none(seconds),
        )


class OpenAISummarizer:
    name = "openai"

    def __init__(
        self, client: OpenAIClient, *, model: str, max_tokens: int = 1024, chunk_chars: int = 12000
    ) -> None:
        self.client = client
        self.model = model
        self.max_tokens = max_tokens
        self.chunk_chars = chunk_chars

    async def _complete(self, system: str, user: str) -> str:
        body = await self.client.post(
            "/v1/chat/completions",
            json={
                "model": self.model,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ],
                "max_tokens": self.max_tokens,
                "temperature": 0.2,
            },
        )
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise ProviderError(
                "summarization_failed", "the server's answer has no message content", retryable=True
            )
        return content

    async def summarize(self, transcript: str, language: str | None) -> Summary:
        prompts = load_prompts()
        text, calls = await summarize_chunked(
            self._complete, transcript, max_chars=self.chunk_chars, prompts=prompts
        )
        return Summary(
            text=text, details={"model": self.model, "prompt": prompts.version, "calls": calls}
        )
