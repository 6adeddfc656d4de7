"""The SQL of attribution: claims written beside their log rows, sessions folded
from the log rows' deltas, and both read back (see collab.storage.attribution).

A claim is inserted in the batch's transaction (collab.storage.sql_writes calls
`write_claims` for the appends it accepted), unless the client id is claimed
already (first claim wins: the room refuses a connection writing under another
author's client id before it gets here). A session's growth rides in the log
rows themselves (`updates.sessions`), so a commit writes no page for it; its
row in `edit_sessions` is brought up to date by `fold_log`, which every
transaction that takes log rows away runs first (a snapshot, quarantine), and
`read_sessions` folds what is still in the log onto the rows.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, bindparam, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.protocol.codec import decode_id_ranges, encode_id_ranges
from collab.storage.attribution import (
    Author,
    EditSession,
    GrowingSession,
    decode_ranges,
    decode_root_counts,
    decode_rows,
    delta_keys,
    encode_ranges,
    encode_root_counts,
    fold,
)
from collab.storage.sql_schema import client_authors, edit_sessions, updates
from collab.storage.sqlite_forms import SqliteForm
from collab.storage.store import AppendUpdate

logger = logging.getLogger(__name__)

_CLAIM_COLUMNS = ("document", "client_id", "subject", "claimed_at")
_CLAIM = text(
    f"INSERT INTO {client_authors.name} (document, client_id, subject, claimed_at) "
    "VALUES (:document, :client_id, :subject, :claimed_at) "
    "ON CONFLICT (document, client_id) DO NOTHING"
)
# The same for SQLite's driver: a row's values are in the columns' order.
_SQLITE_CLAIM = SqliteForm(_CLAIM, _CLAIM_COLUMNS).sql

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
    "through_id",
)
_GROWN_COLUMNS = ("name", "ended_at", "inserted", "deleted", "ranges", "deleted_ranges", "roots")
_SESSION = text(
    f"INSERT INTO {edit_sessions.name} ({', '.join(_SESSION_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _SESSION_COLUMNS)}) "
    "ON CONFLICT (document, key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*_GROWN_COLUMNS, "through_id"))
)


# A log's session deltas up to a row id, in order (`_NO_BOUND`: all).
_NO_BOUND = 2**63 - 1
_DELTAS = (
    select(updates.c.id, updates.c.sessions)
    .where(
        updates.c.document == bindparam("document"),
        updates.c.sessions.is_not(None),
        updates.c.id <= bindparam("up_to"),
    )
    .order_by(updates.c.id)
)
_SQLITE_DELTAS = SqliteForm(_DELTAS, ("document", "up_to")).sql


def write_claims(conn: Connection, ops: Sequence[AppendUpdate], now: float) -> None:
    """The claims `ops` carry (appends whose rows were inserted). On SQLite
    straight to the driver, as the appends are (collab.storage.sql_writes)."""
    claims = {(op.document, claim.client_id): claim.subject for op in ops for claim in op.claims}
    rows = [(d, c, s, now) for (d, c), s in claims.items()]
    driver = conn.connection.driver_connection
    if not isinstance(driver, sqlite3.Connection):
        conn.execute(_CLAIM, [dict(zip(_CLAIM_COLUMNS, row, strict=True)) for row in rows])
    elif len(rows) == 1:
        driver.execute(_SQLITE_CLAIM, rows[0])
    else:
        driver.executemany(_SQLITE_CLAIM, rows)


def fold_log(conn: Connection, document: str, up_to: int | None) -> None:
    """Bring the session rows of `document` up to date with the deltas of its log
    rows up to id `up_to` (None: all), before some of those rows are deleted.
    Runs in the transaction that deletes them, so no delta is ever in neither.
    On SQLite the log is read straight from the driver: a compaction folds a
    thousand rows, and SQLAlchemy's fetch of each cost more than folding it."""
    driver = conn.connection.driver_connection
    bound = _NO_BOUND if up_to is None else up_to
    rows: Sequence[Any]
    if isinstance(driver, sqlite3.Connection):
        cursor = driver.execute(_SQLITE_DELTAS, (document, bound))
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
    else:
        rows = conn.execute(_DELTAS, {"document": document, "up_to": bound}).all()
    parsed = _parsed(document, rows)
    if not parsed:
        return
    bases = _bases(conn.execute(_bases_query(document, delta_keys(parsed))).all())
    grown = _folded(document, bases, parsed)
    if grown:
        values = [_session_row(document, session, through) for session, through in grown.values()]
        conn.execute(_SESSION, [dict(zip(_SESSION_COLUMNS, row, strict=True)) for row in values])


async def read_sessions(
    conn: AsyncConnection,
    document: str,
    *,
    since: float | None,
    until: float | None,
    subject: str | None,
    limit: int | None,
) -> list[EditSession]:
    """The sessions of `document` overlapping [since, until], newest (by end)
    first: the rows, with the deltas still in the log folded on. The log is read
    first: a compaction committing in between folds and deletes the same
    deltas, which the rows' `through_id` then says to skip."""
    log = (await conn.execute(_DELTAS, {"document": document, "up_to": _NO_BOUND})).all()
    if not log:
        query = sessions_query(document, since=since, until=until, subject=subject, limit=limit)
        return [session_of(row) for row in await conn.execute(query)]
    parsed = _parsed(document, log)
    rows = (await conn.execute(_bases_query(document, delta_keys(parsed)))).all()
    ids = {int(row.key): float(row.id) for row in rows}
    bases = _bases(rows)
    current = {key: session for key, (session, _) in bases.items()}
    current.update(
        (key, grown.stored()) for key, (grown, _) in _folded(document, bases, parsed).items()
    )
    found = [
        # (end, the row's id: a session not yet in a row is the newest of its end)
        (session.ended_at, ids.get(key, math.inf), session)
        for key, session in current.items()
        if (since is None or session.ended_at >= since)
        and (until is None or session.started_at <= until)
        and (subject is None or session.author.subject == subject)
    ]
    others = sessions_query(
        document, since=since, until=until, subject=subject, limit=limit, excluding=current
    )
    found.extend(
        (float(row.ended_at), float(row.id), session_of(row)) for row in await conn.execute(others)
    )
    found.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    return [session for _, _, session in found[:limit]]


def _bases_query(document: str, keys: Iterable[int]) -> Select[Any]:
    return select(edit_sessions).where(
        edit_sessions.c.document == document, edit_sessions.c.key.in_(sorted(keys))
    )


def _parsed(document: str, rows: Sequence[Any]) -> list[tuple[int, list[Any]]]:
    parsed, bad = decode_rows([(int(row_id), text) for row_id, text in rows])
    _log_unreadable(document, bad)
    return parsed


def _folded(
    document: str, bases: dict[int, tuple[EditSession, int]], parsed: list[tuple[int, list[Any]]]
) -> dict[int, tuple[GrowingSession, int]]:
    grown, bad = fold(bases, parsed)
    _log_unreadable(document, bad)
    return grown


def _log_unreadable(document: str, row_ids: list[int]) -> None:
    """Rows whose deltas do not decode are skipped, never a failed write or read
    (attribution is not worth either), and said."""
    if row_ids:
        logger.error(
            "doc=%s log rows %s: their session deltas do not decode; skipped",
            document,
            ", ".join(map(str, row_ids[:10])),
        )


def _bases(rows: Iterable[Any]) -> dict[int, tuple[EditSession, int]]:
    return {int(row.key): (session_of(row), int(row.through_id or 0)) for row in rows}


def _session_row(document: str, grown: GrowingSession, through_id: int) -> tuple[Any, ...]:
    """The values of `_SESSION_COLUMNS`, in order."""
    session = grown.stored()
    author = session.author
    deleted = encode_id_ranges(session.deleted_ranges) if session.deleted_ranges else None
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
        through_id,
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
    excluding: Iterable[int] = (),
) -> Select[Any]:
    query = select(edit_sessions).where(edit_sessions.c.document == document)
    if excluding:
        query = query.where(edit_sessions.c.key.not_in(sorted(excluding)))
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
