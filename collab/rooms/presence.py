"""Who is in one document: awareness states, and who announced each of them.

Owns the room's pycrdt `Awareness` and the bookkeeping the reference server
does - which client ids each connection announced, so they are removed (and the
removal broadcast) when it leaves and no ghost cursors remain - extended to a
cluster: states another process relayed are tagged with that process, so when
it dies (its heartbeat expires) the others remove its clients' presence.

Every change is encoded once and broadcast to the room's peers; changes made
here (by a local peer, or a local peer leaving) are also published to the
other processes, changes that came from another process are not (it published
them itself). Changes are coalesced per event-loop tick: all the states that
changed while the loop handled one batch of incoming frames go out as ONE
awareness message (the format carries any number of clients), so fifty cursors
moving at once cost one send per peer, not fifty - at no added latency.

A client id belongs to whoever announced it last, so a client that reconnected
through another process is not removed when its old one dies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from pycrdt import Awareness, Doc

from collab.errors import AwarenessTooLarge, InvalidAwareness
from collab.protocol.codec import encode_awareness
from collab.rooms.cluster_feed import ClusterFeed, RemoteProcess
from collab.rooms.end_of_tick import EndOfTick
from collab.rooms.peer import Peer

# Awareness states are whatever clients send; what the document list echoes is bounded.
_MAX_PRESENT_NAME_CHARS = 100
_MAX_PRESENT_COLOR_CHARS = 32


class PresentUser(NamedTuple):
    """A person in a document, as their editor announces them."""

    name: str
    color: str


class Presence:
    """A room's awareness states: who is here, their cursors and names.

    Applies what peers (and other processes) announce, remembers which client
    ids each peer owns so their states go when it leaves, and broadcasts the
    changes once per event-loop tick.
    """

    def __init__(
        self,
        document: str,
        doc: Doc[Any],
        peers: Mapping[int, Peer],
        broadcast: Callable[[bytes], None],
        feed: ClusterFeed,
        *,
        max_bytes: int,
    ) -> None:
        self._document = document
        self._peers = peers  # the room's own mapping, read live
        self._broadcast = broadcast
        self._feed = feed
        self._max_bytes = max_bytes
        # awareness client ids announced through each other process
        self.remote_client_ids: dict[str, set[int]] = {}
        self.awareness = Awareness(doc)
        # The server has no presence of its own (as in the reference server).
        self.awareness.set_local_state(None)
        self.awareness.observe(self._on_change)
        # client ids changed during this tick, to send at its end (see _flush)
        self._to_broadcast: set[int] = set()
        self._to_publish: set[int] = set()
        self._end_of_tick = EndOfTick(self._flush)

    def encode_all(self) -> bytes:
        """Every state, as one awareness message."""
        return encode_awareness(self.awareness.encode_awareness_update(list(self.awareness.states)))

    def apply_from_peer(self, peer: Peer, payload: bytes) -> None:
        if len(payload) > self._max_bytes:
            raise AwarenessTooLarge(
                f"awareness update of {len(payload)} bytes exceeds {self._max_bytes}"
            )
        try:
            self.awareness.apply_awareness_update(payload, peer)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidAwareness(f"invalid awareness update: {exc}") from exc

    def remove_peer(self, peer: Peer) -> None:
        if peer.client_ids:
            # origin None: a local change, broadcast and published to everyone left.
            self.awareness.remove_awareness_states(sorted(peer.client_ids), None)
            peer.client_ids.clear()

    def apply_from_process(self, process_id: str, payload: bytes) -> None:
        """States (or removals) that a peer of another process announced."""
        self.awareness.apply_awareness_update(payload, RemoteProcess(process_id))

    def remove_process(self, process_id: str) -> None:
        """That process died: its clients' presence goes, for everyone here."""
        client_ids = self.remote_client_ids.pop(process_id, set())
        if client_ids:
            self.awareness.remove_awareness_states(sorted(client_ids), RemoteProcess(process_id))

    def local_states(self, peers: list[Peer]) -> bytes | None:
        """The states `peers` announced, as one awareness update (for a process
        that joins or comes back), or None if there are none."""
        client_ids = {i for peer in peers for i in peer.client_ids}
        present = sorted(client_ids & set(self.awareness.states))
        return self.awareness.encode_awareness_update(present) if present else None

    def present_users(self) -> list[PresentUser]:
        """Who is in the document, from the awareness states that follow the
        y-codemirror convention `{"user": {"name", "color", ...}}`.

        One entry per distinct (name, colour) — one person in two tabs is one
        person — sorted by name. States without a string name (other clients,
        or a state that has not said who it is yet) are not people to show.
        """
        users: set[PresentUser] = set()
        for state in self.awareness.states.values():
            user = state.get("user") if isinstance(state, dict) else None
            if not isinstance(user, dict):
                continue
            name, color = user.get("name"), user.get("color")
            if isinstance(name, str) and name.strip():
                color = color[:_MAX_PRESENT_COLOR_CHARS] if isinstance(color, str) else ""
                users.add(PresentUser(name[:_MAX_PRESENT_NAME_CHARS], color))
        return sorted(users)

    def _on_change(self, topic: str, change: tuple[dict[str, Any], Any]) -> None:
        if topic != "update":
            return
        changes, origin = change
        announced = changes["added"] + changes["updated"]
        removed = changes["removed"]
        owned = self._owned_by(origin)
        if owned is not None:
            moved = [client_id for client_id in announced if client_id not in owned]
            if moved:
                # A client that reconnected (here or through another process)
                # announces itself there before its old connection is gone: the
                # old owner must not remove it when it leaves or dies.
                for other in self._owners():
                    if other is not owned:
                        other.difference_update(moved)
            owned.update(announced)
            owned.difference_update(removed)
        if removed and isinstance(origin, RemoteProcess):
            for client_ids in self.remote_client_ids.values():
                client_ids.difference_update(removed)
        changed = announced + removed
        if not changed:
            return
        self._to_broadcast.update(changed)
        if not isinstance(origin, RemoteProcess):
            self._to_publish.update(changed)
        self._end_of_tick.schedule()

    def _flush(self) -> None:
        """Send this tick's changes: one message to the peers, one to the cluster."""
        to_broadcast, self._to_broadcast = self._to_broadcast, set()
        to_publish, self._to_publish = self._to_publish, set()
        if to_broadcast:
            payload = self.awareness.encode_awareness_update(sorted(to_broadcast))
            self._broadcast(encode_awareness(payload))
            if to_publish == to_broadcast:
                self._feed.publish_awareness(self._document, payload)
                return
        if to_publish:
            payload = self.awareness.encode_awareness_update(sorted(to_publish))
            self._feed.publish_awareness(self._document, payload)

    def _owned_by(self, origin: Any) -> set[int] | None:
        """The client ids `origin` (a local peer, another process) announced."""
        if isinstance(origin, Peer):
            return origin.client_ids
        if isinstance(origin, RemoteProcess):
            return self.remote_client_ids.setdefault(origin.process_id, set())
        return None

    def _owners(self) -> list[set[int]]:
        return [peer.client_ids for peer in self._peers.values()] + list(
            self.remote_client_ids.values()
        )
