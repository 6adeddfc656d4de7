"""Alembic's entry point: migrate on the connection `collab.storage.migrate` passes in.

The caller (collab.storage.migrate) opens the transaction on the server's async engine
and runs this through `run_sync`, so the migration and its lock share one
transaction: on PostgreSQL every step commits or none does.
"""

from __future__ import annotations

from alembic import context

from collab.storage.sql_schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("collab migrations run through `collab db upgrade` (collab.storage.migrate)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters most things by copying the table: let autogenerate say so.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
