"""One-off operations: `python -m aipp.admin migrate | create-api-key --tenant NAME | ...`.

The stacks run `migrate` at deploy time (ECS task / Kubernetes Job), never the API on import.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from aipp.core.aws import resolve_db_secret, s3_client, sqs_client
from aipp.core.config import Settings, SettingsError, load_settings
from aipp.core.db import Database, create_pool
from aipp.core.migrate import upgrade


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))


async def _create_database_if_missing(dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    admin_dsn = urlunsplit(urlsplit(dsn)._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")
    finally:
        await conn.close()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    dsn = resolve_db_secret(settings).database_dsn()  # one short run: the secret's value now
    if args.create_database:
        asyncio.run(_create_database_if_missing(dsn))
    print(f"applying migrations to {_redacted(dsn)}")
    upgrade(dsn)
    print("database schema is up to date")
    return 0


async def _create_key(settings: Settings, tenant: str) -> tuple[str, str, str]:
    pool = await create_pool(settings)
    db = Database(pool)
    try:
        tenant_id = await db.ensure_tenant(tenant)
        key_id, key = await db.create_api_key(tenant_id)
    finally:
        await db.close()
    return str(tenant_id), str(key_id), key


def cmd_create_api_key(settings: Settings, args: argparse.Namespace) -> int:
    tenant = args.tenant.strip()
    if not tenant or len(tenant) > 100:
        print("error: --tenant must be 1 to 100 characters", file=sys.stderr)
        return 2
    tenant_id, key_id, key = asyncio.run(_create_key(settings, tenant))
    print(f"tenant {tenant} ({tenant_id}), key id {key_id}")
    print("the key is shown once; store it now:")
    print(key)
    return 0


def cmd_init_local_aws(settings: Settings, _: argparse.Namespace) -> int:
    """Create the bucket and the queues on moto's server (refuses without AWS_ENDPOINT_URL)."""
    if not settings.aws_endpoint_url:
        print("error: init-local-aws only runs against AWS_ENDPOINT_URL (moto)", file=sys.stderr)
        return 2
    s3 = s3_client(settings)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", []) if "Name" in b}
    if settings.audio_bucket not in existing:
        s3.create_bucket(Bucket=settings.audio_bucket)
    sqs = sqs_client(settings)
    for url in sorted({settings.stt_queue_url, settings.llm_queue_url}):
        sqs.create_queue(QueueName=url.rstrip("/").rsplit("/", 1)[-1])
    print(f"bucket {settings.audio_bucket} and queues ready at {settings.aws_endpoint_url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aipp.admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="apply the database migrations (idempotent)")
    migrate.add_argument(
        "--create-database", action="store_true", help="create the database first (local dev)"
    )
    migrate.set_defaults(func=cmd_migrate)
    key = sub.add_parser("create-api-key", help="create a tenant's API key; printed once, last")
    key.add_argument("--tenant", required=True, help="tenant name (created if new)")
    key.set_defaults(func=cmd_create_api_key)
    init = sub.add_parser("init-local-aws", help="create the bucket and queues on moto")
    init.set_defaults(func=cmd_init_local_aws)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc.code, file=sys.stderr)
        return 2
    code: int = args.func(settings, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
