"""Durable storage (rank 2): the store seam, its SQL implementation, the writer,
migrations, leases.

The commit path reads downward: a room submits an op to the writer (writer.py),
which alone batches and retries; the writer asks the store (the `DocumentStore`
seam in store.py, `SqlStore` in sql_store.py) for one attempt per batch; the
store runs the batch's SQL (sql_writes.py) on PostgreSQL or, for SQLite, inline
or on the commit thread (sqlite_commit.py). Results travel back up as return
values and futures; nothing here calls into the layers above.
"""
