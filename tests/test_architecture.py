"""Imports flow one way (see README, Architecture); this keeps them so."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "collab"

# module -> collab modules it may import
ALLOWED = {
    "errors": set(),
    "protocol": {"errors"},
    "store": set(),
    "content": set(),
    "textdiff": set(),
    "restore": {"content", "restore_text"},
    "restore_text": {"textdiff"},
    "retention": {"store"},
    "config": set(),
    "auth": {"errors", "protocol"},
    "tokens": {"auth", "config"},
    "metrics": set(),
    "send_gate": set(),
    "sync_reply": set(),
    "peer": {"errors", "metrics", "protocol", "send_gate"},
    "writer": {"metrics", "store"},
    "cluster_feed": set(),
    "end_of_tick": set(),
    "presence": {"cluster_feed", "end_of_tick", "errors", "peer", "protocol"},
    "ledger": set(),
    "room": {"cluster_feed", "content", "errors", "ledger", "peer", "presence", "protocol"}
    | {"end_of_tick", "restore"}
    | {"store", "sync_reply"},
    "loading": {"metrics", "room", "store", "writer"},
    "compaction": {"ledger", "loading", "metrics", "room", "store"},
    "registry": {"cluster_feed", "compaction", "errors", "loading", "metrics", "peer", "presence"}
    | {"protocol", "room", "store", "writer"},
    "history": {"content", "errors", "registry", "retention", "store", "textdiff", "writer"},
    "sql_schema": {"store"},
    "migrate": set(),
    "sql_writes": {"sql_schema", "store"},
    "sqlite_commit": {"store"},
    "sql_store": {"migrate", "sql_schema", "sql_writes", "sqlite_commit", "store"},
    "redis_liveness": set(),
    "redis_publisher": set(),
    "redis_bus": {"redis_liveness", "redis_publisher"},
    "cluster": {"cluster_feed", "metrics", "registry"},
    "runtime": {"config", "history", "metrics", "registry", "retention", "room", "sql_store"}
    | {"store", "writer", "cluster", "redis_bus"},
    "api_auth": {"auth", "metrics"},
    "api_versions": {"api_auth", "content", "protocol", "runtime", "store"},
    "api_sockets": set(),
    "app": {"api_auth", "api_sockets", "api_versions", "auth", "config", "content", "errors"}
    | {"history", "metrics", "peer", "protocol", "room", "runtime", "sql_store", "store"}
    | {"send_gate", "tokens", "web_client"},
    "web_client": {"protocol"},
    "snapshots_cli": {"api_versions", "config", "content", "errors", "runtime", "sql_store"},
    "token_cli": {"auth", "config", "tokens"},
    "logs": set(),
    "db_cli": {"config", "sql_store"},
    "cli": {"app", "config", "db_cli", "logs", "snapshots_cli", "sql_store", "token_cli"}
    | {"tokens"},
    "__main__": {"cli"},
    "__init__": set(),
}
# third-party packages only one layer may use
EXCLUSIVE = {
    "fastapi": {"app", "api_auth", "api_versions", "web_client"},
    "starlette": {"app", "api_auth", "api_sockets", "api_versions", "web_client"},
    "jwt": {"tokens"},
    "cryptography": {"tokens"},
    "sqlalchemy": {"sql_schema", "sql_store", "sql_writes", "sqlite_commit", "migrate"},
    "alembic": {"migrate"},
    "redis": {"redis_bus", "redis_liveness", "redis_publisher"},
    "uvicorn": {"cli"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_module_is_known():
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(ALLOWED)


def test_imports_point_downward():
    for path in PACKAGE.glob("*.py"):
        module = path.stem
        imported = _imports(path)
        internal = {n.split(".")[1] for n in imported if n.startswith("collab.")}
        internal |= {"__init__"} & {n for n in imported if n == "collab"}
        assert internal <= ALLOWED[module] | {"__init__"}, f"{module} imports {internal}"
        for package, owners in EXCLUSIVE.items():
            if any(n == package or n.startswith(package + ".") for n in imported):
                assert module in owners, f"{module} must not import {package}"


def test_migrations_only_use_the_storage_layer():
    """collab/migrations/ is storage: SQLAlchemy, Alembic and the schema, nothing above."""
    for path in (PACKAGE / "migrations").rglob("*.py"):
        internal = {n for n in _imports(path) if n.startswith("collab")}
        assert internal <= {"collab.sql_schema"}, f"{path.name} imports {internal}"


def test_protocol_layer_is_sans_io():
    imported = _imports(PACKAGE / "protocol.py")
    assert not {"asyncio", "socket", "fastapi", "starlette", "websockets"} & imported
