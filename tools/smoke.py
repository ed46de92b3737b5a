"""Send one real task through a deployed environment's API; fail when it does not complete.

`python -m tools.smoke --url https://api.example.com --api-key-secret aipp/prod/smoke-api-key`

What the delivery pipeline runs after each deploy (stacks/delivery.py), and what an operator can
run by hand. In order:

1. With `--release`, wait until the API answers `/healthz` with that release on every one of
   `--release-streak` answers in a row: the release has all of the traffic (phases 2-3: the Argo
   canary reached 100%; an aborted canary sends traffic back to the stable release and the wait
   fails at `--release-timeout`).
2. `/readyz`: the API reaches the database, Redis, S3 and the queue.
3. `POST /v1/tasks` for a spoken sample, `PUT` it to the presigned URL (so the upload check,
   the queue and both worker steps all take part), and poll the task until it is `completed`
   within `--timeout` seconds, then read its result: a transcript and a summary.
4. `DELETE` the task (its audio and row), so smoke runs leave nothing behind.

The API key belongs to the smoke tenant (docs/operations.md#the-smoke-tenant) and is read from
Secrets Manager (`--api-key-secret`: a name or ARN; the secret string is the key, or JSON with
an `api_key` field) or from the `SMOKE_API_KEY` environment variable.

Exit status: 0 the task completed; 1 it did not (one line says which step and why); 2 bad input
(no key, an unreadable secret, a missing sample).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "worker_images" / "samples" / "demo.wav"


class SmokeFailed(RuntimeError):
    """The environment did not do what it must: one line."""


class BadInput(ValueError):
    """The smoke run cannot start: one line."""


def api_key_from_secret(secret_id: str) -> str:
    """The key in a Secrets Manager secret: the whole string, or its JSON `api_key`."""
    import boto3  # noqa: PLC0415 - only when a secret is named
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except (BotoCoreError, ClientError) as exc:
        raise BadInput(f"cannot read the smoke API key from secret {secret_id}: {exc}") from None
    text = str(value.get("SecretString") or "").strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("api_key") or "")
        except ValueError:
            raise BadInput(f"secret {secret_id} holds JSON without a string `api_key`") from None
    if not text:
        raise BadInput(f"secret {secret_id} holds no API key")
    return text


@dataclass
class Progress:
    """When each state was first seen, in monotonic seconds."""

    started: float
    seen: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, float]]:
        """(step, seconds) from the upload to completion, for what was seen."""
        order = ["awaiting_upload", "queued", "transcribing", "summarizing", "completed"]
        marks = [("created", self.started)] + [(s, self.seen[s]) for s in order if s in self.seen]
        return [(f"{a} -> {b}", tb - ta) for (a, ta), (b, tb) in itertools.pairwise(marks)]


def wait_for_release(
    client: httpx.Client, release: str, *, streak: int, timeout: float, every: float = 1.0
) -> int:
    """Block until `streak` `/healthz` answers in a row report `release`; the answers needed."""
    deadline = time.monotonic() + timeout
    run, answers, last = 0, 0, ""
    while run < streak:
        if time.monotonic() > deadline:
            raise SmokeFailed(
                f"release {release} did not take all of the API's traffic within {timeout:.0f} s "
                f"(last answer: {last or 'none'}); on EKS the canary was probably aborted: "
                "kubectl argo rollouts get rollout api -n aipp"
            )
        try:
            answer = client.get("/healthz")
            last = str(answer.json().get("release", "")) if answer.status_code == 200 else ""
            last = last or f"HTTP {answer.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            last = type(exc).__name__
        answers += 1
        run = run + 1 if last == release else 0
        if run < streak:
            time.sleep(every)
    return answers


def check_ready(client: httpx.Client) -> None:
    answer = client.get("/readyz")
    if answer.status_code != 200:
        raise SmokeFailed(f"/readyz answered {answer.status_code}: {answer.text[:300]}")


def submit(client: httpx.Client, audio: bytes, filename: str) -> str:
    """Create a task for a presigned upload and upload the audio; the task id."""
    created = client.post(
        "/v1/tasks",
        json={"filename": filename, "content_type": "audio/wav", "size_bytes": len(audio)},
    )
    if created.status_code != 201:
        raise SmokeFailed(f"POST /v1/tasks answered {created.status_code}: {created.text[:300]}")
    body = created.json()
    upload = body["upload"]
    put = httpx.request(
        upload["method"], upload["url"], content=audio, headers=upload["headers"], timeout=60
    )
    if put.status_code >= 300:
        raise SmokeFailed(f"the presigned upload answered {put.status_code}: {put.text[:300]}")
    return str(body["id"])


def wait_until_done(
    client: httpx.Client,
    task_id: str,
    progress: Progress,
    *,
    timeout: float,
    every: float = 1.0,
    on_state: Callable[[str], None] = lambda state: None,
) -> dict[str, Any]:
    """Poll the task until `completed`; its result. Failure or the deadline raise."""
    deadline = progress.started + timeout
    state = ""
    while True:
        answer = client.get(f"/v1/tasks/{task_id}")
        if answer.status_code != 200:
            raise SmokeFailed(f"GET /v1/tasks/{task_id} answered {answer.status_code}")
        view = answer.json()
        if view["state"] != state:
            state = view["state"]
            progress.seen.setdefault(state, time.monotonic())
            on_state(state)
        if state == "failed":
            raise SmokeFailed(f"task {task_id} failed: {json.dumps(view.get('error'))}")
        if state == "completed":
            break
        if time.monotonic() > deadline:
            raise SmokeFailed(
                f"task {task_id} still {state} after {timeout:.0f} s (workers scale from zero: "
                "look at the queue age and the worker service or pods)"
            )
        time.sleep(every)
    result = client.get(f"/v1/tasks/{task_id}/result")
    if result.status_code != 200:
        raise SmokeFailed(f"GET /v1/tasks/{task_id}/result answered {result.status_code}")
    body: dict[str, Any] = result.json()
    if not str(body.get("transcript", "")).strip() or not str(body.get("summary", "")).strip():
        raise SmokeFailed(f"task {task_id} completed with an empty transcript or summary")
    return body


def delete(client: httpx.Client, task_id: str) -> None:
    answer = client.delete(f"/v1/tasks/{task_id}")
    if answer.status_code not in (200, 202, 204):
        raise SmokeFailed(f"DELETE /v1/tasks/{task_id} answered {answer.status_code}")


def run(args: argparse.Namespace, key: str, say: Callable[[str], None]) -> None:
    audio = args.sample.read_bytes()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=30) as client:
        if args.release:
            answers = wait_for_release(
                client, args.release, streak=args.release_streak, timeout=args.release_timeout
            )
            say(f"release {args.release} answers every request ({answers} /healthz answers)")
        check_ready(client)
        say("ready: database, Redis, S3 and the queue answer")
        progress = Progress(started=time.monotonic())
        task_id = submit(client, audio, args.sample.name)
        say(f"task {task_id} created and its audio uploaded ({len(audio) // 1024} KiB)")
        result = wait_until_done(
            client,
            task_id,
            progress,
            timeout=args.timeout,
            every=args.poll,
            on_state=lambda state: say(f"  {state}"),
        )
        for step, seconds in progress.rows():
            say(f"  {step:<28} {seconds:7.1f} s")
        say(f"transcript: {result['transcript'][:120]!r}")
        delete(client, task_id)
        say(f"task {task_id} deleted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the API's base URL")
    parser.add_argument("--api-key-secret", help="Secrets Manager name or ARN of the smoke key")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the task")
    parser.add_argument("--poll", type=float, default=2, help="seconds between task reads")
    parser.add_argument("--release", help="wait until /healthz reports this release")
    parser.add_argument("--release-timeout", type=float, default=1800, help="seconds")
    parser.add_argument("--release-streak", type=int, default=20, help="answers in a row")
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="a WAV file to send")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"smoke: {line}", flush=True)

    try:
        if not args.sample.is_file():
            raise BadInput(f"no sample at {args.sample}")
        key = (
            api_key_from_secret(args.api_key_secret)
            if args.api_key_secret
            else os.environ.get("SMOKE_API_KEY", "")
        )
        if not key:
            raise BadInput("no API key: pass --api-key-secret or set SMOKE_API_KEY")
        run(args, key, say)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SmokeFailed, httpx.HTTPError) as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    say(f"PASSED against {args.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
