"""Smoke runs of the built images (`make images` builds them, then runs this folder).

`make test` does not build images, so it does not collect these tests: `make images` sets
IMAGES_TESTS=1. Run alone with `make images` or, once built,
`IMAGES_TESTS=1 .venv/bin/pytest tests/images`. A missing image fails the run.

The services are the runtime tests' own: the local PostgreSQL and Redis, and a moto server
(S3, SQS) started for the session; each module gets its own database, bucket and queue.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.images import podman
from tests.runtime.conftest import (
    ADMIN_DSN,
    REDIS_URL,
    AwsNames,
    _admin,
    _with_database,
    aws,
    moto_endpoint,
)

__all__ = ["aws", "moto_endpoint"]  # fixtures shared with the runtime tests

if os.environ.get("IMAGES_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session", autouse=True)
def images_present() -> None:
    missing = [
        t
        for t in podman.TARGETS
        if podman.podman("image", "exists", podman.image(t), check=False).returncode
    ]
    if missing:
        pytest.fail(
            f"images not built: {', '.join(podman.image(t) for t in missing)} (run make images)"
        )


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A new database, created and migrated by the api image (the deploy-time migration task)."""
    name = f"aipp_image_{uuid.uuid4().hex[:12]}"
    url = _with_database(ADMIN_DSN, name)
    try:
        proc = podman.run_once(
            "api",
            ["python", "-m", "aipp.admin", "migrate", "--create-database"],
            {"AIPP_DATABASE_URL": url},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "database schema is up to date" in proc.stdout
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def runtime_env(database_url: str, aws: AwsNames) -> dict[str, str]:
    """What ECS and Lambda would set, pointed at the local services."""
    return {
        "AIPP_DATABASE_URL": database_url,
        "AIPP_REDIS_URL": REDIS_URL,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AIPP_AUDIO_BUCKET": aws.bucket,
        "AIPP_STT_QUEUE_URL": aws.queue_url,
        "AIPP_LLM_QUEUE_URL": aws.queue_url,
        "AIPP_LOG_LEVEL": "INFO",
    }
