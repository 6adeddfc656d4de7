"""What attribution costs in storage and at load, on the editing trace.

Replays the automerge-paper trace as two authors taking turns (a turn of
`--turn` edits; each turn is a new editing session: the wall clock is moved
past the session gap at every change of author, the pessimistic case), one log
row per edit as a typing person makes, committed through the real `SqlStore`
in batches like the writer's. Run twice on fresh SQLite databases, without and
with attribution (claims and sessions on the rows, as the room makes them with
`Authorship`), then compacted (one snapshot), VACUUMed, and measured: bytes on
disk per edit, the attribution tables' share, and the cold load
(`load` + building the Doc), best of five.

    PYTHONPATH=. python bench/attribution.py --edits 100000
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

from collab.rooms.authorship import SESSION_GAP_S, Authorship
from collab.rooms.loading import build_doc
from collab.storage.attribution import Author
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, SaveSnapshot

TRACE = "/work/shared/data/editing-traces/automerge-paper.json.gz"
BATCH = 200


class _WallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def replay(path: Path, patches: list[Any], turn: int, *, attributed: bool) -> dict[str, Any]:
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    docs = [Doc(), Doc()]
    authors = [Author("alice", "Alice", True), Author("bob", "Bob", True)]
    clock = _WallClock()
    authorship = Authorship("trace", docs[0].get_state(), wall_clock=clock)
    ops: list[AppendUpdate] = []
    started = time.perf_counter()
    note_s = 0.0
    current = 0
    for index, (position, deleted, inserted) in enumerate(patches):
        who = (index // turn) % 2
        if who != current:
            docs[who].apply_update(docs[current].get_update(docs[who].get_state()))
            current = who
            clock.now += SESSION_GAP_S + 1  # a new burst
        clock.now += 0.2
        doc = docs[who]
        made: list[bytes] = []
        subscription = doc.observe(lambda event, made=made: made.append(event.update))
        text = doc.get("text", type=Text)
        with doc.transaction():
            if deleted:
                del text[position : position + deleted]
            if inserted:
                text.insert(position, inserted)
        doc.unobserve(subscription)
        delta = made[0]
        claims: tuple[Any, ...] = ()
        sessions: tuple[Any, ...] = ()
        if attributed:
            before = time.perf_counter()
            authorship.note_local(delta, authors[who])
            claims, sessions = authorship.take_pending()
            note_s += time.perf_counter() - before
        ops.append(AppendUpdate("trace", delta, None, claims, sessions))
        if len(ops) >= BATCH:
            await store.commit(ops)
            ops = []
    if ops:
        await store.commit(ops)
    replay_s = time.perf_counter() - started
    stored = await store.load("trace")
    state = build_doc(stored, "trace").get_update()
    await store.commit([SaveSnapshot("trace", state)])
    loads = []
    for _ in range(5):
        before = time.perf_counter()
        build_doc(await store.load("trace"), "trace")
        loads.append(time.perf_counter() - before)
    await store.close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
        # Bytes of the rows themselves (dbstat's payload), not of whole pages.
        payload = dict(db.execute("SELECT name, SUM(payload) FROM dbstat GROUP BY name"))
        document_bytes = payload.get("snapshots", 0) + payload.get("updates", 0)
        attribution_bytes = sum(
            size
            for name, size in payload.items()
            if name.startswith(("client_authors", "edit_sessions", "ix_edit_sessions"))
            or name == "sqlite_autoindex_client_authors_1"
        )
        sessions_rows = db.execute("SELECT COUNT(*) FROM edit_sessions").fetchone()[0]
    finally:
        db.close()
    return {
        "attributed": attributed,
        "edits": len(patches),
        "document_bytes": document_bytes,  # snapshots + log rows
        "attribution_bytes": attribution_bytes,
        "sessions": sessions_rows,
        "replay_s": round(replay_s, 2),
        "note_us_per_edit": round(note_s / len(patches) * 1e6, 2),
        "cold_load_ms": round(min(loads) * 1000, 1),
        "final_chars": len(str(docs[current].get("text", type=Text))),
    }


def _patches(edits: int) -> list[Any]:
    with gzip.open(TRACE) as f:
        txns = json.load(f)["txns"]
    patches = [patch for txn in txns for patch in txn["patches"]]
    return patches[:edits] if edits else patches


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=100_000, help="0: the whole trace")
    parser.add_argument("--turn", type=int, default=500, help="edits per author's turn")
    args = parser.parse_args()
    patches = _patches(args.edits)
    with tempfile.TemporaryDirectory() as tmp:
        plain = await replay(Path(tmp) / "plain.db", patches, args.turn, attributed=False)
        with_attr = await replay(Path(tmp) / "attr.db", patches, args.turn, attributed=True)
    for row in (plain, with_attr):
        stored = row["document_bytes"] + row["attribution_bytes"]
        row["stored_bytes_per_edit"] = round(stored / row["edits"], 3)
        print(json.dumps(row))
    growth = with_attr["attribution_bytes"] / with_attr["document_bytes"]
    load = with_attr["cold_load_ms"] / plain["cold_load_ms"]
    print(
        json.dumps(
            {"stored_size_growth_pct": round(growth * 100, 1), "cold_load_ratio": round(load, 2)}
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
