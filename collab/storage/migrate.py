"""Schema migrations: bring a database to the schema the code expects (Alembic).

Owns running collab/storage/migrations on the server's own async engine, at start-up
and for `collab db upgrade` / `collab db current`. Databases created before
collab had migrations (tables, no alembic_version) are upgraded like any other:
revision 0001 only creates the tables they lack, so their data stays as it is.

Several processes starting at once on one PostgreSQL database take turns: the
upgrade runs in one transaction holding a transaction-level advisory lock, so
the second process waits and then finds the database already at head.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)
# Alembic narrates every start ("Context impl ..."); one line of our own says
# what changed instead.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant both sides agree on: the advisory lock key for "migrating".
_MIGRATION_LOCK_KEY = 0x636F6C6C6162  # "collab"


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    current: str | None  # None: an empty database, or one made before migrations
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head


def _config(connection: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


async def upgrade_database(engine: AsyncEngine, revision: str = "head") -> SchemaVersion:
    """Upgrade to `revision` (default: the newest) in one transaction."""
    before = await schema_version(engine)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        await conn.run_sync(lambda sync_conn: command.upgrade(_config(sync_conn), revision))
    after = await schema_version(engine)
    if after.current != before.current:
        logger.info("database schema upgraded: %s -> %s", before.current or "none", after.current)
    return after


async def schema_version(engine: AsyncEngine) -> SchemaVersion:
    async with engine.connect() as conn:
        current = await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
    return SchemaVersion(current=current, head=head_revision())
