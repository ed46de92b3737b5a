"""One-off operations: `python -m aipp.admin migrate | create-api-key --tenant NAME | ...`.

The stacks run `migrate` at deploy time (ECS task / Kubernetes Job), never the API on import.
Every command exits non-zero with one line on stderr naming what went wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from aipp.core.aws import resolve_db_secret, s3_client, secrets_client, sqs_client
from aipp.core.config import Settings, SettingsError, load_settings
from aipp.core.db import ApiKeyInfo, Database, create_pool, ssl_option
from aipp.core.migrate import grant_app, prepare_roles, upgrade
from aipp.core.queue import Queue
from aipp.worker.reconciler import message_for


class CommandError(Exception):
    """A failure to report as one line (no traceback)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))


async def _create_database_if_missing(dsn: str, settings: Settings) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    admin_dsn = urlunsplit(urlsplit(dsn)._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_dsn, ssl=ssl_option(settings))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")
    finally:
        await conn.close()


def _app_credentials(settings: Settings) -> tuple[str, str] | None:
    """(username, password) of the application user, from AIPP_DB_APP_SECRET_ARN."""
    if not settings.db_app_secret_arn:
        return None
    raw = secrets_client(settings).get_secret_value(SecretId=settings.db_app_secret_arn)
    try:
        data = json.loads(raw["SecretString"])
        user, password = data["username"], data["password"]
    except (KeyError, TypeError, ValueError):
        raise CommandError(
            "AIPP_DB_APP_SECRET_ARN is not a JSON secret with `username` and `password`"
        ) from None
    if not isinstance(user, str) or not user or not isinstance(password, str) or not password:
        raise CommandError("AIPP_DB_APP_SECRET_ARN has an empty `username` or `password`")
    return user, password


async def _on_master(dsn: str, settings: Settings, work: str, app: tuple[str, str]) -> None:
    conn = await asyncpg.connect(dsn, ssl=ssl_option(settings))
    try:
        if work == "roles":
            await prepare_roles(
                conn,
                migration_role=settings.db_migration_role,
                app_user=app[0],
                app_password=app[1],
            )
        else:
            await grant_app(conn, migration_role=settings.db_migration_role, app_user=app[0])
    finally:
        await conn.close()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    dsn = resolve_db_secret(settings).database_dsn()  # one short run: the secret's value now
    app = _app_credentials(settings)
    if args.create_database:
        asyncio.run(_create_database_if_missing(dsn, settings))
    if app is not None:
        asyncio.run(_on_master(dsn, settings, "roles", app))
        print(f"roles ready: {settings.db_migration_role} (owner), {app[0]} (DML only)")
    print(f"applying migrations to {_redacted(dsn)}")
    role = settings.db_migration_role if app is not None else None
    upgrade(dsn, role=role, ssl=ssl_option(settings))
    if app is not None:
        asyncio.run(_on_master(dsn, settings, "grants", app))
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


def _show(key: ApiKeyInfo) -> str:
    state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "active"
    return (
        f"{key.id}  {key.prefix:<14} {key.tenant:<24} {key.created_at:%Y-%m-%d %H:%M:%S}  {state}"
    )


async def _with_db(settings: Settings, work: Any) -> Any:
    db = Database(await create_pool(settings))
    try:
        return await work(db)
    finally:
        await db.close()


def cmd_list_api_keys(settings: Settings, args: argparse.Namespace) -> int:
    keys: list[ApiKeyInfo] = asyncio.run(
        _with_db(settings, lambda db: db.list_api_keys(args.tenant))
    )
    print(f"{'key id':<36}  {'prefix':<14} {'tenant':<24} {'created':<19}  state")
    for key in keys:
        print(_show(key))
    return 0


def cmd_revoke_api_key(settings: Settings, args: argparse.Namespace) -> int:
    try:
        revoked = asyncio.run(_with_db(settings, lambda db: db.revoke_api_key(args.key)))
    except LookupError as exc:
        raise CommandError(str(exc).strip("'\"")) from None
    if not revoked:
        print(f"key {args.key} was already revoked")
        return 0
    print(f"revoked: {_show(revoked[0])}")
    within = f"AIPP_AUTH_CACHE_SECONDS ({settings.auth_cache_seconds:g} s)"
    print(f"API processes refuse it within {within}")
    return 0


def cmd_set_quota(settings: Settings, args: argparse.Namespace) -> int:
    found = asyncio.run(
        _with_db(
            settings,
            lambda db: db.set_quota(args.tenant, in_flight=args.in_flight, per_day=args.per_day),
        )
    )
    if not found:
        raise CommandError(f"no tenant named {args.tenant!r}")
    print(
        f"tenant {args.tenant}: tasks in flight {args.in_flight or 'default'},"
        f" tasks per day {args.per_day or 'default'}"
    )
    return 0


async def _requeue(settings: Settings, args: argparse.Namespace) -> tuple[int, int]:
    db = Database(await create_pool(settings))
    queue = Queue(settings)
    try:
        if args.task:
            candidates = [t for t in [await db.get_task(i) for i in args.task] if t is not None]
            refused = [t for t in candidates if not t.retryable]
            if len(candidates) < len(args.task) or refused:
                raise CommandError(
                    "only tasks that failed for a retryable reason can be requeued:"
                    f" {len(args.task) - len(candidates)} not found, {len(refused)} not retryable"
                )
        else:
            candidates = await db.retryable_failures(code=args.code, since=args.since)
        if args.dry_run:
            for task in candidates:
                print(f"would requeue {task.id} ({task.error_code})")
            return len(candidates), 0
        moved = 0
        for task in candidates:
            queued = await db.requeue_failed(task.id)
            if queued is None:
                continue  # requeued or deleted meanwhile
            # A send that fails leaves the task queued: the workers' reconciler sends it later.
            await queue.send(message_for(queued))
            moved += 1
            print(f"requeued {task.id} (was {task.error_code})")
        return len(candidates), moved
    finally:
        await db.close()


def cmd_requeue(settings: Settings, args: argparse.Namespace) -> int:
    if not (args.task or args.code or args.since):
        raise CommandError("name tasks with --task, or select them with --code and/or --since")
    found, moved = asyncio.run(_requeue(settings, args))
    print(f"{found} retryable failed task(s) found, {moved} requeued")
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
    keys = sub.add_parser("list-api-keys", help="list API keys (id, prefix, tenant, state)")
    keys.add_argument("--tenant", help="only this tenant's keys")
    keys.set_defaults(func=cmd_list_api_keys)
    revoke = sub.add_parser("revoke-api-key", help="revoke an API key by id or prefix")
    revoke.add_argument("key", help="the key id, or its prefix as list-api-keys shows it")
    revoke.set_defaults(func=cmd_revoke_api_key)
    quota = sub.add_parser("set-quota", help="a tenant's own quotas (omit one for the default)")
    quota.add_argument("--tenant", required=True)
    quota.add_argument("--in-flight", type=_positive, help="tasks not yet completed or failed")
    quota.add_argument("--per-day", type=_positive, help="tasks created per UTC day")
    quota.set_defaults(func=cmd_set_quota)
    requeue = sub.add_parser(
        "requeue", help="failed → queued for tasks that failed for a retryable reason"
    )
    requeue.add_argument("--task", type=uuid.UUID, action="append", help="a task id (repeat)")
    requeue.add_argument("--code", help="every retryable failure with this error code")
    requeue.add_argument(
        "--since", type=datetime.fromisoformat, help="failed at or after (ISO 8601, with zone)"
    )
    requeue.add_argument("--dry-run", action="store_true", help="list, change nothing")
    requeue.set_defaults(func=cmd_requeue)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc.code, file=sys.stderr)
        return 2
    try:
        code: int = args.func(settings, args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # any failure: one line naming it, never a traceback
        print(f"error: {args.command} failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    return code


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


if __name__ == "__main__":
    sys.exit(main())
