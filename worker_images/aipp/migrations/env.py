"""Alembic environment: runs the raw-SQL migrations over asyncpg (SQLAlchemy's async engine)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def _run(connection: Connection) -> None:
    role = context.config.attributes.get("role")
    if role:  # the migration role owns what the migrations create (`admin migrate`)
        connection.exec_driver_sql(f'SET ROLE "{role}"')
        connection.commit()
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main(url: str) -> None:
    ssl = context.config.attributes.get("ssl")
    connect_args = {} if ssl is None else {"ssl": ssl}
    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


def _sqlalchemy_url(dsn: str) -> str:
    scheme, _, rest = dsn.partition("://")
    return f"postgresql+asyncpg://{rest}" if scheme in {"postgres", "postgresql"} else dsn


url = context.config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("sqlalchemy.url is not set: use `python -m aipp.admin migrate`")
if context.is_offline_mode():
    context.configure(url=_sqlalchemy_url(url), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_main(_sqlalchemy_url(url)))
