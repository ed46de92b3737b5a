"""A local OpenAI-compatible server, as vLLM serves Whisper and chat models: the two endpoints
`/v1/audio/transcriptions` (multipart, `file` + `model`) and `/v1/chat/completions`, with a
scriptable outage (connection refused until started, 503 or 429 for a while)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def form_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """The parts of a multipart/form-data body, by field name."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = part.get_payload(decode=True) or b""
    return fields


class ModelServer:
    """Answers like vLLM; `fail_for` seconds of outage from `start()`, or from the first request
    (`from_first_request`: an outage a slow test machine cannot let pass before the worker asks)."""

    def __init__(self, *, stt_model: str, llm_model: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.stt_model = stt_model
        self.llm_model = llm_model
        self.fail_status = 503
        self.fail_until: float | None = 0.0
        self.fail_for = 0.0
        self.requests: list[tuple[str, int]] = []
        self.audio_digests: list[str] = []
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    def start(
        self, *, fail_for: float = 0.0, status: int = 503, from_first_request: bool = False
    ) -> None:
        self.fail_status = status
        self.fail_for = fail_for
        self.fail_until = None if from_first_request else time.monotonic() + fail_for
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = server.answer(
                    self.path, self.headers.get("Content-Type", ""), body
                )
                with server.lock:
                    server.requests.append((self.path, status))
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.fail_until is None:
                self.fail_until = time.monotonic() + self.fail_for
        if time.monotonic() < self.fail_until:
            return self.fail_status, {
                "error": {"message": "model is loading", "code": self.fail_status}
            }
        if path == "/v1/audio/transcriptions":
            fields = form_fields(content_type, body)
            if fields.get("model", b"").decode() != self.stt_model:
                return 404, {"error": {"message": f"model {fields.get('model')!r} not served"}}
            digest = hashlib.sha256(fields["file"]).hexdigest()
            with self.lock:
                self.audio_digests.append(digest)
            return 200, {"text": f" Whisper heard {len(fields['file'])} bytes. All is well. "}
        if path == "/v1/chat/completions":
            request = json.loads(body)
            if request.get("model") != self.llm_model:
                return 404, {"error": {"message": f"model {request.get('model')!r} not served"}}
            said = request["messages"][-1]["content"]
            heard = "heard" in said
            return 200, {
                "choices": [
                    {"message": {"role": "assistant", "content": f" vLLM summary ({heard}). "}}
                ]
            }
        return 404, {"error": {"message": "no such endpoint"}}

    def count(self, path: str, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for p, s in self.requests if p == path and (status is None or s == status))

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
