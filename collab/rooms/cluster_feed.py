"""The seam between this process's rooms and the other server processes.

A room tells the other processes what its peers did through a `ClusterFeed`;
the registry also follows each loaded document's stream and announces
deletions through the wider `Cluster`. collab.cluster.redis_bus
satisfies both; a server on its own has `NoCluster`, which tells nobody and
follows nothing - that is all single-process mode is. Publishing never blocks:
the bus queues, and its own task does the sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class ClusterFeed(Protocol):
    def publish_update(
        self, document: str, update: bytes, row_id: int, owners: Mapping[int, str] = {}
    ) -> None:
        """`update` is committed as log row `row_id`: the others apply and relay it.
        `owners`: the client ids it claimed, with their authors' subjects."""

    def publish_awareness(self, document: str, payload: bytes) -> None:
        """Awareness states (or removals) this process's peers announced."""


class Cluster(ClusterFeed, Protocol):
    async def stream_position(self, document: str) -> str | None:
        """Where the document's stream ends now (read BEFORE loading it from
        storage: what was published before is in storage, what comes after is
        read from the stream); None if it cannot be told now."""

    def follow(self, document: str, position: str | None) -> None:
        """Apply what others publish about the document after `position`
        (None: catch up from storage as soon as the stream can be read)."""

    def unfollow(self, document: str) -> None: ...

    def publish_deleted(self, document: str) -> None:
        """The document was deleted: the others close its clients (4410)."""


class NoCluster:
    """A server on its own: there is nobody to tell and nothing to follow."""

    def publish_update(
        self, document: str, update: bytes, row_id: int, owners: Mapping[int, str] = {}
    ) -> None:
        pass

    def publish_awareness(self, document: str, payload: bytes) -> None:
        pass

    async def stream_position(self, document: str) -> str | None:
        return None

    def follow(self, document: str, position: str | None) -> None:
        pass

    def unfollow(self, document: str) -> None:
        pass

    def publish_deleted(self, document: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RemoteProcess:
    """The origin of awareness states that came from another server process."""

    process_id: str
