"""Webhook delivery latency: from a change's commit to its event reaching a receiver.

Starts `collab serve` (SQLite, a temporary directory) with one webhook
subscription pointing at a receiver in this process (asyncio streams), creates
documents one after another at a steady rate through real WebSocket clients,
and reads each delivered event's `occurred_at` (the commit's time, written by
the change's transaction) against its arrival time:

- `document.created`: commit -> delivery (the outbox, the events task's poll,
  publishing, the signed POST);
- `document.updated`: the last edit's commit -> delivery, which includes the
  debounce (`COLLAB_EVENTS_DEBOUNCE_S`) by design.

    .venv/bin/python bench/webhook_latency.py --documents 200 --rate 20
    .venv/bin/python bench/webhook_latency.py --poll-interval 0.05

Prints one Markdown row per event type (p50 / p99 / max, in ms). Uses the
project's venv only (websockets, pycrdt); nothing here is imported by collab.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import websockets
from pycrdt import Doc, Text, create_update_message

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-webhook-secret-0123456789"


class Receiver:
    def __init__(self, expected: int) -> None:
        self.arrivals: list[tuple[float, dict[str, object]]] = []
        self.expected = expected
        self.all_arrived = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            self.arrivals.append((time.time(), json.loads(body)))
            if len(self.arrivals) >= self.expected:
                self.all_arrived.set()
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def collab_server(env: dict[str, str], directory: Path) -> AsyncIterator[int]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab", "serve", "--port", str(port),
        "--database", f"sqlite+aiosqlite:///{directory / 'collab.db'}",
        cwd=REPO, env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        process.terminate()
        await process.wait()


async def create_document(port: int, name: str) -> None:
    """One edit through a real WebSocket; returns once its echo (the commit) is back."""
    doc: Doc = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    text += f"document {name}"
    doc.unobserve(subscription)
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/{name}") as ws:
        await ws.send(create_update_message(updates[0]))
        async for message in ws:
            if isinstance(message, bytes) and message[:2] == b"\x00\x02":
                return


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="documents created per second")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="COLLAB_EVENTS_POLL_INTERVAL_S (default: the server's)")  # fmt: skip
    parser.add_argument("--debounce", type=float, default=None, help="COLLAB_EVENTS_DEBOUNCE_S")
    args = parser.parse_args()
    receiver = Receiver(2 * args.documents)  # created and updated of each
    listener = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver_port = listener.sockets[0].getsockname()[1]
    env = {
        "COLLAB_WEBHOOK_URLS": f"http://127.0.0.1:{receiver_port}/hooks",
        "COLLAB_WEBHOOK_SECRET": SECRET,
    }
    if args.poll_interval is not None:
        env["COLLAB_EVENTS_POLL_INTERVAL_S"] = str(args.poll_interval)
    if args.debounce is not None:
        env["COLLAB_EVENTS_DEBOUNCE_S"] = str(args.debounce)
    with tempfile.TemporaryDirectory() as directory:
        async with collab_server(env, Path(directory)) as port:
            started = time.monotonic()
            for i in range(args.documents):
                await create_document(port, f"bench-{i}")
                delay = started + (i + 1) / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receiver.all_arrived.wait(), 120)
    listener.close()
    print(f"| event | n | p50 ms | p99 ms | max ms |  ({args.documents} documents at "
          f"{args.rate:g}/s, poll {args.poll_interval or 'default'}, "
          f"debounce {args.debounce or 'default'})")  # fmt: skip
    print("|---|---|---|---|---|")
    for kind in ("document.created", "document.updated"):
        latencies = [
            (arrived - _unix(event["occurred_at"])) * 1000
            for arrived, event in receiver.arrivals
            if event["type"] == kind
        ]
        if latencies:
            print(
                f"| {kind} | {len(latencies)} | {statistics.median(latencies):.0f} | "
                f"{percentile(latencies, 0.99):.0f} | {max(latencies):.0f} |"
            )


def _unix(iso: object) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(iso)).timestamp()


if __name__ == "__main__":
    asyncio.run(main())
