"""CPU time of one single-append commit on SQLite (`SqlStore.commit`), no server.

What the events outbox costs on the hottest write: run it against two checkouts
and compare, alternating runs (the machine is noisy):

    PYTHONPATH=/path/to/before .venv/bin/python bench/append_commit_cpu.py
    PYTHONPATH=/path/to/after  .venv/bin/python bench/append_commit_cpu.py

Prints microseconds of process CPU per commit, over `--commits` commits after
500 to warm up.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from pycrdt import Doc, Text

from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=5500)
    args = parser.parse_args()
    doc: Doc = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for _ in range(500 + args.commits):
        text += "x"
    with tempfile.TemporaryDirectory() as directory:
        store = SqlStore(f"sqlite+aiosqlite:///{directory}/collab.db")
        await store.open()
        for update in updates[:500]:
            await store.commit([AppendUpdate("doc", update)])
        started = time.process_time()
        for update in updates[500:]:
            await store.commit([AppendUpdate("doc", update)])
        spent = time.process_time() - started
        await store.close()
    print(f"{spent / args.commits * 1e6:.1f} us CPU per single-append commit")


if __name__ == "__main__":
    asyncio.run(main())
