"""The delivery pipeline's smoke client (`python -m tools.smoke`) against what `make dev` runs:
the API, a worker with the local providers and the S3-events stand-in, on real PostgreSQL and
Redis and moto's server; its API key read from Secrets Manager (moto's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aipp.core.config import Settings

from tests.runtime.aipp.worker.conftest import ROOT, dev_stack, make_queues, worker_env
from tests.runtime.conftest import AwsNames, aws_client, free_port, wait_listening

RELEASE = "3f2a9c"


def smoke(aws: AwsNames, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    env.pop("SMOKE_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "tools.smoke", "--poll", "0.3", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def smoke_secret(settings: Settings, aws: AwsNames) -> str:
    """A key of the smoke tenant (`aipp.admin create-api-key`), stored as the docs say."""
    created = subprocess.run(
        [sys.executable, "-m", "aipp.admin", "create-api-key", "--tenant", "smoke"],
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
            "AIPP_DATABASE_URL": settings.database_dsn(),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    name = f"aipp/staging/smoke-api-key-{uuid.uuid4().hex[:6]}"
    aws_client(aws.endpoint, "secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"api_key": key})
    )
    return name


@pytest.fixture(scope="module")
def dev_url(
    settings: Settings, aws: AwsNames, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("dev") / "dev.log"
    with dev_stack(settings, aws, log, app_release=RELEASE) as url:
        yield url


def test_a_task_goes_through_and_the_release_is_seen(
    aws: AwsNames, smoke_secret: str, dev_url: str
) -> None:
    result = smoke(
        aws, "--url", dev_url, "--api-key-secret", smoke_secret, "--release", RELEASE,
        "--release-streak", "3", "--timeout", "120",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"smoke: release {RELEASE} answers every request (3 /healthz answers)"
    assert "smoke: ready: database, Redis, S3 and the queue answer" in lines
    states = [
        line.split()[1] for line in lines if line.startswith("smoke:   ") and " -> " not in line
    ]
    assert states[0] == "awaiting_upload" and states[-1] == "completed", lines
    timings = [line.split()[1:4] for line in lines if " -> " in line]
    assert timings[0][0] == "created" and timings[-1][2] == "completed", lines
    assert lines[-2].startswith("smoke: task ") and lines[-2].endswith(" deleted")
    assert lines[-1] == f"smoke: PASSED against {dev_url}"


def test_an_old_release_fails_the_wait(aws: AwsNames, smoke_secret: str, dev_url: str) -> None:
    """What an aborted canary looks like from outside: the stable release keeps answering."""
    result = smoke(
        aws, "--url", dev_url, "--api-key-secret", smoke_secret, "--release", "new-one",
        "--release-timeout", "2",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(
        "smoke: FAILED: release new-one did not take all of the API's traffic within 2 s "
        f"(last answer: {RELEASE})"
    )


def test_a_task_that_does_not_complete_in_time_fails(
    settings: Settings, aws: AwsNames, smoke_secret: str, tmp_path: Path
) -> None:
    """The API alone, no worker and no upload events: the task never leaves awaiting_upload."""
    port = free_port()
    bucket = f"aipp-alone-{uuid.uuid4().hex[:8]}"  # not one the dev stack's S3 events watch
    aws_client(aws.endpoint, "s3").create_bucket(Bucket=bucket)
    alone = settings.model_copy(update={"audio_bucket": bucket})
    with (tmp_path / "api.log").open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "aipp.api.main:app", "--port", str(port)],
            env=worker_env(alone, make_queues(aws)),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, api)
        url = f"http://127.0.0.1:{port}"
        result = smoke(aws, "--url", url, "--api-key-secret", smoke_secret, "--timeout", "3")
    finally:
        api.terminate()
        api.wait(timeout=15)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "smoke: FAILED: task " in result.stderr
    assert "still awaiting_upload after 3 s" in result.stderr


def test_an_unreadable_secret_is_one_line(aws: AwsNames) -> None:
    result = smoke(aws, "--url", "http://127.0.0.1:9", "--api-key-secret", "aipp/nowhere")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: cannot read the smoke API key from secret aipp/nowhere: "
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_key_at_all_is_one_line(aws: AwsNames) -> None:
    result = smoke(aws, "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr == "error: no API key: pass --api-key-secret or set SMOKE_API_KEY\n"
