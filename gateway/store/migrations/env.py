"""Alembic environment: runs on the connection `gateway.store.db` hands over, or on the
URL from `-x url=...` / MAMORI_STORE__URL when run with the `alembic` command."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from gateway.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "MAMORI_STORE__URL", "")
    if not url:
        raise SystemExit("give the database URL with -x url=... or MAMORI_STORE__URL")
    from gateway.store.db import Database

    def run(conn: Connection) -> None:
        context.configure(connection=conn, target_metadata=metadata,
                          render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        db = Database(url)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(run)
        finally:
            await db.close()

    asyncio.run(main())


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url", "postgresql://")
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
