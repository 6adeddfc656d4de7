"""What a failed commit means: an outage, a collision, or an op the database refuses.

Its own module because the answer is the same for every driver and path (the
SQLite committer's raw sqlite3 errors, SQLAlchemy's wrapped ones, PostgreSQL's
SQLSTATEs) and the writer's retry policy depends on nothing else
(collab.storage.writer: it retries outages with backoff, collisions at once, and
fails only the op the database refuses).
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from collab.storage.store import PermanentWriteError, WriteContention

# PostgreSQL's deadlock_detected and serialization_failure: the transaction
# collided with another process's and was aborted; running it again is expected
# to work (the writer does, see `WriteContention`).
_CONTENTION_SQLSTATES = {"40P01", "40001"}
# SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation):
# the op itself is what the database refuses.
_PERMANENT_SQLSTATE_CLASSES = {"22", "23"}


def _sqlstate(error: BaseException) -> str | None:
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None


def classify_write_error(exc: Exception) -> PermanentWriteError | WriteContention | None:
    """What a failed commit means, the same for every driver and path:

    - `PermanentWriteError`: the database refuses the op for what it is - a
      constraint (a foreign key, a trigger's refusal) or data it cannot hold;
      running it again would fail the same way;
    - `WriteContention`: the transaction collided with another process's;
    - None: an outage. The op is fine; the database is not, for now (gone,
      locked, full, a table missing, a privilege revoked): the writer keeps the
      op and retries it, and the rooms say storage is failing, until an operator
      or time cures it.

    PostgreSQL says which by its SQLSTATE; SQLite by the DB-API class of its
    error, raw from the sqlite3 driver or wrapped by SQLAlchemy."""
    error: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        error = exc.orig
    message = str(error)
    sqlstate = _sqlstate(error)
    if sqlstate is not None:
        if sqlstate in _CONTENTION_SQLSTATES:
            return WriteContention(f"sqlstate {sqlstate}: {message}")
        if sqlstate[:2] in _PERMANENT_SQLSTATE_CLASSES:
            return PermanentWriteError(f"sqlstate {sqlstate}: {message}")
        return None
    if isinstance(error, sqlite3.IntegrityError | sqlite3.DataError):
        return PermanentWriteError(message)
    if isinstance(exc, IntegrityError | DataError):
        return PermanentWriteError(message)
    return None
