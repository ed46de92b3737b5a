"""Apply the versioned migrations (alembic) — only ever from the admin command, never on import.

With an application secret (AIPP_DB_APP_SECRET_ARN), `prepare_roles` and `grant_app` set up least
privilege around the migration, connected as the RDS master user:

- a NOLOGIN migration role (AIPP_DB_MIGRATION_ROLE) owns the schema's objects; alembic runs under it
  (`SET ROLE`), and objects created earlier by anyone else (the master user, before this
  existed) are handed to it;
- the application login role (username and password from the secret) may only read and write
  rows: SELECT, INSERT, UPDATE, DELETE on the tables, USAGE on the sequences, the same by default
  on every table the migration role creates later, nothing on alembic's bookkeeping, and no
  CREATE anywhere. The API, the workers and the upload Lambda log in as that role.

Every statement is idempotent, so a migration can be re-run after any failure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SCHEMA = "public"


def alembic_config(dsn: str, *, role: str | None = None, ssl: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", dsn.replace("%", "%%"))
    config.attributes["role"] = role
    config.attributes["ssl"] = ssl
    return config


def upgrade(dsn: str, revision: str = "head", *, role: str | None = None, ssl: Any = None) -> None:
    """Upgrade to `revision`; under `role` (SET ROLE) when given, over TLS per `ssl`."""
    command.upgrade(alembic_config(dsn, role=role, ssl=ssl), revision)


def current_revision(dsn: str) -> str | None:
    """The applied revision (for tests and `admin migrate --check`)."""

    async def read() -> str | None:
        conn = await asyncpg.connect(dsn)
        try:
            exists = await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL")
            if not exists:
                return None
            value: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
            return value
        finally:
            await conn.close()

    return asyncio.run(read())


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _role_exists(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name))


async def prepare_roles(
    conn: asyncpg.Connection, *, migration_role: str, app_user: str, app_password: str
) -> None:
    """As the master user: the migration role owning the schema's objects, the app login role."""
    me: str = await conn.fetchval("SELECT current_user")
    if app_user in {me, migration_role}:
        raise ValueError(f"the application user must differ from {me!r} and {migration_role!r}")
    database: str = await conn.fetchval("SELECT current_database()")
    mig, app, db = _ident(migration_role), _ident(app_user), _ident(database)
    if not await _role_exists(conn, migration_role):
        await conn.execute(f"CREATE ROLE {mig} NOLOGIN")
    await conn.execute(f"ALTER ROLE {mig} NOLOGIN")
    member = await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", migration_role)
    if not member:
        await conn.execute(f"GRANT {mig} TO {_ident(me)}")  # to SET ROLE and hand objects over
    await conn.execute(f"GRANT CONNECT ON DATABASE {db} TO {mig}")
    await conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO {mig}")
    await conn.execute(f"REVOKE CREATE ON SCHEMA {SCHEMA} FROM PUBLIC")
    owned = await conn.fetch(
        "SELECT c.relname, c.relkind::text AS relkind FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        " AND pg_get_userbyid(c.relowner) <> $2"
        " AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d"
        "   WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))",
        SCHEMA,
        migration_role,
    )
    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
    for row in owned:
        name = f"{SCHEMA}.{_ident(row['relname'])}"
        await conn.execute(f"ALTER {kinds[row['relkind']]} {name} OWNER TO {mig}")
    # The password goes through format(%L), never into a logged statement text of ours.
    verb = "ALTER" if await _role_exists(conn, app_user) else "CREATE"
    template = f"{verb} ROLE %I WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD %L"
    statement: str = await conn.fetchval(
        "SELECT format($1::text, $2::text, $3::text)",
        template,
        app_user,
        app_password,
    )
    await conn.execute(statement)
    await conn.execute(f"GRANT CONNECT ON DATABASE {db} TO {app}")
    await conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {app}")


async def grant_app(conn: asyncpg.Connection, *, migration_role: str, app_user: str) -> None:
    """After the upgrade: row access (DML only) for the app role, now and for future tables."""
    mig, app = _ident(migration_role), _ident(app_user)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {mig}")
        await conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SCHEMA} TO {app}"
        )
        await conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {app}")
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {mig} IN SCHEMA {SCHEMA}"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}"
        )
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {mig} IN SCHEMA {SCHEMA}"
            f" GRANT USAGE ON SEQUENCES TO {app}"
        )
        await conn.execute(f"REVOKE ALL ON {SCHEMA}.alembic_version FROM {app}")
