"""The three images doing their jobs, together, the way they run in AWS.

The api image migrates a new database and serves the task API; the upload-lambda image answers
S3 "Object Created" events, delivered as in AWS through the upload-events queue, via the Lambda
Runtime API (served here, as Lambda serves it); the worker image takes the queued task through
transcription and summary with the local providers. Every container runs Fargate-like (see
tests/images/podman.py).
"""

from __future__ import annotations

import http.server
import io
import json
import queue
import subprocess
import threading
import time
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from tests.images import podman
from tests.runtime.conftest import AwsNames, free_port

SAMPLE = Path(__file__).resolve().parents[2] / "worker_images" / "samples" / "demo.wav"
RUNTIME_API = "/2018-06-01/runtime"


def long_wav(seconds_min: float) -> bytes:
    """The spoken sample repeated into one WAV over 1 MiB: a multipart body that large is
    spooled to a temporary file (Starlette keeps at most 1 MiB of a part in memory)."""
    with wave.open(str(SAMPLE)) as w:
        params, frames = w.getparams(), w.readframes(w.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setparams(params)
        repeats = int(seconds_min * params.framerate * params.sampwidth // len(frames)) + 1
        w.writeframes(frames * repeats)
    return out.getvalue()


@pytest.fixture(scope="module")
def api(runtime_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    port = free_port()
    with podman.container("api", {**runtime_env, "UVICORN_PORT": str(port)}) as name:
        podman.wait_healthy(name, 90)
        yield name, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def client(api: tuple[str, str]) -> Iterator[httpx.Client]:
    name, base = api
    proc = podman.podman(
        "exec", name, "python", "-m", "aipp.admin", "create-api-key", "--tenant", "images"
    )
    key = proc.stdout.strip().splitlines()[-1]
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def worker(runtime_env: dict[str, str], aws: AwsNames) -> Iterator[str]:
    env = {
        **runtime_env,
        "AIPP_WORKER_TASK_TYPES": "stt,llm",
        "AIPP_WORKER_QUEUE_URL": aws.queue_url,
        "AIPP_WORKER_CONCURRENCY": "2",
        "AIPP_STT_PROVIDER": "pocketsphinx",
        "AIPP_LLM_PROVIDER": "extractive",
    }
    with podman.container("worker", env) as name:
        yield name


def test_api_answers_healthz_as_uid_10001(api: tuple[str, str]) -> None:
    name, base = api
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    assert podman.healthcheck(name).returncode == 0
    owner = podman.podman("exec", name, "stat", "-c", "%u", "/proc/1").stdout.strip()
    assert owner == str(podman.UID)  # uvicorn itself, not only the exec'd command


def test_api_takes_a_multipart_upload_spooled_to_tmp(client: httpx.Client) -> None:
    audio = long_wav(seconds_min=40)
    assert len(audio) > 1024 * 1024
    response = client.post("/v1/tasks", files={"file": ("long.wav", audio, "audio/wav")})
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "queued"


def test_worker_health_check_passes(worker: str) -> None:
    podman.wait_healthy(worker, 90)


@pytest.fixture
def worker_without_tmp_volume() -> Iterator[str]:
    """The worker image with its `VOLUME /tmp` declaration removed (and nothing else changed)."""
    name = f"{podman.image('worker')}-no-tmp-volume"
    ctr = subprocess.run(
        ["buildah", "from", podman.image("worker")], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        subprocess.run(["buildah", "config", "--volume", "/tmp-", ctr], check=True)
        subprocess.run(
            ["buildah", "commit", "-q", "--format", "docker", ctr, name],
            check=True,
            capture_output=True,
        )
    finally:
        subprocess.run(["buildah", "rm", ctr], check=False, capture_output=True)
    try:
        yield name
    finally:
        podman.podman("rmi", "--force", name, check=False)


def test_without_the_tmp_volume_the_same_worker_is_unhealthy(
    worker_without_tmp_volume: str, runtime_env: dict[str, str], aws: AwsNames
) -> None:
    """The control for the test above: the read-only root leaves /tmp unwritable for uid 10001,
    as the root-owned Fargate volume does, and the health check says so."""
    env = {
        **runtime_env,
        "AIPP_WORKER_QUEUE_URL": aws.queue_url,
        "AIPP_STT_PROVIDER": "instant",
        "AIPP_LLM_PROVIDER": "instant",
    }
    with podman.container("worker", env, image_name=worker_without_tmp_volume) as name:
        time.sleep(15)  # the worker above was healthy within this time
        check = podman.healthcheck(name)
        assert check.returncode != 0, podman.logs(name)
        why = podman.podman("exec", name, "python", "-m", "aipp.worker.health", check=False)
        assert "no heartbeat file /tmp/aipp-worker-heartbeat" in why.stdout


class RuntimeApi:
    """The Lambda Runtime API (the part a function's runtime client uses), on loopback:
    GET invocation/next hands out the queued events; the function's answers are collected."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.answers: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{RUNTIME_API}/invocation/next":
                    self._reply(404, b"{}")
                    return
                event = api.events.get()
                if event is None:  # shutting down: the runtime client never gets another event
                    self.close_connection = True
                    return
                request_id = str(uuid.uuid4())
                self._reply(
                    200,
                    json.dumps(event).encode(),
                    {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
                        "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:aipp-upload",
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                    },
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                parts = self.path.removeprefix(RUNTIME_API).strip("/").split("/")
                if (
                    parts[:1] == ["invocation"]
                    and len(parts) == 3
                    and parts[2] in {"response", "error"}
                ):
                    api.answers.put((parts[1], parts[2], json.loads(body or b"null")))
                elif parts == ["init", "error"]:
                    api.answers.put(("", "init-error", json.loads(body or b"null")))
                else:
                    self._reply(404, b"{}")
                    return
                self._reply(202, b'{"status":"OK"}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def invoke(self, event: dict[str, Any], seconds: float = 60) -> tuple[str, Any]:
        self.events.put(event)
        try:
            _, kind, body = self.answers.get(timeout=seconds)
        except queue.Empty:
            raise AssertionError(f"the function did not answer within {seconds}s") from None
        return kind, body


@pytest.fixture(scope="module")
def runtime_api() -> Iterator[RuntimeApi]:
    api = RuntimeApi()
    api.thread.start()
    try:
        yield api
    finally:
        for _ in range(4):
            api.events.put(None)
        api.server.shutdown()
        api.server.server_close()


@pytest.fixture(scope="module")
def upload_lambda(runtime_env: dict[str, str], runtime_api: RuntimeApi) -> Iterator[str]:
    env = {
        **runtime_env,
        "AWS_LAMBDA_RUNTIME_API": runtime_api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "aipp-upload",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/aipp-upload",
        "AWS_LAMBDA_LOG_STREAM_NAME": "smoke",
    }
    with podman.container("upload-lambda", env) as name:
        yield name


def upload(client: httpx.Client, data: bytes, filename: str) -> tuple[str, str]:
    """A presigned-URL task, and the client's PUT of `data` to it: (task id, object key)."""
    created = client.post(
        "/v1/tasks",
        json={"filename": filename, "content_type": "audio/wav", "size_bytes": len(data)},
    )
    assert created.status_code == 201, created.text
    task, target = created.json(), created.json()["upload"]
    put = httpx.request(target["method"], target["url"], headers=target["headers"], content=data)
    assert put.status_code == 200, put.text
    key = unquote(urlsplit(target["url"]).path.split("/", 2)[2])  # path-style: /bucket/key
    return task["id"], key


def object_created(bucket: str, key: str, size: int) -> dict[str, Any]:
    """An EventBridge "Object Created" event, as S3 sends it for a PUT."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": uuid.uuid4().hex, "sequencer": "0"},
            "request-id": uuid.uuid4().hex,
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def from_queue(*events: dict[str, Any]) -> dict[str, Any]:
    """What the function receives in AWS: an SQS batch from the upload-events queue, each
    message's body one EventBridge event."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex,
                "body": json.dumps(event),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:aipp-upload-events",
                "awsRegion": "us-east-1",
            }
            for event in events
        ]
    }


def wait_state(
    client: httpx.Client, task_id: str, states: set[str], seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        task = client.get(f"/v1/tasks/{task_id}").json()
        if task.get("state") in states:
            return task
        time.sleep(1)
    raise AssertionError(f"task {task_id} still {task.get('state')} after {seconds}s: {task}")


def test_upload_lambda_rejects_what_is_not_audio(
    client: httpx.Client, aws: AwsNames, runtime_api: RuntimeApi, upload_lambda: str
) -> None:
    data = b"MZ" + bytes(4094)  # an executable's magic, declared as audio/wav
    task_id, key = upload(client, data, "not-really.wav")
    kind, answer = runtime_api.invoke(from_queue(object_created(aws.bucket, key, len(data))))
    assert kind == "response", f"{answer}\n{podman.logs(upload_lambda)}"
    assert answer == {
        "objects": [{"key": key, "outcome": "rejected:not_audio"}],
        "batchItemFailures": [],
    }
    task = wait_state(client, task_id, {"failed"}, 5)
    assert task["error"]["code"] == "not_audio"


def test_an_upload_goes_through_lambda_and_worker_to_a_result(
    client: httpx.Client, aws: AwsNames, runtime_api: RuntimeApi, upload_lambda: str, worker: str
) -> None:
    data = SAMPLE.read_bytes()
    task_id, key = upload(client, data, "demo.wav")
    event = object_created(aws.bucket, key, len(data))
    kind, answer = runtime_api.invoke(from_queue(event))
    assert kind == "response", f"{answer}\n{podman.logs(upload_lambda)}"
    assert answer == {"objects": [{"key": key, "outcome": "queued"}], "batchItemFailures": []}

    # A second delivery of the same event changes nothing (SQS and EventBridge are at-least-once).
    assert runtime_api.invoke(from_queue(event))[1] == {
        "objects": [{"key": key, "outcome": "duplicate"}],
        "batchItemFailures": [],
    }

    task = wait_state(client, task_id, {"completed", "failed"}, 240)
    assert task["state"] == "completed", f"{task}\n{podman.logs(worker)}"
    result = client.get(f"/v1/tasks/{task_id}/result").json()
    assert result["transcript"].strip() and result["summary"].strip()
