"""Database credentials from AIPP_DB_SECRET_ARN survive a single-user rotation, without a restart.

The shared test server trusts every local login, so passwords are never checked there. These
tests run their own PostgreSQL (the same binaries, a throwaway data directory, SCRAM password
authentication on 127.0.0.1), keep the RDS-shaped secret in moto's Secrets Manager and rotate
the way Secrets Manager does: `ALTER ROLE ... PASSWORD`, then the secret's new value.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from aipp.core.aws import db_secret_string
from aipp.core.config import Settings
from aipp.core.db import Credentials, Database, create_pool
from aipp.core.models import TaskState

from tests.runtime.conftest import (
    ON_SESSION_LOOP,
    AwsNames,
    aws_client,
    free_port,
    make_settings,
    new_key,
    wait_postgres_accepting,
)
from tests.runtime.conftest import running_app as running_api

from .conftest import (
    Procs,
    eventually,
    make_queues,
    queued_tasks,
    send_stt,
    stt_message,
    worker_env,
)

pytestmark = ON_SESSION_LOOP

ROOT = Path(__file__).resolve().parents[4]
APP_ROLE = "aipp_app"
SUPERUSER_PASSWORD = "admin-password"


def _postgres_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return Path(out)
    except (OSError, subprocess.CalledProcessError):
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if candidates:
            return candidates[-1].parent
    raise RuntimeError("PostgreSQL server binaries (initdb, postgres) are needed for this test")


@dataclass
class PrivatePostgres:
    port: int

    def dsn(self, user: str, password: str, database: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def admin_dsn(self) -> str:
        return self.dsn("postgres", SUPERUSER_PASSWORD, "postgres")


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of our own that checks passwords (SCRAM), on a free port."""
    bindir = _postgres_bin()
    # initdb refuses to run as root: the server then runs as the `postgres` account.
    run_as = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="aipp-pg-"))
    pwfile = base / "pw"
    pwfile.write_text(SUPERUSER_PASSWORD)
    if run_as:
        account = pwd.getpwnam(run_as)
        for path in (base, pwfile):
            os.chown(path, account.pw_uid, account.pw_gid)
    data = base / "data"
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
        user=run_as,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            "",
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=run_as,
    )
    try:
        wait_postgres_accepting(bindir, port, server, 30)
        yield PrivatePostgres(port=port)
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Role:
    """The application's login role and its RDS-shaped secret in moto's Secrets Manager."""

    pg: PrivatePostgres
    endpoint: str
    secret_arn: str
    password: str

    def secret_value(self, password: str) -> str:
        return json.dumps(
            {
                "engine": "postgres",
                "host": "127.0.0.1",
                "port": self.pg.port,
                "dbname": "aipp",
                "username": APP_ROLE,
                "password": password,
            }
        )

    async def rotate(self, *, update_secret: bool = True) -> str:
        """Single-user rotation: the password changes in the database, then in the secret."""
        new = f"pw-{uuid.uuid4().hex}"
        conn = await asyncpg.connect(self.pg.admin_dsn())
        try:
            await conn.execute(f"ALTER ROLE {APP_ROLE} PASSWORD '{new}'")
        finally:
            await conn.close()
        self.password = new
        if update_secret:
            self.publish()
        return new

    def publish(self) -> None:
        """Make the role's current password the secret's AWSCURRENT value."""
        aws_client(self.endpoint, "secretsmanager").put_secret_value(
            SecretId=self.secret_arn, SecretString=self.secret_value(self.password)
        )

    def dsn(self, password: str | None = None) -> str:
        return self.pg.dsn(APP_ROLE, password or self.password, "aipp")


def _admin(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIPP_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "aipp.admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}", **env},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def role(private_postgres: PrivatePostgres, aws: AwsNames) -> AsyncIterator[Role]:
    """`aipp_app` owns database `aipp`, migrated by `admin migrate` with only AIPP_DB_SECRET_ARN."""
    password = f"pw-{uuid.uuid4().hex}"
    conn = await asyncpg.connect(private_postgres.admin_dsn())
    try:
        await conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{password}'")
        await conn.execute(f"CREATE DATABASE aipp OWNER {APP_ROLE}")
    finally:
        await conn.close()
    secret = aws_client(aws.endpoint, "secretsmanager").create_secret(
        Name=f"aipp-db-{uuid.uuid4().hex[:8]}", SecretString="{}"
    )
    found = Role(private_postgres, aws.endpoint, secret["ARN"], password)
    found.publish()
    migrated = _admin(
        "migrate",
        AIPP_DB_SECRET_ARN=found.secret_arn,
        AWS_ENDPOINT_URL=aws.endpoint,
        AWS_REGION="us-east-1",
    )
    assert migrated.returncode == 0, migrated.stderr
    yield found


@pytest.fixture(scope="module")
def secret_settings(role: Role, aws: AwsNames) -> Settings:
    """No AIPP_DATABASE_URL and no AIPP_DB_*: only AIPP_DB_SECRET_ARN, as the stacks configure the containers."""
    settings = make_settings("unused", aws, db_secret_arn=role.secret_arn)
    return settings.model_copy(update={"database_url": None})


async def _refused(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidPasswordError:
        return True
    await conn.close()
    return False


async def test_api_keeps_working_after_the_password_is_rotated(
    role: Role, secret_settings: Settings
) -> None:
    async with running_api(secret_settings) as (app, client):
        db: Database = app.state.services.db
        auth = await new_key(db)
        assert (await client.get("/v1/tasks", headers=auth)).status_code == 200

        old = role.password
        await role.rotate()
        assert await _refused(role.dsn(old))  # the old password really is gone
        # Connections opened before the rotation stay logged in; the pool replaces them over
        # time (max_inactive_connection_lifetime, dropped connections). Now, at once:
        await db.pool.expire_connections()

        listed = await client.get("/v1/tasks", headers=auth)
        assert listed.status_code == 200, listed.text
        created = await client.post(
            "/v1/tasks",
            headers=auth,
            json={"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 100},
        )
        assert created.status_code == 201, created.text
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text


async def test_credentials_refused_twice_make_the_database_unavailable_until_fixed(
    role: Role, secret_settings: Settings
) -> None:
    settings = secret_settings.model_copy(update={"db_secret_reread_seconds": 0.0})
    async with running_api(settings) as (app, client):
        db: Database = app.state.services.db
        auth = await new_key(db)
        # The password changes but the secret does not (a rotation stuck before `finishSecret`).
        await role.rotate(update_secret=False)
        await db.pool.expire_connections()

        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {
            "database": "unavailable",
            "redis": "ok",
            "s3": "ok",
            "queue": "ok",
        }
        listed = await client.get("/v1/tasks", headers=auth)
        assert listed.status_code == 503
        assert listed.json()["error"]["code"] == "dependency_unavailable"
        assert "database" in listed.json()["error"]["message"]

        role.publish()  # the rotation completes
        assert (await client.get("/v1/tasks", headers=auth)).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_refusals_share_one_reread_and_an_unchanged_secret_is_not_reread_at_once(
    role: Role, secret_settings: Settings
) -> None:
    reads = 0

    async def read() -> str:
        nonlocal reads
        reads += 1
        return await asyncio.to_thread(db_secret_string, secret_settings)

    credentials = Credentials(secret_settings, read_secret=read, reread_seconds=3600)
    pool = await create_pool(secret_settings, credentials=credentials)
    try:
        assert await pool.fetchval("SELECT 1") == 1
        assert reads == 1

        await role.rotate()
        await pool.expire_connections()
        # Several new connections are refused at once: one re-read serves them all.
        await asyncio.gather(*(pool.fetchval("SELECT pg_sleep(0.05)") for _ in range(6)))
        assert reads == 2

        await role.rotate(update_secret=False)
        await pool.expire_connections()
        for _ in range(3):
            with pytest.raises(asyncpg.InvalidPasswordError):
                await pool.fetchval("SELECT 1")
        assert reads == 3  # re-read once, found the same refused value, then waits
    finally:
        role.publish()
        await pool.close()


async def _terminate(role: Role, application_name: str) -> int:
    conn = await asyncpg.connect(role.pg.admin_dsn())
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = $1 AND application_name = $2",
            APP_ROLE,
            application_name,
        )
        return len(rows)
    finally:
        await conn.close()


async def test_worker_keeps_completing_tasks_after_the_password_is_rotated(
    role: Role, secret_settings: Settings, aws: AwsNames, procs: Procs
) -> None:
    queues = make_queues(aws)
    env = worker_env(secret_settings.model_copy(update={"database_url": "unused"}), queues)
    del env["AIPP_DATABASE_URL"]
    env["AIPP_DB_SECRET_ARN"] = role.secret_arn
    worker = procs.worker(env)
    # The test itself looks at the tasks as the superuser, whose password never changes.
    db = Database(
        await create_pool(secret_settings, role.pg.dsn("postgres", SUPERUSER_PASSWORD, "aipp"))
    )

    async def run_one() -> None:
        (task_id,) = await queued_tasks(db, 1)
        task = await db.get_task(task_id)
        assert task is not None
        send_stt(aws.endpoint, queues.url, [stt_message(task.id, task.tenant_id, task.object_key)])

        async def completed() -> bool:
            found = await db.get_task(task_id)
            return found is not None and found.state is TaskState.COMPLETED

        await eventually(f"task {task_id} to complete", completed, 60)

    try:
        await run_one()
        await role.rotate()
        # The worker's connections are dropped (a failover, a recycled connection): every new
        # one must log in with the rotated password.
        assert await _terminate(role, "aipp-worker") >= 1
        await run_one()
        assert worker.popen.poll() is None
        assert any("credentials changed" in line.get("message", "") for line in worker.log_lines())
    finally:
        await db.close()
