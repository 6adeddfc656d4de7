"""Edits made over HTTP: a binary update, a text delta, a replaced text, a new
document (imported or copied). The rules that make them safe with live editors:

- every edit goes through the document's live room (`Room.apply_server_edit`,
  loading the room if nobody is connected), so it is stored as its own log row,
  relayed to the connected clients only once durable, and ordered with their
  edits; a caller is answered once its edit is committed;
- an edit guarded by the state the caller read (`base`, a state vector) is
  checked and applied in one synchronous step: nothing can change the Doc in
  between, so "changed since" is exact (`EditConflict`, HTTP 412);
- a binary update whose dependencies the document lacks would stay pending
  inside yrs, invisible, never stored: it is refused (`MissingDependencies`)
  before it touches the live Doc, checked on a scratch copy off the event loop
  (collab.history.pending);
- a new document (import, copy) is created only if the name is free: its room
  (loaded, or made empty) holds nothing, checked synchronously with its first
  edit; someone may have the empty document open, and sees the new content;
- a copy is built as new operations (collab.history.restore, from an empty
  Doc): the copy shares no Yjs history with its source.

Who made an edit (`author`: the token's subject) is handed to the room with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, get_state

from collab.errors import CollabError, DocumentNotFound, InvalidUpdate
from collab.history.pending import has_structs, is_pending_after, uncovered
from collab.history.restore import restore_update
from collab.history.text_edits import (
    DeltaOp,
    Insert,
    TextEditRefused,
    apply_delta,
    replace_text,
    text_root,
)
from collab.history.versions import VersionHistory
from collab.protocol.codec import decode_state_vector
from collab.rooms.registry import RoomRegistry
from collab.rooms.room import Room
from collab.rooms.yrs_panics import yrs_panics_as
from collab.storage.attribution import Author

ORIGIN = "api"
_EMPTY_STATE_VECTOR = b"\x00"
_EMPTY_UPDATE = b"\x00\x00"


class EditConflict(CollabError):
    """The document changed since the state the edit was based on (HTTP 412)."""


class DocumentExists(CollabError):
    """A document of that name exists already (HTTP 409)."""


class MissingDependencies(CollabError):
    """The update builds on operations the document does not hold (HTTP 409):
    applied, it would stay pending and never be stored."""


@dataclass(frozen=True, slots=True)
class EditResult:
    changed: bool
    seq: int | None  # the log row (sequence number) holding the edit; None: no change
    state_vector: bytes  # the document's state right after the edit


class DocumentEdits:
    """Server-side edits on behalf of an HTTP caller; stateless, cheap to build."""

    def __init__(self, registry: RoomRegistry, history: VersionHistory) -> None:
        self._registry = registry
        self._history = history

    async def apply_update(self, name: str, update: bytes, *, author: Author | None) -> EditResult:
        room = await self._registry.open_room(name)
        await self._check_dependencies(room, update)
        # The room may have been unloaded (and loaded again) during the check;
        # a document only gains operations, so the check still holds.
        room = await self._registry.open_room(name)
        return await _edit(room, lambda _doc: _apply(room, update), author)

    async def edit_text(
        self,
        name: str,
        root: str,
        delta: Sequence[DeltaOp],
        *,
        base: bytes | None,
        author: Author | None,
    ) -> EditResult:
        def edit(doc: Doc[Any]) -> None:
            _check_base(doc, base)
            text = text_root(doc, root)
            room.ensure_room_for(sum(_utf8_len(op.text) for op in delta if isinstance(op, Insert)))
            with doc.transaction(origin=ORIGIN):
                apply_delta(text, delta)

        room = await self._registry.open_room(name)
        return await _edit(room, edit, author)

    async def replace_text(
        self, name: str, root: str, content: str, *, base: bytes | None, author: Author | None
    ) -> EditResult:
        def edit(doc: Doc[Any]) -> None:
            _check_base(doc, base)
            text = text_root(doc, root)
            room.ensure_room_for(_utf8_len(content) - _utf8_len(str(text)))
            with doc.transaction(origin=ORIGIN):
                replace_text(text, content)

        room = await self._registry.open_room(name)
        return await _edit(room, edit, author)

    async def create(
        self, name: str, root: str, content: str, *, author: Author | None
    ) -> EditResult:
        """A new document whose text root `root` reads `content`."""
        if not content:
            raise TextEditRefused("the content is empty: a document is stored with its first edit")

        def edit(room: Room) -> None:
            text = text_root(room.doc, root)
            room.ensure_room_for(_utf8_len(content))
            with room.doc.transaction(origin=ORIGIN):
                text += content

        return await self._create(name, edit, author)

    async def copy(
        self, name: str, to: str, *, version: int | None, author: Author | None
    ) -> EditResult:
        """A new document `to` with the content of `name` now, or of one of its versions."""
        if version is None:
            state = await self._registry.read_state(name)
            if state is None:
                raise DocumentNotFound(name)
        else:
            state = (await self._history.get_version(name, version)).state
        _check_free(await self._registry.open_room(to, create=True), to)  # before the work
        compute = self._history.compute
        with await compute.wait_for_slot() as slot:
            update = await compute.run(slot, len(state), restore_update, _EMPTY_UPDATE, state)
        if update is None:
            raise TextEditRefused(f"document {name!r} is empty: there is nothing to copy")
        return await self._create(to, lambda room: _apply(room, update), author)

    async def _create(
        self, name: str, edit: Callable[[Room], None], author: Author | None
    ) -> EditResult:
        room = await self._registry.open_room(name, create=True)

        def create(_doc: Doc[Any]) -> None:
            # With nothing awaited before the edit: no client (nor another
            # request) can create it in between.
            _check_free(room, name)
            edit(room)

        return await _edit(room, create, author)

    async def _check_dependencies(self, room: Room, update: bytes) -> None:
        if not has_structs(uncovered(update, room.doc.get_state())):
            return  # nothing new in it but deletions (or nothing new at all)
        state = room.doc.get_update()
        compute, size = self._history.compute, len(state) + len(update)
        if size < compute.inline_below_bytes:
            pending = await asyncio.to_thread(is_pending_after, state, update)
        else:  # a big document: in a worker process, not holding the GIL
            with await compute.wait_for_slot() as slot:
                pending = await compute.run(slot, size, is_pending_after, state, update)
        if pending:
            raise MissingDependencies(
                "the update builds on operations the document does not hold; send it "
                "with what it depends on, or fetch the document's state and send a diff "
                "against it"
            )


async def _edit(room: Room, edit: Callable[[Doc[Any]], None], author: Author | None) -> EditResult:
    write = room.apply_server_edit(edit, author=author)
    state_vector = room.doc.get_state()  # no await since the edit: exactly its state
    seq = None if write is None else await write
    return EditResult(changed=write is not None, seq=seq, state_vector=state_vector)


def _apply(room: Room, update: bytes) -> None:
    room.apply_update(update)  # its limits: size, a deleted incarnation's history


def _utf8_len(text: str) -> int:
    """About what a text adds to a document's encoded size (its bytes)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _check_free(room: Room, name: str) -> None:
    """A name is free while its room's Doc holds nothing (someone may have it
    open, but nothing is stored); a stored document loads non-empty."""
    if room.doc.get_state() != _EMPTY_STATE_VECTOR:
        raise DocumentExists(f"document {name!r} exists already")


def _check_base(doc: Doc[Any], base: bytes | None) -> None:
    if base is None:
        return
    try:
        expected = _clocks(base)
    except ValueError as exc:
        raise EditConflict(f"the base state is not a state vector: {exc}") from exc
    if _clocks(doc.get_state()) != expected:
        raise EditConflict("the document changed since the state the edit is based on")


def get_state_of(update: bytes) -> bytes:
    """The state vector a full-state update reaches; `InvalidUpdate` if it is not one."""
    try:
        with yrs_panics_as(InvalidUpdate):
            return get_state(update)
    except (ValueError, RuntimeError) as exc:
        raise InvalidUpdate(f"invalid Yjs update: {exc}") from exc


def _clocks(state_vector: bytes) -> dict[int, int]:
    return {client: clock for client, clock in decode_state_vector(state_vector).items() if clock}
