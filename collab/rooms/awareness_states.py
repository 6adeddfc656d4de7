"""One room's awareness states, kept by y-protocols' clock rule, and their encoding.

A client announces (client id, clock, state). y-protocols (awareness.js,
`applyAwarenessUpdate`) replaces the state it holds for an id when the clock is
greater, and removes it on a removal (state `null`) whose clock is at least the
one held. This module keeps what that rule needs, and nothing for anyone else:

- a state and its clock for each client id that has a state;
- the last clock of recently removed ids, `max_removed` of them at most (the
  oldest are forgotten after each flush): y-websocket clients send back every
  awareness change they hear, so the echo of a state may still be in flight when
  its owner leaves, and without its clock that echo would bring it back;
- nothing for an id that has no state: a removal of an id nobody has changes
  nothing and leaves nothing behind. (pycrdt's `Awareness`, which rooms used
  before, kept a meta entry per id ever named, for the life of the room: one
  54 KB message of removals made 6,000 of them.)

Each state is encoded once, when it is set (compact JSON, as y-protocols and
pycrdt write it); a message is those pieces joined, so neither a broadcast nor
the "all states" a joiner or a query gets re-encodes a state.

Who may set or remove which id is collab.rooms.presence's business, not this
module's: it never refuses anything.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from pycrdt import write_message, write_var_uint

_REMOVED = b"null"


class AwarenessStates:
    """The states a room holds, their clocks, and the clocks of recent removals."""

    def __init__(self, *, max_removed: int) -> None:
        self.states: dict[int, dict[str, Any]] = {}
        # client id -> clock, for every id with a state and for the recently removed
        self.meta: dict[int, int] = {}
        self._encoded: dict[int, bytes] = {}  # each state's entry, ready to send
        self._removed: OrderedDict[int, None] = OrderedDict()  # oldest first
        self._max_removed = max_removed

    def is_newer_state(self, client_id: int, clock: int) -> bool:
        """Would y-protocols take a state for `client_id` at `clock`?"""
        held = self.meta.get(client_id)
        return held is None or clock > held

    def is_removal_due(self, client_id: int, clock: int) -> bool:
        """Would y-protocols remove `client_id`'s state on a removal at `clock`?"""
        return client_id in self.states and clock >= self.meta[client_id]

    def set(self, client_id: int, clock: int, state: dict[str, Any]) -> None:
        """Hold `state`. Raises ValueError for what JSON cannot carry (NaN,
        Infinity) and RecursionError for a state nested too deep to encode."""
        text = json.dumps(state, separators=(",", ":"), allow_nan=False)
        self._encoded[client_id] = _entry(client_id, clock, text.encode())
        self.states[client_id] = state
        self.meta[client_id] = clock
        self._removed.pop(client_id, None)

    def remove(self, client_id: int, clock: int | None = None) -> None:
        """Drop `client_id`'s state, remembering its clock (or `clock`, a removal's)."""
        del self.states[client_id]
        del self._encoded[client_id]
        if clock is not None:
            self.meta[client_id] = clock
        self._removed[client_id] = None

    def forget_old_removals(self) -> None:
        """Keep the clocks of the `max_removed` most recent removals only. Called
        once their removals are encoded (a flush), never in between."""
        while len(self._removed) > self._max_removed:
            client_id, _ = self._removed.popitem(last=False)
            del self.meta[client_id]

    def encode(self, client_ids: Iterable[int]) -> bytes:
        """An awareness update: the state of each id, or its removal (`null`)."""
        pieces = [
            self._encoded.get(client_id) or _entry(client_id, self.meta[client_id], _REMOVED)
            for client_id in client_ids
        ]
        return write_var_uint(len(pieces)) + b"".join(pieces)


def _entry(client_id: int, clock: int, state_json: bytes) -> bytes:
    return write_var_uint(client_id) + write_var_uint(clock) + write_message(state_json)
