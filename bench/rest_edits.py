"""Edits over HTTP: how many a second one collab process commits and relays.

    .venv/bin/python bench/rest_edits.py [--edits 500] [--json FILE]

A `collab serve` on SQLite with the editing API's rate limit off; one document
with one live WebSocket reader. Each configuration makes E edits with C callers
at once: `PATCH /api/documents/{name}/text/content` (a one-character insert by
index) or `POST /api/documents/{name}/updates` (the same edit as a binary Yjs
update). Measured: edits answered per second (each answer means committed),
answer latency p50/p95/p99, the time until the reader has seen every edit, and
the server's CPU seconds per edit. Self-contained on purpose: it uses only
httpx, websockets and pycrdt from the project's venv.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import websockets
from pycrdt import Doc, Text, create_sync_message, handle_sync_message

PROJECT = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DOCUMENT = "bench"


@dataclass(frozen=True)
class Config:
    route: str  # "patch" or "updates"
    callers: int


CONFIGS = (Config("patch", 1), Config("patch", 8), Config("patch", 32), Config("updates", 8))


@dataclass
class Result:
    config: str
    edits: int
    edits_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    reader_caught_up_s: float
    server_cpu_us_per_edit: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


@contextlib.asynccontextmanager
async def _server(log_dir: Path) -> AsyncIterator[tuple[int, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    env["COLLAB_EDIT_RATE_PER_S"] = "0"
    database = f"sqlite+aiosqlite:///{log_dir / 'bench.db'}"
    with (log_dir / "server.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collab",
            "serve",
            "--port",
            str(port),
            "--database",
            database,
            env=env,
            stdout=log,
            stderr=log,
            cwd=PROJECT,
        )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                if process.returncode is not None:
                    raise RuntimeError(f"collab exited with {process.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                        break
                await asyncio.sleep(0.05)
        yield port, process.pid
    finally:
        process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 30)
        if process.returncode is None:
            process.kill()


class Reader:
    """A live y-websocket client of the document: what it has seen."""

    def __init__(self, expected_chars: int) -> None:
        self.doc: Doc[Text] = Doc()
        self.text = self.doc.get("content", type=Text)
        self.expected_chars = expected_chars
        self.caught_up = asyncio.Event()

    async def run(self, url: str, ready: asyncio.Event) -> None:
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(create_sync_message(self.doc))
            ready.set()
            async for message in ws:
                assert isinstance(message, bytes)
                if message[0] == 0:
                    reply = handle_sync_message(message[1:], self.doc)
                    if reply is not None:
                        await ws.send(reply)
                    if len(str(self.text)) >= self.expected_chars:
                        self.caught_up.set()


async def run_config(config: Config, edits: int, port: int, pid: int, name: str) -> Result:
    base = f"http://127.0.0.1:{port}/api/documents"
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as http:
        created = await http.post(base, json={"name": name, "content": "#"})
        created.raise_for_status()
        reader, ready = Reader(1 + edits), asyncio.Event()
        reader_task = asyncio.create_task(reader.run(f"ws://127.0.0.1:{port}/ws/{name}", ready))
        await ready.wait()
        latencies: list[float] = []
        author: Doc[Text] = Doc()  # the binary route's edits: one client, sent in order
        author_text = author.get("content", type=Text)
        author_lock = asyncio.Lock()
        counter = iter(range(edits))

        async def edit_once() -> None:
            started = time.perf_counter()
            if config.route == "patch":
                answer = await http.patch(f"{base}/{name}/text/content", json=[{"insert": "x"}])
            else:
                async with author_lock:  # each update builds on the previous one
                    before = author.get_state()
                    author_text.insert(0, "x")
                    update = author.get_update(before)
                    answer = await http.post(
                        f"{base}/{name}/updates",
                        content=update,
                        headers={"Content-Type": "application/octet-stream"},
                    )
            answer.raise_for_status()
            latencies.append(time.perf_counter() - started)

        async def caller() -> None:
            for _ in counter:
                await edit_once()

        cpu_before, started = _cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(config.callers)))
        answered_s = time.perf_counter() - started
        await reader.caught_up.wait()
        caught_up_s = time.perf_counter() - started
        cpu_s = _cpu_seconds(pid) - cpu_before
        reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await reader_task
    quantiles = statistics.quantiles(latencies, n=100)
    return Result(
        config=f"{config.route} x{config.callers}",
        edits=edits,
        edits_per_s=round(edits / answered_s, 1),
        p50_ms=round(quantiles[49] * 1000, 2),
        p95_ms=round(quantiles[94] * 1000, 2),
        p99_ms=round(quantiles[98] * 1000, 2),
        reader_caught_up_s=round(caught_up_s, 3),
        server_cpu_us_per_edit=round(cpu_s / edits * 1e6, 1),
    )


def _table(results: list[Result]) -> str:
    lines = [
        "| route x callers | edits/s | p50 ms | p95 ms | p99 ms | reader caught up s | "
        "server CPU us/edit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.config} | {r.edits_per_s} | {r.p50_ms} | {r.p95_ms} | {r.p99_ms} | "
            f"{r.reader_caught_up_s} | {r.server_cpu_us_per_edit} |"
        )
    return "\n".join(lines)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=500, help="edits per configuration")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="collab-rest-bench-") as folder:
        async with _server(Path(folder)) as (port, pid):
            for index, config in enumerate(CONFIGS):
                results.append(
                    await run_config(config, args.edits, port, pid, f"{DOCUMENT}{index}")
                )
                print(_table(results[-1:]).splitlines()[-1], file=sys.stderr)
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
