"""Schema migrations (Alembic) on SQLite and PostgreSQL: new databases, databases
made before collab had migrations, the models and the migrations agreeing, and
`collab db current|upgrade`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pycrdt import Doc, Text
from sqlalchemy import MetaData, delete, insert
from sqlalchemy.ext.asyncio import create_async_engine

from collab.rooms.loading import build_doc
from collab.storage.migrate import MIGRATIONS_DIR, head_revision
from collab.storage.sql_schema import metadata
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate
from tests.support.server import REPO
from tests.support.yclient import text_edits

pytestmark = pytest.mark.postgres


def _v1_metadata() -> MetaData:
    """The schema `create_all` made before migrations (frozen in revision 0001)."""
    path = MIGRATIONS_DIR / "versions" / "0001_initial.py"
    spec = importlib.util.spec_from_file_location("collab_migration_0001", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.v1_metadata()  # type: ignore[no-any-return]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres_url) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'collab.db'}"
    return postgres_url


async def _make_legacy_database(url: str, *, tables: list[str] | None = None) -> str:
    """A database as collab made it before migrations: `create_all` of the old
    schema (or of the even older subset `tables`), with a document whose first
    three edits are compacted into a snapshot and two are still in the log."""
    old = _v1_metadata()
    engine = create_async_engine(url)
    chosen = [old.tables[name] for name in tables] if tables else None
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: old.create_all(sync, tables=chosen))
        updates = text_edits("one ", "two ", "three ", "four ", "five")
        head: Doc = Doc()
        for update in updates[:3]:
            head.apply_update(update)
        t = old.tables
        await conn.execute(insert(t["documents"]).values(name="doc", created_at=1, updated_at=2))
        # The old compaction: a snapshot covering log rows 1-3, which it deleted.
        # (Rows are inserted below, all five, then 1-3 deleted, as it happened.)
        await conn.execute(
            insert(t["snapshots"]).values(
                document="doc",
                created_at=1,
                updated_at=1,
                kind="auto",
                size_bytes=1,
                preview="one two three",
                state=head.get_update(),
                covers_update_id=3,
            )
        )
        rows = [{"document": "doc", "data": u, "created_at": 1} for u in updates]
        await conn.execute(insert(t["updates"]), rows)
        await conn.execute(delete(t["updates"]).where(t["updates"].c.id <= 3))
    await engine.dispose()
    return "one two three four five"


async def test_a_new_database_is_created_at_the_newest_revision(database_url):
    store = SqlStore(database_url)
    await store.open()
    try:
        assert store.schema is not None and store.schema.current == head_revision()
        assert store.schema.is_current
    finally:
        await store.close()


async def test_a_database_made_before_migrations_is_upgraded_with_its_data(database_url):
    expected = await _make_legacy_database(database_url)
    store = SqlStore(database_url)
    await store.open()
    try:
        assert store.schema is not None and store.schema.is_current
        stored = await store.load("doc")
        assert str(build_doc(stored, "doc").get("text", type=Text)) == expected
        assert stored.snapshot_seq == 0 and len(stored.updates) == 2
        # The log's sequence goes on where it was: ids are never reused.
        [row_id] = await store.commit([AppendUpdate("doc", text_edits("!")[0])])
        assert isinstance(row_id, int) and row_id > max(stored.row_ids) >= 5
    finally:
        await store.close()


async def test_an_older_database_missing_tables_gets_them(database_url):
    expected = await _make_legacy_database(
        database_url, tables=["documents", "updates", "snapshots"]
    )
    store = SqlStore(database_url)
    await store.open()
    try:
        assert await store.live_leases() == []
        assert await store.quarantined("doc") == []
        doc = build_doc(await store.load("doc"), "doc")
        assert str(doc.get("text", type=Text)) == expected
    finally:
        await store.close()


async def test_the_migrations_build_exactly_the_schema_the_code_expects(database_url):
    store = SqlStore(database_url)
    await store.open()
    try:
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await store.close()
    assert differences == []


def _collab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collab", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_db_current_and_upgrade_commands(database_url):
    await _make_legacy_database(database_url)
    behind = _collab("db", "current", "--database", database_url)
    assert behind.returncode == 1, behind.stderr
    assert "schema at none" in behind.stdout and "collab db upgrade" in behind.stdout
    upgraded = _collab("db", "upgrade", "--database", database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema at {head_revision()}" in upgraded.stdout
    current = _collab("db", "current", "--database", database_url)
    assert current.returncode == 0 and "up to date" in current.stdout
