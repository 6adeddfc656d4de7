"""Imports flow one way (docs/architecture.md, ../shared/STYLE.md); this keeps them so.

Every part of `collab` has a rank. A module may import from a lower rank, or
from its own package; never sideways, never up.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "collab"

RANKS = {
    "config": 0, "errors": 0, "logs": 0, "metrics": 0, "content": 0,
    "protocol": 1,
    "storage": 2, "auth": 2, "client": 2,
    "rooms": 3,
    "cluster": 4, "history": 4, "webhooks": 4,
    "runtime": 5,
    "api": 6,
    "cli": 7,
    "__main__": 8,
}  # fmt: skip
# third-party packages only one part may use
EXCLUSIVE = {
    "fastapi": {"api"},
    "starlette": {"api"},
    "uvicorn": {"cli"},
    "jwt": {"auth"},
    "cryptography": {"auth"},
    "sqlalchemy": {"storage"},
    "alembic": {"storage"},
    "redis": {"cluster"},
    "websockets": {"api", "client"},
}


def _part(path: Path) -> str:
    """The first name below collab/: a root module's stem or a subpackage's name."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "collab":  # `from collab import x`
                names.update(f"collab.{alias.name}" for alias in node.names)
    return names


def _modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"]


def test_every_part_has_a_rank():
    assert {_part(p) for p in _modules()} == set(RANKS)


def test_imports_point_downward():
    for path in _modules():
        part = _part(path)
        imported = _imports(path)
        for name in imported:
            if not name.startswith("collab."):
                continue
            target = name.split(".")[1]
            if target == "__version__":
                continue
            assert target == part or RANKS[target] < RANKS[part], f"{path}: {part} imports {name}"
        for package, owners in EXCLUSIVE.items():
            if any(n == package or n.startswith(package + ".") for n in imported):
                assert part in owners, f"{path} must not import {package}"


def test_migrations_only_use_the_schema():
    """Revision scripts are frozen history: they may read the schema, nothing above."""
    for path in (PACKAGE / "storage" / "migrations").rglob("*.py"):
        internal = {n for n in _imports(path) if n.startswith("collab")}
        assert internal <= {"collab.storage.sql_schema"}, f"{path.name} imports {internal}"


def test_protocol_layer_is_sans_io():
    for path in (PACKAGE / "protocol").glob("*.py"):
        imported = _imports(path)
        assert not {"asyncio", "socket", "fastapi", "starlette", "websockets"} & imported
