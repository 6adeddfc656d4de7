"""Which of this client's edits the server has made durable.

Everything a collab server sends is committed: it relays an update (to its sender
too) only after the database transaction, and its step 2 waits for pending
writes. So the updates and step 2s it sent, applied to a Doc of their own,
are what is durable; an edit of ours is, once that Doc's clock for our client
reaches the local Doc's. On reconnect, step 1 carries that Doc's state vector,
so what the server holds beyond it (an echo lost with the old connection) comes
again.

A transaction that only deletes moves no clock. It is counted here, and the
session confirms it by itself with a step 1 / step 2 round trip.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc

from collab.protocol.codec import decode_state_vector

# What a Yjs Doc encodes as an update that changes nothing.
_EMPTY_UPDATE = b"\x00\x00"


class Durability:
    """The durable part of a session's Doc, as far as the server has told."""

    def __init__(self, doc: Doc[Any]) -> None:
        self._doc = doc
        self._from_server: Doc[Any] = Doc()
        self.deletions_made = 0  # delete-only local transactions so far
        self.deletions_saved = 0  # ...of which the server confirmed being durable

    def record_from_server(self, update: bytes) -> None:
        self._from_server.apply_update(update)

    def record_local(self, update: bytes) -> None:
        """A local transaction's update (called from the Doc's observer, where
        the Doc cannot be read): an update v1 starts with how many clients it has
        new structs of, and none means it only deletes."""
        if update[0] == 0 and update != _EMPTY_UPDATE:
            self.deletions_made += 1

    def server_state(self) -> bytes:
        """The state vector of what the server sent: step 1 asks for the rest."""
        return self._from_server.get_state()

    def local_clock(self) -> int:
        return self._clock_of(self._doc)

    def saved_clock(self) -> int:
        return self._clock_of(self._from_server)

    @property
    def is_saved(self) -> bool:
        return (
            self.local_clock() <= self.saved_clock() and self.deletions_saved >= self.deletions_made
        )

    def _clock_of(self, doc: Doc[Any]) -> int:
        return decode_state_vector(doc.get_state()).get(self._doc.client_id, 0)
