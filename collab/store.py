"""The storage seam: what the rooms need from a database, as a small Protocol.

Owns the write operations (`AppendUpdate`, `SaveSnapshot`, `DeleteDocument`) and
the records read back. `SqlStore` satisfies `DocumentStore`; another backend
only has to provide the same methods with the same transaction guarantees:

- `commit(ops)` applies every op in order in ONE transaction: all or nothing.
- `SaveSnapshot` deletes exactly the log entries already in the store for that
  document, because the writer orders ops so that every update committed before
  a snapshot is contained in the snapshot's state.
- `load` returns the latest snapshot and every log entry after it, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AppendUpdate:
    document: str
    update: bytes


@dataclass(frozen=True, slots=True)
class SaveSnapshot:
    """The full state of a document; replaces the log entries it covers."""

    document: str
    state: bytes
    preview: str = ""
    kind: str = "auto"
    label: str | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteDocument:
    document: str


WriteOp = AppendUpdate | SaveSnapshot | DeleteDocument


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """What loading a document needs: latest snapshot state, then the log after it."""

    snapshot: bytes | None
    updates: list[bytes] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return self.snapshot is None and not self.updates


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    name: str
    created_at: float  # Unix seconds
    updated_at: float
    size_bytes: int  # latest snapshot plus the log entries after it
    log_entries: int
    snapshots: int


class DocumentStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(self, ops: Sequence[WriteOp]) -> None: ...

    async def load(self, document: str) -> StoredDocument: ...

    async def document_info(self, document: str) -> DocumentInfo | None: ...

    async def list_documents(self) -> list[DocumentInfo]: ...

    async def ping(self) -> None: ...
