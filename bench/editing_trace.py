"""The automerge-paper editing trace as Yjs updates: generated once with pycrdt, cached.

The trace (see SOURCE.md beside it) is a list of txns, each a list of
`[pos, n_deleted, inserted]` patches on one text. Replaying txn i on a pycrdt Doc
yields exactly one Yjs update (one transaction), so update i is what a real
editor would have sent for that keystroke. The updates are cached in
`bench/.cache/` with the trace's SHA-256 in the file name, so a changed trace
is regenerated rather than trusted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from pycrdt import Doc, Text, TransactionEvent

TRACE_PATH = Path("/work/shared/data/editing-traces/automerge-paper.json.gz")
TEXT_ROOT = "text"  # the root name the benchmark clients read
_CACHE_MAGIC = b"YBENCH1\n"
_LENGTH = struct.Struct("<I")

Patch = tuple[int, int, str]


@dataclass(frozen=True)
class Trace:
    sha256: str
    start_content: str
    end_content: str
    txns: list[list[Patch]]

    def text_after(self, count: int) -> str:
        """The text after the first `count` txns, by plain string edits (no CRDT)."""
        if count >= len(self.txns):
            return self.end_content
        text = self.start_content
        for patches in self.txns[:count]:
            for pos, n_deleted, inserted in patches:
                text = text[:pos] + inserted + text[pos + n_deleted :]
        return text


def load_trace(path: Path = TRACE_PATH) -> Trace:
    raw = path.read_bytes()
    data = json.loads(gzip.decompress(raw))
    txns = [[(int(p[0]), int(p[1]), str(p[2])) for p in txn["patches"]] for txn in data["txns"]]
    return Trace(
        sha256=hashlib.sha256(raw).hexdigest(),
        start_content=data["startContent"],
        end_content=data["endContent"],
        txns=txns,
    )


def generate_updates(trace: Trace, count: int) -> list[bytes]:
    """One Yjs update per txn for the first `count` txns, made by one pycrdt client."""
    if trace.start_content:
        raise ValueError("the trace must start empty (automerge-paper does)")
    doc: Doc[Text] = Doc(client_id=1)
    text = doc.get(TEXT_ROOT, type=Text)
    updates: list[bytes] = []

    def collect(event: TransactionEvent) -> None:
        updates.append(event.update)

    subscription = doc.observe(collect)
    for patches in trace.txns[:count]:
        with doc.transaction():
            for pos, n_deleted, inserted in patches:
                if n_deleted:
                    del text[pos : pos + n_deleted]
                if inserted:
                    text.insert(pos, inserted)
    doc.unobserve(subscription)
    if len(updates) != min(count, len(trace.txns)):
        raise RuntimeError(f"expected one update per txn, got {len(updates)} for {count}")
    return updates


def cached_updates(trace: Trace, count: int, cache_dir: Path) -> tuple[list[bytes], float]:
    """The first `count` updates, from the cache when it holds at least that many.

    Returns the updates and the seconds spent generating them (0.0 on a cache hit).
    """
    count = min(count, len(trace.txns))
    cache_dir.mkdir(parents=True, exist_ok=True)
    for candidate in sorted(cache_dir.glob(f"updates-{trace.sha256[:16]}-*.bin")):
        cached = int(candidate.stem.rsplit("-", 1)[1])
        if cached >= count:
            return _read_cache(candidate)[:count], 0.0
    started = time.perf_counter()
    updates = generate_updates(trace, count)
    elapsed = time.perf_counter() - started
    _write_cache(cache_dir / f"updates-{trace.sha256[:16]}-{count:06d}.bin", updates)
    return updates, elapsed


def _write_cache(path: Path, updates: list[bytes]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(_CACHE_MAGIC)
        for update in updates:
            f.write(_LENGTH.pack(len(update)))
            f.write(update)
    tmp.replace(path)


def _read_cache(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if not data.startswith(_CACHE_MAGIC):
        raise ValueError(f"{path} is not an update cache")
    updates: list[bytes] = []
    offset = len(_CACHE_MAGIC)
    while offset < len(data):
        (size,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        updates.append(data[offset : offset + size])
        offset += size
    return updates
