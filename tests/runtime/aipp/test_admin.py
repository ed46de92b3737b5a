"""The one-off admin commands, run as the stacks run them: `python -m aipp.admin ...`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aipp.core.config import Settings
from aipp.core.db import Database, create_pool
from aipp.core.migrate import current_revision

from ..conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[3]


def admin(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aipp.admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
            "AIPP_REDIS_URL": REDIS_URL,
            **env,
        },
    )


def test_migrate_then_create_a_key_printed_last(empty_database: str) -> None:
    first = admin("migrate", AIPP_DATABASE_URL=empty_database)
    assert first.returncode == 0, first.stderr
    assert current_revision(empty_database) is not None
    again = admin("migrate", AIPP_DATABASE_URL=empty_database)
    assert again.returncode == 0, again.stderr

    created = admin("create-api-key", "--tenant", "acme", AIPP_DATABASE_URL=empty_database)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("aipp_")
    assert len(key) > 40

    async def tenant_of(key: str) -> str | None:
        db = Database(await create_pool(Settings(database_url=empty_database)))
        try:
            principal = await db.principal_for_key(key)
            if principal is None:
                return None
            name: str | None = await db.pool.fetchval(
                "SELECT name FROM tenants WHERE id = $1", principal.tenant_id
            )
            return name
        finally:
            await db.close()

    assert asyncio.run(tenant_of(key)) == "acme"


def test_bad_environment_fails_with_a_clear_message() -> None:
    result = admin("migrate", AIPP_MAX_UPLOAD_BYTES="lots")
    assert result.returncode == 2
    assert "AIPP_MAX_UPLOAD_BYTES" in result.stderr
    assert "Traceback" not in result.stderr
