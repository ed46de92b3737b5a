"""`make demo`: a short spoken sample through the real task API and worker, with timings.

Uses the stack that `make dev` runs on http://127.0.0.1:8000 when it is up; otherwise starts
it (moto, API, worker with the local providers) for the demo and stops it afterwards. The sample
is spoken by espeak-ng when it is installed, else the WAV shipped in worker_images/samples/.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tools.smoke import Progress, SmokeFailed, wait_until_done

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "worker_images" / "samples" / "demo.wav"
API = os.environ.get("DEMO_API", "http://127.0.0.1:8000")
TEXT = "The weather today is sunny and warm. We will meet at the office tomorrow morning."


def api_up() -> bool:
    try:
        return httpx.get(f"{API}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_stack(log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WITH_WORKER": "1", "PY": sys.executable}
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own script
            [shutil.which("bash") or "/bin/bash", str(ROOT / "worker_images" / "dev-api.sh")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while not api_up():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise SystemExit("the local stack did not start (its output is above)")
        time.sleep(0.3)
    return proc


def sample() -> tuple[bytes, str]:
    espeak = shutil.which("espeak-ng")
    if espeak:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo.wav"
            subprocess.run(  # noqa: S603 - fixed arguments
                [espeak, "-v", "en-us", "-s", "140", "-w", str(path), TEXT], check=True
            )
            return path.read_bytes(), "spoken now by espeak-ng"
    return SAMPLE.read_bytes(), f"shipped sample {SAMPLE.relative_to(ROOT)}"


def api_key() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "aipp.admin", "create-api-key", "--tenant", "demo"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}"},
    )
    return out.stdout.strip().splitlines()[-1]


def run() -> None:
    audio, origin = sample()
    print(f"sample: {origin} ({len(audio) // 1024} KiB): {TEXT!r}")
    headers = {"Authorization": f"Bearer {api_key()}"}
    with httpx.Client(base_url=API, headers=headers, timeout=30) as client:
        progress = Progress(started=time.monotonic())
        created = client.post("/v1/tasks", files={"file": ("demo.wav", audio, "audio/wav")})
        created.raise_for_status()
        task_id = created.json()["id"]
        progress.seen["queued"] = time.monotonic()
        try:
            result = wait_until_done(client, task_id, progress, timeout=300, every=0.05)
        except SmokeFailed as exc:
            raise SystemExit(str(exc)) from None
    start, seen = progress.started, progress.seen
    done = seen["completed"]
    transcribing = seen.get("transcribing", seen["queued"])
    summarizing = seen.get("summarizing", done)
    rows = [
        ("upload (POST /v1/tasks, multipart)", seen["queued"] - start),
        ("queued, waiting for a worker", transcribing - seen["queued"]),
        ("transcribing (speech to text)", summarizing - transcribing),
        ("summarizing", done - summarizing),
        ("total", done - start),
    ]
    print(f"task {task_id}")
    for name, seconds in rows:
        print(f"  {name:<38} {seconds:6.2f} s")
    print(f"transcript: {result['transcript']}")
    print(f"summary:    {result['summary']}")


def main() -> None:
    stack = None
    if not api_up():
        log = Path(tempfile.gettempdir()) / "aipp-demo-stack.log"
        print(f"==> starting the local stack for the demo (output in {log})")
        stack = start_stack(log)
    try:
        run()
    finally:
        if stack is not None:
            os.killpg(stack.pid, signal.SIGINT)
            try:
                stack.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
