"""The SQL of attribution: claims and sessions written beside their log rows, and
read back (see collab.storage.attribution).

Written inside the batch's transaction (collab.storage.sql_writes calls
`write_attribution` for the appends it accepted), so a log row and what it says
about its author commit together or not at all. A claim is inserted unless the
client id is claimed already (first claim wins: the room refuses a connection
writing under another author's client id before it gets here); a session is an
upsert on (document, key): the room sends it again, grown, while it lasts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.protocol.codec import decode_id_ranges, encode_id_ranges
from collab.storage.attribution import (
    Author,
    EditSession,
    decode_ranges,
    decode_root_counts,
    encode_ranges,
    encode_root_counts,
    subtract_ranges,
)
from collab.storage.sql_schema import client_authors, edit_sessions
from collab.storage.sqlite_forms import SqliteForm
from collab.storage.store import AppendUpdate

_CLAIM_COLUMNS = ("document", "client_id", "subject", "claimed_at")
_CLAIM = text(
    f"INSERT INTO {client_authors.name} (document, client_id, subject, claimed_at) "
    "VALUES (:document, :client_id, :subject, :claimed_at) "
    "ON CONFLICT (document, client_id) DO NOTHING"
)
_SESSION_COLUMNS = (
    "document",
    "key",
    "subject",
    "name",
    "is_verified",
    "origin",
    "started_at",
    "ended_at",
    "inserted",
    "deleted",
    "ranges",
    "source_version",
    "deleted_ranges",
    "roots",
)
# What a session's later commits change (the rest is fixed when it starts).
_GROWING = ("name", "ended_at", "inserted", "deleted", "ranges", "deleted_ranges", "roots")
_SESSION = text(
    f"INSERT INTO {edit_sessions.name} ({', '.join(_SESSION_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _SESSION_COLUMNS)}) "
    "ON CONFLICT (document, key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _GROWING)
)
# The same for SQLite's driver: a row's values are in the columns' order.
_SQLITE_CLAIM = SqliteForm(_CLAIM, _CLAIM_COLUMNS).sql
_SQLITE_SESSION = SqliteForm(_SESSION, _SESSION_COLUMNS).sql
# A session's commits after its first find its row: a plain UPDATE of what grows
# costs SQLite less than an insert that conflicts.
_SQLITE_SESSION_GROWN = (
    f"UPDATE {edit_sessions.name} SET {', '.join(c + ' = ?' for c in _GROWING)} "
    "WHERE document = ? AND key = ?"
)
_GROWN_ORDER = tuple(_SESSION_COLUMNS.index(c) for c in (*_GROWING, "document", "key"))


def write_attribution(conn: Connection, ops: Sequence[AppendUpdate], now: float) -> None:
    """The claims and sessions `ops` carry (appends whose rows were inserted).
    Plain SQL that SQLite and PostgreSQL both take; on SQLite straight to the
    driver with positional parameters, as the appends are
    (collab.storage.sql_writes): it runs with nearly every commit of an edit, and
    a session that has its row already is updated rather than upserted (the
    upsert stays for its first commit: on SQLite one transaction writes at a
    time, so no other can insert the row between the two statements)."""
    claims = {(op.document, claim.client_id): claim.subject for op in ops for claim in op.claims}
    # The latest state of each session (a batch may hold several of one).
    sessions = {(op.document, s.key): (op.document, s) for op in ops for s in op.sessions}
    claim_rows = [(d, c, s, now) for (d, c), s in claims.items()]
    session_rows = [_session_row(document, s) for document, s in sessions.values()]
    driver = conn.connection.driver_connection
    if not isinstance(driver, sqlite3.Connection):
        for statement, columns, rows in (
            (_CLAIM, _CLAIM_COLUMNS, claim_rows),
            (_SESSION, _SESSION_COLUMNS, session_rows),
        ):
            if rows:
                conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])
        return
    if claim_rows:
        driver.executemany(_SQLITE_CLAIM, claim_rows)
    for row in session_rows:
        grown = driver.execute(_SQLITE_SESSION_GROWN, [row[i] for i in _GROWN_ORDER])
        if grown.rowcount == 0:  # the session's first commit (or its row is gone)
            driver.execute(_SQLITE_SESSION, row)


def _session_row(document: str, session: EditSession) -> tuple[Any, ...]:
    """The values of `_SESSION_COLUMNS`, in order."""
    author = session.author
    deleted = None
    if session.deleted_ranges:
        # What it deleted of its own writing never comes back (a revert of it
        # takes its insertions out too): not stored.
        others = subtract_ranges(session.deleted_ranges, session.ranges)
        deleted = encode_id_ranges(others) if others else None
    return (
        document,
        session.key,
        author.subject,
        author.name,
        author.is_verified,
        session.origin,
        session.started_at,
        session.ended_at,
        session.inserted,
        session.deleted,
        encode_ranges(session.ranges),
        session.source_version,
        deleted,
        encode_root_counts(session),
    )


async def read_owners(conn: AsyncConnection, document: str) -> dict[int, str]:
    rows = await conn.execute(
        select(client_authors.c.client_id, client_authors.c.subject).where(
            client_authors.c.document == document
        )
    )
    return {int(row.client_id): row.subject for row in rows}


def sessions_query(
    document: str,
    *,
    since: float | None,
    until: float | None,
    subject: str | None,
    limit: int | None,
) -> Select[Any]:
    query = select(edit_sessions).where(edit_sessions.c.document == document)
    if since is not None:
        query = query.where(edit_sessions.c.ended_at >= since)
    if until is not None:
        query = query.where(edit_sessions.c.started_at <= until)
    if subject is not None:
        query = query.where(edit_sessions.c.subject == subject)
    query = query.order_by(edit_sessions.c.ended_at.desc(), edit_sessions.c.id.desc())
    return query if limit is None else query.limit(limit)


def session_of(row: Any) -> EditSession:
    return EditSession(
        key=int(row.key),
        author=Author(row.subject, row.name, bool(row.is_verified)),
        started_at=float(row.started_at),
        ended_at=float(row.ended_at),
        inserted=int(row.inserted),
        deleted=int(row.deleted),
        ranges=decode_ranges(row.ranges),
        origin=row.origin,
        source_version=None if row.source_version is None else int(row.source_version),
        deleted_ranges=(
            () if row.deleted_ranges is None else decode_id_ranges(bytes(row.deleted_ranges))
        ),
        roots=decode_root_counts(row.roots, int(row.inserted), int(row.deleted)),
    )
