"""Which document rows a committed transaction wrote recently (see `TouchCache`).

Its own module because two write paths share it - the SQL of a batch
(collab.storage.sql_writes) reads it, the store (collab.storage.sql_store) and the
SQLite committer (collab.storage.sqlite_commit) hand it on - and it decides one
thing only: whether an append may skip refreshing its document's `updated_at`.
"""

from __future__ import annotations

from collections.abc import Mapping

TOUCH_INTERVAL_S = 1.0


class TouchCache:
    """When each document row was last written by a committed transaction.

    A burst of small commits to one document then skips the UPDATE of its
    `updated_at` (refreshed at most once per `interval_s`): one statement and one
    more page in the WAL a commit, saved. It decides nothing else: every
    batch reads (and locks) the rows it appends to, so a row deleted behind the
    cache's back is noticed. Invariant: it only believes what a committed
    transaction wrote (`note_committed`). Read by the transaction that runs on
    the commit thread, written by the store on the loop after that transaction
    committed: never both at once, as one writer commits.
    """

    def __init__(self, interval_s: float = TOUCH_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._touched_at: dict[str, float] = {}

    def is_fresh(self, name: str, now: float) -> bool:
        """The document row's `updated_at` is recent enough."""
        touched_at = self._touched_at.get(name)
        return touched_at is not None and now - touched_at < self._interval_s

    def note_committed(self, touched: Mapping[str, float | None]) -> None:
        """What a committed transaction wrote: a time, or None for a deleted row."""
        for name, touched_at in touched.items():
            if touched_at is None:
                self._touched_at.pop(name, None)
            else:
                self._touched_at[name] = touched_at
