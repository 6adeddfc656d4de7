"""Alembic migrations of collab's schema (SQLite and PostgreSQL alike).

Run at start-up by `collab.storage.migrate.upgrade_database` and by `collab db upgrade`;
`env.py` only ever runs on a connection the caller hands it (the server's own
async engine), never from an alembic.ini.
"""
