"""Whether a Yjs update would stay pending: a job for a compute worker.

yrs integrates an update's structs only once everything they build on is
there (the client's earlier clocks, the items they are inserted next to);
the others stay "pending" inside the Doc: invisible, never in an update event,
so never stored. The HTTP editing API refuses such an update instead
(collab.history.edits). pycrdt does not expose the pending store, so the test
is done on a scratch copy: apply the update, then ask which of its structs the
copy's state does not cover.

Pure functions of bytes, so a worker process (or a thread, for a small
document) runs them.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, get_update

from collab.errors import InvalidUpdate
from collab.rooms.yrs_panics import yrs_panics_as


def is_pending_after(state: bytes, update: bytes) -> bool:
    """Apply `update` to a scratch copy of the full state `state`: whether some
    of its structs could not be integrated. A delete of an unknown item is not
    detected: it changes nothing visible either way."""
    scratch: Doc[Any] = Doc()
    scratch.apply_update(state)
    try:
        with yrs_panics_as(InvalidUpdate):
            scratch.apply_update(update)
    except (ValueError, RuntimeError) as exc:
        raise InvalidUpdate(f"invalid Yjs update: {exc}") from exc
    return has_structs(uncovered(update, scratch.get_state()))


def uncovered(update: bytes, state_vector: bytes) -> bytes:
    """The part of `update` a Doc at `state_vector` lacks (its structs beyond
    that state, and its whole delete set); `InvalidUpdate` if it is not one."""
    try:
        with yrs_panics_as(InvalidUpdate):
            return get_update(update, state_vector)
    except (ValueError, RuntimeError) as exc:
        raise InvalidUpdate(f"invalid Yjs update: {exc}") from exc


def has_structs(update: bytes) -> bool:
    """Whether a v1 update holds any struct: its first varuint counts the clients
    that have some, and only 0 encodes as a zero first byte."""
    return update[:1] != b"\x00"
