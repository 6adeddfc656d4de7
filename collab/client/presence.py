"""A session's presence: what the others see of this program, and what it sees of them.

Presence is y-protocols awareness: each client has one JSON state, which the
browser editor reads as `user: {name, color, colorLight}` (the name and colour
of its caret and of the presence bar) and `cursor: {anchor, head}` (relative
positions: collab.client.cursor). The local state is sent when it changes, again
on every reconnect, and renewed every `renew_interval_s`, because Yjs clients
forget a state not renewed for 30 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pycrdt import Awareness, Doc

from collab.client.cursor import relative_position


class Presence:
    """This session's awareness state, and the others' (`others`)."""

    def __init__(self, doc: Doc[Any], on_change: Callable[[bytes], None]) -> None:
        self.awareness = Awareness(doc)
        self._client_id = doc.client_id
        self._doc = doc
        self._on_change = on_change  # takes the encoded update of our own state

    @property
    def local(self) -> dict[str, Any] | None:
        """The state the others see, or None (not present)."""
        return self.awareness.get_local_state()

    @property
    def others(self) -> dict[int, dict[str, Any]]:
        """Every other client's state, by client id (Yjs `clientID`)."""
        return {k: v for k, v in self.awareness.states.items() if k != self._client_id}

    def set(self, state: dict[str, Any] | None) -> None:
        """Replace the whole state, e.g. `{"user": {"name": "Summariser", "color": "#0e7490"}}`
        (a name and a `#rrggbb` colour are what the editor shows). None: not present."""
        self.awareness.set_local_state(state)
        self._on_change(self.encoded())

    def set_field(self, name: str, value: Any) -> None:
        """Set one field of the state, keeping the others."""
        self.set({**(self.local or {}), name: value})

    def set_cursor(self, root: str, anchor: int, head: int | None = None) -> None:
        """Show a caret at `anchor` (a `str` index) of the root text `root` (the
        editor's is "content"), or a selection from `anchor` to `head`. It stays
        on the same character while others edit around it."""
        self.set_field(
            "cursor",
            {
                "anchor": relative_position(self._doc, root, anchor),
                "head": relative_position(self._doc, root, anchor if head is None else head),
            },
        )

    def clear_cursor(self) -> None:
        """No caret: the others stop showing one for this client."""
        self.set_field("cursor", None)

    def encoded(self) -> bytes:
        """Our own state as an awareness update (with its clock)."""
        return self.awareness.encode_awareness_update([self._client_id])

    def renew(self) -> bytes | None:
        """Bump our state's clock so the others keep it; None when not present."""
        local = self.local
        if local is None:
            return None
        self.awareness.set_local_state(local)
        return self.encoded()

    def forget_others(self) -> None:
        """Disconnected: the others' states would go stale; the server sends them again."""
        others = [k for k in self.awareness.states if k != self._client_id]
        if others:
            self.awareness.remove_awareness_states(others, "disconnected")
