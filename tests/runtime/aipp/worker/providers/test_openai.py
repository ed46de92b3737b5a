"""The `openai` providers against a local server that speaks the OpenAI shapes, errors included."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

import pytest
from aipp.worker.errors import ProviderError
from aipp.worker.providers.base import AudioInput
from aipp.worker.providers.openai import OpenAIClient, OpenAISummarizer, OpenAITranscriber

from tests.runtime.conftest import ON_SESSION_LOOP

pytestmark = ON_SESSION_LOOP

Answer = tuple[int, dict[str, str], bytes]


def ok(body: Any) -> Answer:
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    body = {"error": {"message": message, "type": "server_error", "code": status}}
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


class FakeOpenAI:
    """Answers each POST with the next scripted answer and records what it was sent."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests.append((self.path, dict(self.headers.items()), body))
                status, headers, payload = fake.script.pop(0) if fake.script else ok({})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json_bodies(self) -> list[Any]:
        return [json.loads(body) for _, _, body in self.requests]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client(server: FakeOpenAI, sleeps: Sleeps, code: str = "summarization_failed") -> OpenAIClient:
    return OpenAIClient(server.url, api_key="k-123", timeout=10, code=code, sleep=sleeps)


def audio(data: bytes = b"RIFF....WAVEfmt ") -> AudioInput:
    async def download(file: IO[bytes]) -> None:
        file.write(data)

    return AudioInput(
        task_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        bucket="b",
        key="uploads/t/k/meeting.wav",
        content_type="audio/wav",
        language="en-US",
        download=download,
    )


async def test_transcription_sends_the_whisper_form_and_returns_its_text(
    server: FakeOpenAI,
) -> None:
    server.script = [ok({"text": " Hello there. ", "language": "en"})]
    transcriber = OpenAITranscriber(
        client(server, Sleeps(), "transcription_failed"), model="whisper-x"
    )
    result = await transcriber.transcribe(audio(b"RIFF-bytes-of-audio"))
    assert result.text == "Hello there."
    path, headers, body = server.requests[0]
    assert path == "/v1/audio/transcriptions"
    assert headers["Authorization"] == "Bearer k-123"
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")
    for part in (
        b'name="model"\r\n\r\nwhisper-x',
        b'name="language"\r\n\r\nen\r\n',
        b'name="response_format"\r\n\r\njson',
        b'name="file"; filename="meeting.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF-bytes-of-audio',
    ):
        assert part in body


async def test_chat_completion_request_and_answer(server: FakeOpenAI) -> None:
    server.script = [ok({"choices": [{"message": {"role": "assistant", "content": " Short. "}}]})]
    summarizer = OpenAISummarizer(client(server, Sleeps()), model="llama", max_tokens=300)
    summary = await summarizer.summarize("We agreed to ship on Friday.", "en-US")
    assert summary.text == "Short."
    assert summary.details == {"model": "llama", "prompt": "summary-v1", "calls": 1}
    (request,) = server.json_bodies()
    assert server.requests[0][0] == "/v1/chat/completions"
    assert request["model"] == "llama" and request["max_tokens"] == 300
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert "We agreed to ship on Friday." in request["messages"][1]["content"]


async def test_rate_limit_waits_for_retry_after_then_succeeds(server: FakeOpenAI) -> None:
    sleeps = Sleeps()
    server.script = [
        error(429, "slow down", {"Retry-After": "7"}),
        ok({"choices": [{"message": {"content": "fine"}}]}),
    ]
    summary = await OpenAISummarizer(client(server, sleeps), model="m").summarize("Hi.", None)
    assert summary.text == "fine"
    assert sleeps.calls == [7.0]
    assert len(server.requests) == 2


async def test_server_errors_back_off_then_leave_a_retryable_failure(server: FakeOpenAI) -> None:
    sleeps = Sleeps()
    server.script = [error(500, "boom")] * 4
    with pytest.raises(ProviderError) as failure:
        await OpenAISummarizer(client(server, sleeps), model="m").summarize("Hi.", None)
    assert failure.value.retryable
    assert "500" in failure.value.message and failure.value.detail == "boom"
    assert len(server.requests) == 4
    assert sleeps.calls == sorted(sleeps.calls) and sleeps.calls[0] >= 1.0


async def test_persistent_rate_limit_hands_retry_after_to_the_queue(server: FakeOpenAI) -> None:
    server.script = [error(429, "busy", {"Retry-After": "30"})] * 4
    with pytest.raises(ProviderError) as failure:
        await OpenAISummarizer(client(server, Sleeps()), model="m").summarize("Hi.", None)
    assert failure.value.retryable and failure.value.retry_after == 30.0


async def test_malformed_json_is_retried(server: FakeOpenAI) -> None:
    server.script = [
        (200, {"Content-Type": "application/json"}, b"{not json"),
        ok({"choices": [{"message": {"content": "recovered"}}]}),
    ]
    summary = await OpenAISummarizer(client(server, Sleeps()), model="m").summarize("Hi.", None)
    assert summary.text == "recovered"


async def test_answer_without_content_is_a_retryable_failure(server: FakeOpenAI) -> None:
    server.script = [ok({"choices": []})]
    with pytest.raises(ProviderError) as failure:
        await OpenAISummarizer(client(server, Sleeps()), model="m").summarize("Hi.", None)
    assert failure.value.retryable and failure.value.code == "summarization_failed"


async def test_rejected_audio_fails_at_once_with_the_servers_reason(server: FakeOpenAI) -> None:
    server.script = [error(400, "Invalid file format.")]
    transcriber = OpenAITranscriber(client(server, Sleeps(), "transcription_failed"), model="w")
    with pytest.raises(ProviderError) as failure:
        await transcriber.transcribe(audio())
    assert not failure.value.retryable
    assert failure.value.code == "transcription_failed"
    # The server's words are logged (detail); the tenant reads our message.
    assert failure.value.detail == "Invalid file format."
    assert "Invalid file format." not in failure.value.message
    assert len(server.requests) == 1


async def test_long_transcripts_are_summarized_in_chunks_then_merged(server: FakeOpenAI) -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7}." for i in range(60)]
    transcript = " ".join(sentences)
    server.script = [ok({"choices": [{"message": {"content": f"part {i}"}}]}) for i in range(10)]
    summarizer = OpenAISummarizer(client(server, Sleeps()), model="m", chunk_chars=600)
    summary = await summarizer.summarize(transcript, None)
    bodies = server.json_bodies()
    chunks = len(bodies) - 1
    assert chunks >= len(transcript) // 600  # no chunk is longer than 600 characters
    assert summary.text == f"part {chunks}" and summary.details["calls"] == chunks + 1
    prompts = [b["messages"][1]["content"] for b in bodies]
    # every sentence went to exactly one chunk, whole
    assert all(sum(s in p for p in prompts[:-1]) == 1 for s in sentences)
    assert all(f"part {i}" in prompts[-1] for i in range(chunks))
