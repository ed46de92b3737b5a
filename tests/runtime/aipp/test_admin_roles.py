"""`admin migrate` as the stacks run it: the master secret in AIPP_DB_SECRET_ARN, the application
user's secret in AIPP_DB_APP_SECRET_ARN (both in moto's Secrets Manager), against the real local
PostgreSQL. The services then work with the application role's DML rights alone.

Local PostgreSQL trusts 127.0.0.1, so passwords are not checked here; roles, ownership, LOGIN and
privileges are PostgreSQL's own checks and are."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aipp.core.config import Settings
from aipp.core.db import Database, create_pool

from ..conftest import ADMIN_DSN, REDIS_URL, _admin, _with_database, aws_client
from .test_admin import admin


@pytest.fixture
def fresh() -> Iterator[dict[str, str]]:
    """A new database and unique role names; all dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    names = {
        "db": f"aipp_roles_{suffix}",
        "app": f"aipp_app_{suffix}",
        "mig": f"aipp_mig_{suffix}",
    }
    asyncio.run(_admin(f'CREATE DATABASE "{names["db"]}"'))
    try:
        yield names
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{names["db"]}" WITH (FORCE)'))
        for role in (names["app"], names["mig"]):
            asyncio.run(_admin(f'DROP ROLE IF EXISTS "{role}"'))


def _secret(endpoint: str, value: dict[str, Any]) -> str:
    client = aws_client(endpoint, "secretsmanager")
    return str(
        client.create_secret(Name=f"aipp-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(value))[
            "ARN"
        ]
    )


def _aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AIPP_DATABASE_URL": "",
    }


def _master_secret(endpoint: str, db: str) -> str:
    admin_url = urlsplit(ADMIN_DSN)
    return _secret(
        endpoint,
        {
            "engine": "postgres",
            "host": admin_url.hostname,
            "port": admin_url.port or 5432,
            "dbname": db,
            "username": admin_url.username or "postgres",
            "password": "unused-locally",
        },
    )


async def _as(user: str, db: str) -> asyncpg.Connection:
    dsn = _with_database(ADMIN_DSN, db).replace(f"//{urlsplit(ADMIN_DSN).username}@", f"//{user}@")
    return await asyncpg.connect(dsn)


async def _check_privileges(names: dict[str, str]) -> None:
    owner = await asyncpg.connect(_with_database(ADMIN_DSN, names["db"]))
    try:
        owners = {
            r["tableowner"]
            for r in await owner.fetch("SELECT tableowner FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await owner.close()
    assert owners == {names["mig"]}

    with pytest.raises(asyncpg.exceptions.InvalidAuthorizationSpecificationError):
        await _as(names["mig"], names["db"])  # NOLOGIN

    app = await _as(names["app"], names["db"])
    try:
        tenant = uuid.uuid4()
        await app.execute("INSERT INTO tenants (id, name) VALUES ($1, 'acme')", tenant)
        await app.execute("UPDATE tenants SET name = 'acme2' WHERE id = $1", tenant)
        assert await app.fetchval("SELECT name FROM tenants WHERE id = $1", tenant) == "acme2"
        await app.execute("DELETE FROM tenants WHERE id = $1", tenant)
        for ddl in (
            "CREATE TABLE sneaky (id int)",
            "DROP TABLE tasks",
            "ALTER TABLE tasks ADD COLUMN sneaky int",
            "TRUNCATE tasks",
            "CREATE INDEX sneaky ON tasks (filename)",
            "SELECT * FROM alembic_version",
        ):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await app.execute(ddl)
    finally:
        await app.close()


def test_migrate_makes_a_migration_owner_and_a_dml_only_app_role(
    fresh: dict[str, str], moto_endpoint: str
) -> None:
    # A database migrated the old way, as the master user: its objects must be handed over.
    old = admin("migrate", AIPP_DATABASE_URL=_with_database(ADMIN_DSN, fresh["db"]))
    assert old.returncode == 0, old.stderr
    env = {
        **_aws_env(moto_endpoint),
        "AIPP_DB_SECRET_ARN": _master_secret(moto_endpoint, fresh["db"]),
        "AIPP_DB_APP_SECRET_ARN": _secret(
            moto_endpoint, {"username": fresh["app"], "password": "app-pass-1"}
        ),
        "AIPP_DB_MIGRATION_ROLE": fresh["mig"],
    }
    first = admin("migrate", **env)
    assert first.returncode == 0, first.stderr
    assert "app-pass-1" not in first.stdout + first.stderr
    asyncio.run(_check_privileges(fresh))
    again = admin("migrate", **env)  # safe to re-run
    assert again.returncode == 0, again.stderr
    asyncio.run(_check_privileges(fresh))

    # The services' queries run with DML alone: create a key, a task, list, delete.
    async def as_the_app() -> None:
        app_dsn = _with_database(ADMIN_DSN, fresh["db"]).replace(
            f"//{urlsplit(ADMIN_DSN).username}@", f"//{fresh['app']}@"
        )
        db = Database(await create_pool(Settings(database_url=app_dsn, redis_url=REDIS_URL)))
        try:
            tenant = await db.ensure_tenant("acme")
            key_id, key = await db.create_api_key(tenant)
            assert (await db.principal_for_key(key)) is not None
            assert await db.revoke_api_key(str(key_id))
        finally:
            await db.close()

    asyncio.run(as_the_app())


def test_migrate_failures_are_one_line_and_non_zero(
    fresh: dict[str, str], moto_endpoint: str
) -> None:
    base = {**_aws_env(moto_endpoint), "AIPP_DB_MIGRATION_ROLE": fresh["mig"]}
    no_password = admin(
        "migrate",
        **base,
        AIPP_DB_SECRET_ARN=_master_secret(moto_endpoint, fresh["db"]),
        AIPP_DB_APP_SECRET_ARN=_secret(moto_endpoint, {"username": fresh["app"]}),
    )
    assert no_password.returncode == 1
    assert no_password.stderr.strip().count("\n") == 0
    assert "AIPP_DB_APP_SECRET_ARN" in no_password.stderr and "Traceback" not in no_password.stderr

    missing_secret = admin(
        "migrate",
        **base,
        AIPP_DB_SECRET_ARN="arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-abcdef",
    )
    assert missing_secret.returncode == 1
    assert missing_secret.stderr.strip().count("\n") == 0
    assert "ResourceNotFoundException" in missing_secret.stderr

    unreachable = admin("migrate", AIPP_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: migrate failed:")
    assert unreachable.stderr.strip().count("\n") == 0
