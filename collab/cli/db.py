"""`collab db upgrade|current`: the schema version of a database, from the shell.

Servers upgrade their database to the newest schema when they start, so these
are for operators: see where a database stands (`current`, exit code 1 if it is
behind), or upgrade it ahead of a rolling deploy (`upgrade`). Several processes
may run `upgrade` at once on PostgreSQL: they take turns (collab.storage.migrate).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from collab.config import Settings
from collab.logs import redact_url
from collab.storage.sql_store import SqlStore


def add_db_commands(commands: Any) -> None:
    parser = commands.add_parser("db", help="database schema: current version, upgrade")
    actions = parser.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("current", "the database's schema revision and the newest one (exit 1 if behind)"),
        ("upgrade", "upgrade the database to the newest schema (servers do it on start)"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument(
            "--database", dest="database_url", metavar="URL", help="COLLAB_DATABASE_URL"
        )


def run_db_command(args: argparse.Namespace) -> int:
    url = Settings.load(database_url=args.database_url).database_url
    return asyncio.run(_run(args.action, url))


async def _run(action: str, url: str) -> int:
    store = SqlStore(url)
    await store.open(migrate=action == "upgrade")
    try:
        version = store.schema or await store.schema_version()
    finally:
        await store.close()
    where = redact_url(url)
    if action == "upgrade":
        print(f"{where}: schema at {version.current} (newest)")
        return 0
    state = "up to date" if version.is_current else "behind: run `collab db upgrade`"
    print(f"{where}: schema at {version.current or 'none'}, newest {version.head} ({state})")
    return 0 if version.is_current else 1
