"""Whom a room's changes are attributed to, and the server's own edits.

Owns the `EditAuthors` part of `Room`: the author a peer's edits carry (named
as its awareness state announces them), `edits_by` (the one way server-side
edits - restores, reverts, programs - carry who asked for them) and
`apply_server_edit` (the HTTP editing API's change, stored and relayed like a
client's). The acting author it sets is read by `Room._on_transaction` and
recorded by collab.rooms.authorship. Apart from the relay algorithm in
collab.rooms.room so that it reads as y-websocket's; a part of the class
because `_author_of` runs for every edit, and a mixin adds no call or
attribute hop there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from pycrdt import Doc

from collab.errors import StorageUnavailable
from collab.rooms.awareness_states import AwarenessStates
from collab.rooms.commit_path import RoomClosed, UpdateSink
from collab.rooms.peer import Peer
from collab.rooms.presence import present_user
from collab.storage.attribution import SERVER_AUTHOR, Author

logger = logging.getLogger(__name__)


class EditAuthors:
    """Authors of a `Room`'s changes (its state is set by `Room`)."""

    name: str
    doc: Doc[Any]
    is_closed: bool
    awareness: AwarenessStates
    _sink: UpdateSink
    _acting: Author | None  # whom the change being made is for
    _acting_origin: str
    _acting_source: int | None  # a restore's version
    submit_edits: Callable[[], asyncio.Future[int | None] | None]

    def _author_of(self, peer: Peer) -> Author:
        """The peer's author, named as its awareness state announces them."""
        author = peer.author
        if author.is_verified and author.name:
            return author
        for client_id in peer.client_ids:
            state = self.awareness.states.get(client_id)
            user = present_user(state) if state is not None else None
            if user is not None:
                return Author(author.subject, user.name, author.is_verified)
        return author

    @contextlib.contextmanager
    def edits_by(
        self, author: Author, origin: str = "edit", source_version: int | None = None
    ) -> Iterator[None]:
        """Changes made to the Doc inside are attributed to `author`: the one way
        server-side edits (restores, reverts, programs) carry who asked for them."""
        previous = self._acting, self._acting_origin, self._acting_source
        self._acting, self._acting_origin, self._acting_source = author, origin, source_version
        try:
            yield
        finally:
            self._acting, self._acting_origin, self._acting_source = previous

    def apply_server_edit(
        self, edit: Callable[[Doc[Any]], None], *, author: Author | None
    ) -> asyncio.Future[int | None] | None:
        """A change the server makes to the Doc on someone's behalf (the HTTP
        editing API): `edit` changes the Doc synchronously, and the change is
        submitted at once as its own log row, stored and relayed like a client's
        edit, attributed to `author` (who it is made for; None: the server).

        Earlier edits are submitted first, so the row holds only this change.
        Returns the write (its result is the row id) or None if nothing changed.
        Raises `RoomClosed`, `StorageUnavailable` (storage failing: nothing is
        applied), or whatever `edit` raises (it must leave the Doc unchanged
        when it raises)."""
        if self.is_closed:
            raise RoomClosed(f"doc={self.name}: the room is closed")
        if self._sink.is_failing:
            raise StorageUnavailable("storage is failing: the edit is not applied; retry")
        self.submit_edits()
        with self.edits_by(author or SERVER_AUTHOR):
            edit(self.doc)
        write = self.submit_edits()
        if write is not None:
            logger.info("doc=%s server edit by %s", self.name, (author or SERVER_AUTHOR).label)
        return write
