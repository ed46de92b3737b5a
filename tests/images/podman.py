"""Running the built images with podman the way Fargate runs them.

Every container here runs as the image's user (uid 10001), on a read-only root file system,
with all capabilities dropped and no privilege escalation. /tmp is NOT mounted by the test: a
writable /tmp exists only because the image declares `VOLUME /tmp`, for which podman creates a
fresh volume populated from the image, as ECS does for the task's scratch volume. Containers use
the host's network, so they reach the local PostgreSQL, Redis and moto server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

PREFIX = os.environ.get("IMAGES_PREFIX", "localhost/aipp-")
TARGETS = ("api", "worker", "upload-lambda")
UID = 10001

FARGATE_LIKE = (
    "--read-only",
    "--read-only-tmpfs=false",  # podman would otherwise mount tmpfs on /tmp; Fargate has none
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)


def _tmp(target: str) -> list[str]:
    """Lambda, unlike Fargate, gives every function a writable /tmp of its own."""
    return ["--tmpfs=/tmp:rw,mode=1777"] if target == "upload-lambda" else []


def image(target: str) -> str:
    return f"{PREFIX}{target}"


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}"
        )
    return proc


def inspect(target: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(podman("image", "inspect", image(target)).stdout)
    return data[0]


def _limits() -> list[str]:
    """Explicit file and process limits: podman's defaults (the host's maximum) are more than an
    unprivileged sandbox may set, and runc then refuses to start the container."""

    def capped(kind: int, top: int) -> int:
        hard = resource.getrlimit(kind)[1]
        return top if hard == resource.RLIM_INFINITY else min(hard, top)

    nofile, nproc = capped(resource.RLIMIT_NOFILE, 65536), capped(resource.RLIMIT_NPROC, 4096)
    return [f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"]


def _env_args(env: Mapping[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]


def run_once(
    target: str,
    command: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    entrypoint: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """One command in a fresh container of `target`, Fargate-like, removed afterwards."""
    args = ["run", "--rm", "--network=host", *FARGATE_LIKE, *_tmp(target), *_limits()]
    args.append("--health-interval=disable")
    if entrypoint is not None:
        args.append(f"--entrypoint={entrypoint}")
    return podman(
        *args, *_env_args(env or {}), image(target), *command, timeout=timeout, check=False
    )


@contextmanager
def container(
    target: str,
    env: Mapping[str, str],
    *,
    command: Sequence[str] = (),
    entrypoint: str | None = None,
    image_name: str | None = None,
) -> Iterator[str]:
    """A detached container of `target`; yields its name; removed (with its volumes) at the end.
    `--health-interval=disable`: no systemd timer here; `healthcheck()` runs the check on demand."""
    name = f"aipp-smoke-{target}-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", f"--name={name}", "--network=host", *FARGATE_LIKE, *_tmp(target)]
    args += _limits()
    args += ["--health-interval=disable", *_env_args(env)]
    if entrypoint is not None:
        args.append(f"--entrypoint={entrypoint}")
    podman(*args, image_name or image(target), *command)
    try:
        yield name
    finally:
        podman("rm", "--force", "--volumes", "--time=10", name, timeout=60, check=False)


def logs(name: str) -> str:
    proc = podman("logs", name, check=False)
    return (proc.stdout + proc.stderr)[-4000:]


def running(name: str) -> bool:
    state = podman("inspect", "--format", "{{.State.Running}}", name, check=False)
    return state.stdout.strip() == "true"


def healthcheck(name: str) -> subprocess.CompletedProcess[str]:
    """The image's own HEALTHCHECK command, run inside the container as its user."""
    return podman("healthcheck", "run", name, check=False, timeout=60)


def wait_healthy(name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        if not running(name):
            raise AssertionError(f"{name} exited:\n{logs(name)}")
        last = healthcheck(name)
        if last.returncode == 0:
            return
        time.sleep(1)
    detail = f"{last.stdout}{last.stderr}" if last else ""
    raise AssertionError(f"{name} not healthy after {seconds}s ({detail.strip()}):\n{logs(name)}")
