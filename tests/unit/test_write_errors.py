"""One classification of write errors for both drivers: what the database refuses
for what the op is (permanent), a collision with another process (contention),
and everything else - the database's own trouble, an outage the writer waits
out. Raw sqlite3 errors (SQLite's hot path calls the driver directly) and
SQLAlchemy's wrapped ones are classified alike."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from collab.storage.sql_write_errors import classify_write_error
from collab.storage.store import PermanentWriteError, WriteContention


class PostgresError(Exception):
    """What asyncpg raises (through SQLAlchemy's adapter): it carries a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _sqlite_error(kind: type[sqlite3.Error], sql: str) -> sqlite3.Error:
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("CREATE TABLE documents (name TEXT PRIMARY KEY)")
    db.execute("CREATE TABLE updates (document TEXT REFERENCES documents(name))")
    with pytest.raises(kind) as raised:
        db.execute(sql)
    return raised.value


def test_a_raw_sqlite_foreign_key_failure_is_permanent_not_an_outage():
    error = _sqlite_error(sqlite3.IntegrityError, "INSERT INTO updates VALUES ('gone')")
    assert isinstance(classify_write_error(error), PermanentWriteError)
    wrapped = IntegrityError("INSERT INTO updates ...", {}, error)
    assert isinstance(classify_write_error(wrapped), PermanentWriteError)


def test_sqlite_errors_of_the_database_itself_are_outages():
    missing = _sqlite_error(sqlite3.OperationalError, "INSERT INTO nowhere VALUES (1)")
    assert classify_write_error(missing) is None
    assert classify_write_error(OperationalError("INSERT ...", {}, missing)) is None


@pytest.mark.parametrize(
    ("sqlstate", "meaning"),
    [
        ("23503", PermanentWriteError),  # foreign_key_violation
        ("23505", PermanentWriteError),  # unique_violation
        ("22001", PermanentWriteError),  # string_data_right_truncation
        ("40P01", WriteContention),  # deadlock_detected
        ("40001", WriteContention),  # serialization_failure
        ("42501", None),  # insufficient_privilege: an operator revoked it
        ("42P01", None),  # undefined_table: dropped, or not migrated
        ("57P01", None),  # admin_shutdown
        ("53100", None),  # disk_full
    ],
)
def test_postgresql_errors_are_classified_by_sqlstate(sqlstate, meaning):
    wrapped = ProgrammingError("INSERT INTO updates ...", {}, PostgresError(sqlstate))
    classified = classify_write_error(wrapped)
    if meaning is None:
        assert classified is None
    else:
        assert isinstance(classified, meaning)
