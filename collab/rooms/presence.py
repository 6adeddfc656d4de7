"""Who is in one document: awareness states, who announced each, and their bounds.

Owns the room's awareness states (collab.rooms.awareness_states) and the
bookkeeping the reference server does - which client ids each connection
announced, so they are removed (and the removal broadcast) when it leaves and no
ghost cursors remain - extended to a cluster: states another process relayed
are owned by that process, so when it dies (its heartbeat expires) the others
remove its clients' presence.

Every state has exactly one owner, a local peer or another process: whoever
announced it last, so a client that reconnected (here or through another
process) is not removed when its old connection goes. Client ids are not
authenticated by the protocol; what one connection can do with them is bounded:

- it owns at most `max_client_ids_per_connection` ids (y-websocket uses one);
  a state for one more is ignored, as is a new id once the room holds
  `max_states` states. Neither closes the connection: a y-websocket client sends
  back every awareness change it hears (and a tab relays its sibling tabs'), so
  an honest client may briefly announce ids that are not its own;
- a removal (`null`) is honoured only from the id's owner; from anyone else it
  changes nothing and leaves nothing behind;
- an empty state (`{}`, what a y-websocket client announces before it says who
  it is) says nothing: it is a removal, under the same rule. So no `{}` is ever
  relayed, and an owner clearing its state to `{}` is relayed as `null`;
- query-awareness is answered at most once per `query_interval_s` per
  connection: the answer is every state, and since then that connection has been
  sent every change, so a quicker repeat is ignored (and counted).

Every change is encoded once and broadcast to the room's peers; changes made
here (by a local peer, or a local peer leaving) are also published to the
other processes, changes that came from another process are not (it published
them itself). Changes are coalesced per event-loop tick: all the states that
changed while the loop handled one batch of incoming frames go out as ONE
awareness message (the format carries any number of clients), so fifty cursors
moving at once cost one send per peer, not fifty - at no added latency.

Names and colours in the states are data from strangers: the server relays them
untouched (they are the clients' business) but reports only cleaned ones
(`present_users`, the REST listing's `present`).
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from collab.errors import AwarenessTooLarge, InvalidAwareness
from collab.metrics import Metrics
from collab.protocol.codec import (
    AwarenessEntry,
    AwarenessUpdate,
    decode_awareness_update,
    encode_awareness,
)
from collab.rooms.awareness_states import AwarenessStates
from collab.rooms.cluster_feed import ClusterFeed
from collab.rooms.end_of_tick import EndOfTick
from collab.rooms.peer import Peer

logger = logging.getLogger(__name__)

# What the document list reports of a state's `user` (see `present_user`).
MAX_PRESENT_NAME_CHARS = 100
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
# Unicode categories dropped from a name: controls, format characters (bidi
# overrides, zero-width characters) and lone surrogates, which JSON can carry.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


@dataclass(frozen=True, slots=True)
class PresenceLimits:
    """What one room's clients may announce (see the module docstring)."""

    max_client_ids_per_connection: int = 4
    max_states: int = 1_000
    query_interval_s: float = 1.0


class PresentUser(NamedTuple):
    """A person in a document, as their editor announces them (cleaned)."""

    name: str
    color: str  # "#rrggbb", or "" when none or not one


def present_user(state: Mapping[str, Any]) -> PresentUser | None:
    """The person a state names by the y-codemirror convention
    `{"user": {"name", "color", ...}}`, or None if it names nobody.

    The name loses control and format characters (whitespace runs become one
    space) and is cut to MAX_PRESENT_NAME_CHARS; a colour that is not `#rrggbb`
    is reported as "" (it would otherwise reach a `style` attribute)."""
    user = state.get("user")
    if not isinstance(user, dict):
        return None
    name, color = user.get("name"), user.get("color")
    if not isinstance(name, str):
        return None
    name = _clean_name(name)
    if not name:
        return None
    color = color if isinstance(color, str) and _COLOR.fullmatch(color) else ""
    return PresentUser(name, color)


def _clean_name(name: str) -> str:
    kept = (
        " " if char.isspace() else char
        for char in name
        if char.isspace() or unicodedata.category(char) not in _HIDDEN_CATEGORIES
    )
    return " ".join("".join(kept).split())[:MAX_PRESENT_NAME_CHARS].rstrip()


class Presence:
    """A room's awareness states: who is here, their cursors and names.

    Applies what peers (and other processes) announce within the limits,
    remembers which client ids each peer owns so their states go when it leaves,
    and broadcasts the changes once per event-loop tick.
    """

    def __init__(
        self,
        document: str,
        peers: Mapping[int, Peer],
        broadcast: Callable[[bytes], None],
        feed: ClusterFeed,
        *,
        max_bytes: int,
        limits: PresenceLimits = PresenceLimits(),
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._document = document
        self._peers = peers  # the room's own mapping, read live
        self._broadcast = broadcast
        self._feed = feed
        self._max_bytes = max_bytes
        self._limits = limits
        self._clock = clock
        self._metrics = metrics or Metrics()
        # Removals are remembered as long as states are bounded: stale echoes of
        # a room's worth of states can be refused.
        self.awareness = AwarenessStates(max_removed=limits.max_states)
        # awareness client ids announced through each other process
        self.remote_client_ids: dict[str, set[int]] = {}
        self._all_states: bytes | None = None  # encode_all's message, until a change
        self._query_answered_at: dict[Peer, float] = {}
        self._refusal_logged: set[Peer] = set()  # one log line per connection
        # client ids changed during this tick, to send at its end (see _flush)
        self._to_broadcast: set[int] = set()
        self._to_publish: set[int] = set()
        self._end_of_tick = EndOfTick(self._flush)

    def encode_all(self) -> bytes:
        """Every state, as one awareness message (encoded once per change)."""
        if self._all_states is None:
            self._all_states = encode_awareness(self.awareness.encode(self.awareness.states))
        return self._all_states

    def answer_query(self, peer: Peer) -> None:
        """A query-awareness: every state, at most once per interval per peer."""
        now = self._clock()
        answered_at = self._query_answered_at.get(peer)
        if answered_at is not None and now - answered_at < self._limits.query_interval_s:
            # It has been sent every change since its last answer: nothing is missing.
            self._metrics.messages_ignored.labels("query_awareness_repeated").inc()
            return
        self._query_answered_at[peer] = now
        peer.send(self.encode_all())

    def apply_from_peer(self, peer: Peer, message: AwarenessUpdate) -> None:
        if len(message.payload) > self._max_bytes:
            raise AwarenessTooLarge(
                f"awareness update of {len(message.payload)} bytes exceeds {self._max_bytes}"
            )
        refused: set[str] = set()
        changed = [
            entry.client_id
            for entry in message.entries
            if self._apply(entry, peer.client_ids, peer, refused)
        ]
        if refused:
            self._note_refused(peer, refused)
        if changed:
            self._note_changed(changed, is_local=True)

    def remove_peer(self, peer: Peer) -> None:
        self._query_answered_at.pop(peer, None)
        self._refusal_logged.discard(peer)
        client_ids = self._remove_all(peer.client_ids)
        if client_ids:
            # A local change: broadcast and published to everyone left.
            self._note_changed(client_ids, is_local=True)

    def apply_from_process(self, process_id: str, payload: bytes) -> None:
        """States (or removals) that a peer of another process announced; that
        process bounded them. Raises InvalidAwareness if they do not decode."""
        owned = self.remote_client_ids.setdefault(process_id, set())
        changed = [
            entry.client_id
            for entry in decode_awareness_update(payload)
            if self._apply(entry, owned, None, set())
        ]
        if changed:
            self._note_changed(changed, is_local=False)

    def remove_process(self, process_id: str) -> None:
        """That process died: its clients' presence goes, for everyone here."""
        client_ids = self._remove_all(self.remote_client_ids.pop(process_id, set()))
        if client_ids:
            self._note_changed(client_ids, is_local=False)

    def local_states(self, peers: list[Peer]) -> bytes | None:
        """The states `peers` announced, as one awareness update (for a process
        that joins or comes back), or None if there are none."""
        client_ids = sorted({i for peer in peers for i in peer.client_ids})
        return self.awareness.encode(client_ids) if client_ids else None

    def present_users(self) -> list[PresentUser]:
        """Who is in the document (see `present_user`): one entry per distinct
        (name, colour) - one person in two tabs is one person - sorted by name.
        States that name nobody (other clients, or a state that has not said
        who it is yet) are not people to show."""
        users = {user for s in self.awareness.states.values() if (user := present_user(s))}
        return sorted(users)

    def _apply(
        self, entry: AwarenessEntry, owned: set[int], peer: Peer | None, refused: set[str]
    ) -> bool:
        """Apply one entry announced by the owner of `owned` (`peer`, or another
        process when None); True if it changed the room's states."""
        client_id, clock, state = entry.client_id, entry.clock, entry.state
        awareness = self.awareness
        if not state:  # null, or {}: both say "no state"
            if client_id not in owned or not awareness.is_removal_due(client_id, clock):
                return False
            awareness.remove(client_id, clock)
            owned.discard(client_id)
            return True
        if not awareness.is_newer_state(client_id, clock):
            return False  # a duplicate, or an echo of what we sent (y-websocket does)
        if peer is not None and client_id not in owned:
            limit = self._limit_refusing(peer, client_id)
            if limit is not None:
                refused.add(limit)
                return False
        is_owned_elsewhere = client_id not in owned and client_id in awareness.states
        try:
            awareness.set(client_id, clock, state)
        except (ValueError, RecursionError) as exc:
            raise InvalidAwareness(f"awareness state cannot be relayed: {exc}") from exc
        if is_owned_elsewhere:
            # It moved: a client reconnected (here or through another process)
            # and announced itself there before its old connection was gone.
            for other in self._owners():
                other.discard(client_id)
        owned.add(client_id)
        return True

    def _remove_all(self, owned: set[int]) -> list[int]:
        """Remove the states of `owned` (an owner that goes); the ids removed."""
        # Every owned id has a state; the check keeps a leave from ever failing.
        client_ids = sorted(i for i in owned if i in self.awareness.states)
        owned.clear()
        for client_id in client_ids:
            self.awareness.remove(client_id)
        return client_ids

    def _limit_refusing(self, peer: Peer, client_id: int) -> str | None:
        """The limit that a new client id for `peer` would exceed, if any."""
        if len(peer.client_ids) >= self._limits.max_client_ids_per_connection:
            return "awareness_client_ids_per_connection"
        if client_id not in self.awareness.states and (
            len(self.awareness.states) >= self._limits.max_states
        ):
            return "awareness_states_per_document"
        return None

    def _note_refused(self, peer: Peer, limits: set[str]) -> None:
        for limit in sorted(limits):
            self._metrics.refused(limit)  # once per message, not per entry
        if peer not in self._refusal_logged:
            self._refusal_logged.add(peer)
            logger.info(
                "doc=%s peer=%d awareness states ignored: %s (owns %d client ids)",
                self._document,
                peer.id,
                ", ".join(sorted(limits)),
                len(peer.client_ids),
            )

    def _note_changed(self, client_ids: list[int], *, is_local: bool) -> None:
        self._all_states = None
        self._to_broadcast.update(client_ids)
        if is_local:
            self._to_publish.update(client_ids)
        self._end_of_tick.schedule()

    def _flush(self) -> None:
        """Send this tick's changes: one message to the peers, one to the cluster."""
        to_broadcast, self._to_broadcast = self._to_broadcast, set()
        to_publish, self._to_publish = self._to_publish, set()
        if to_broadcast:
            payload = self.awareness.encode(sorted(to_broadcast))
            self._broadcast(encode_awareness(payload))
            if to_publish == to_broadcast:
                self._feed.publish_awareness(self._document, payload)
                to_publish = set()
        if to_publish:
            self._feed.publish_awareness(self._document, self.awareness.encode(sorted(to_publish)))
        self.awareness.forget_old_removals()

    def _owners(self) -> list[set[int]]:
        return [peer.client_ids for peer in self._peers.values()] + list(
            self.remote_client_ids.values()
        )
