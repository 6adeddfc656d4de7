"""SQLAlchemy statements compiled once for SQLite's own driver.

The statements a commit or a load runs every time are written once, as
SQLAlchemy Core (the form PostgreSQL runs), and for SQLite also compiled once,
here, into the driver's SQL with `?` parameters: SQLAlchemy's execution of a
statement (its cache key, execution context and result) costs several times
what SQLite spends running it. Only the values a call names change; the rest
of the parameters (literals the compiler bound) are fixed at compile time.
No type's bind or result processing runs: the values are what the driver
takes as they are (str, int, float, bytes, None), and rows come back as tuples.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class SqliteForm:
    """`statement` as SQLite's driver takes it; `names` are the bound parameters
    given per call (by `params` or `run`), in that order."""

    __slots__ = ("_slots", "_template", "sql")

    def __init__(self, statement: ClauseElement, names: Sequence[str]) -> None:
        compiled = statement.compile(dialect=sqlite.dialect())
        assert isinstance(compiled, SQLCompiler)  # SQLite's compiler: positional
        self.sql = str(compiled)
        fixed = compiled.construct_params(dict.fromkeys(names))
        assert fixed is not None
        order = compiled.positiontup or []
        self._template = [None if name in names else fixed[name] for name in order]
        # Where each of `names` goes (one name may be bound at several places).
        self._slots = [[i for i, n in enumerate(order) if n == name] for name in names]

    def params(self, *values: Any) -> list[Any]:
        """The positional parameters, given the values of `names`, in order."""
        params = self._template.copy()
        for slots, value in zip(self._slots, values, strict=True):
            for slot in slots:
                params[slot] = value
        return params

    def run(self, driver: sqlite3.Connection, *values: Any) -> sqlite3.Cursor:
        return driver.execute(self.sql, self.params(*values))
