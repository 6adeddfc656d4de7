"""The default install runs on SQLite alone: the PostgreSQL and Redis drivers are
extras (`collab[postgres]`, `collab[cluster]`), and a URL that needs a missing one
stops with an error naming the extra to install."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from collab.errors import MissingDriver
from collab.storage.sql_store import SqlStore


def _block(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make `package` (and its submodules) fail to import, as if not installed."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


def test_the_server_and_cli_import_without_the_postgres_and_cluster_drivers() -> None:
    code = (
        "import sys; sys.modules['asyncpg'] = sys.modules['redis'] = None; "
        "import collab.cli.main, collab.runtime, collab.api.app"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_redis_url_without_the_cluster_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _block(monkeypatch, "redis")
    monkeypatch.delitem(sys.modules, "collab.cluster.redis_bus", raising=False)
    with pytest.raises(MissingDriver, match=r"pip install 'collab\[cluster\]'"):
        importlib.import_module("collab.cluster.redis_bus")


async def test_a_postgresql_url_without_the_postgres_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _block(monkeypatch, "asyncpg")
    store = SqlStore("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with pytest.raises(MissingDriver, match=r"pip install 'collab\[postgres\]'"):
        await store.open()
