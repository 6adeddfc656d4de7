"""Fan-out across processes: one collab process against two sharing Redis, in one run.

    .venv/bin/python bench/cluster.py [--rooms 10] [--clients 10] [--updates 200]

R rooms, each with one writer and C-1 readers; every writer sends U one-character
appends on a fixed schedule (one every --interval-ms), all rooms at once. The
clients of each room are spread round-robin over the processes, so with two
processes most deliveries cross Redis (writer on one process, reader on the
other). Measured per delivery: writer's send -> reader's receive on one clock
(p50/p95/p99), deliveries per second over the run, deliveries missing, and the
CPU seconds the server processes used. Every configuration runs on a fresh
PostgreSQL database (the cluster's storage) and, with Redis, a key prefix of
its own; ratios are against the single process without Redis - collab as it
runs on one machine.

Needs the project's .venv (`make install`), PostgreSQL and Redis (defaults:
127.0.0.1:5432 trust auth and 127.0.0.1:6379; --postgres-dsn, --redis-url).
Self-contained on purpose: it uses only websockets, pycrdt, asyncpg and httpx
from the project's venv, not the other benchmark modules.
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
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg
import httpx
import websockets
from pycrdt import Doc, Text, create_sync_message, create_update_message, handle_sync_message

PROJECT = Path(__file__).resolve().parent.parent
COLLAB = PROJECT / ".venv" / "bin" / "collab"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRITER_CLIENT_ID = 424242


@dataclass(frozen=True)
class Config:
    name: str
    processes: int
    redis: bool


CONFIGS = (
    Config("1 process, no Redis", 1, False),
    Config("1 process + Redis", 1, True),
    Config("2 processes + Redis", 2, True),
)


@dataclass
class Result:
    config: str
    deliveries: int = 0
    missing: int = 0
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    deliveries_per_s: float = float("nan")
    server_cpu_s: float = float("nan")
    errors: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _varuint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


def _writer_clock(frame: bytes) -> int | None:
    """The clock of the first struct of a sync-update frame if the writer made it."""
    if len(frame) < 2 or frame[0] != 0 or frame[1] != 2:
        return None
    offset = 2
    _, offset = _varuint(frame, offset)  # payload length
    groups, offset = _varuint(frame, offset)
    if not groups:
        return None
    _, offset = _varuint(frame, offset)  # structs in the group
    client, offset = _varuint(frame, offset)
    clock, _ = _varuint(frame, offset)
    return clock if client == WRITER_CLIENT_ID else None


def _frames(count: int) -> list[bytes]:
    doc: Doc = Doc(client_id=WRITER_CLIENT_ID)
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        text.insert(i, "abcdefghijklmnopqrstuvwxyz"[i % 26])
    return [create_update_message(update) for update in updates]


class Reader:
    def __init__(self, url: str, expected: int = 0) -> None:
        self.url = url
        self.arrivals: dict[int, float] = {}
        self.expected = expected
        self.complete = asyncio.Event()
        self.synced = asyncio.Event()
        self._ws: websockets.ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._doc: Doc = Doc()

    async def connect(self) -> None:
        self._ws = await websockets.connect(
            self.url, max_size=None, max_queue=None, ping_interval=None, compression=None
        )
        self._task = asyncio.create_task(self._receive())
        await self._ws.send(create_sync_message(self._doc))
        await asyncio.wait_for(self.synced.wait(), 30)

    async def _receive(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self._ws:
                now = time.perf_counter()
                assert isinstance(frame, bytes)
                clock = _writer_clock(frame)
                if clock is not None:
                    self.arrivals.setdefault(clock, now)
                    if len(self.arrivals) >= self.expected:
                        self.complete.set()
                elif frame[:2] == b"\x00\x01":
                    handle_sync_message(frame[1:], self._doc)
                    self.synced.set()
                elif frame[:2] == b"\x00\x00":
                    reply = handle_sync_message(frame[1:], self._doc)
                    if reply is not None:
                        await self._ws.send(reply)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)


@contextlib.asynccontextmanager
async def _database(admin_dsn: str) -> AsyncIterator[str]:
    name = f"collab_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def _servers(
    config: Config, database_url: str, redis_url: str, log_dir: Path
) -> AsyncIterator[list[tuple[int, asyncio.subprocess.Process]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    env["COLLAB_REDIS_PREFIX"] = f"collab-bench-{uuid.uuid4().hex[:10]}:"
    running: list[tuple[int, asyncio.subprocess.Process]] = []
    try:
        for index in range(config.processes):
            port = _free_port()
            args = ["serve", "--port", str(port), "--database", database_url]
            args += ["--redis-url", redis_url] if config.redis else []
            log = (log_dir / f"{config.processes}-{config.redis}-{index}.log").open("ab")
            process = await asyncio.create_subprocess_exec(
                str(COLLAB), *args, env=env, stdout=log, stderr=log, cwd=PROJECT
            )
            log.close()
            running.append((port, process))
            await _wait_healthy(port, process)
        yield running
    finally:
        for _, process in running:
            if process.returncode is None:
                process.terminate()
        for _, process in running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
            if process.returncode is None:
                process.kill()


async def _wait_healthy(port: int, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if process.returncode is not None:
                raise RuntimeError(f"collab exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError("collab did not become healthy")


async def _room(
    ports: Sequence[int],
    room: int,
    clients: int,
    frames: list[bytes],
    interval_s: float,
    start_at: float,
) -> tuple[list[float], int, list[float]]:
    """One room: writer on the first process, readers spread round-robin."""
    url = "ws://127.0.0.1:{}/ws/bench-room-{}"
    readers = [
        Reader(url.format(ports[(room + i + 1) % len(ports)], room), len(frames))
        for i in range(clients - 1)
    ]
    for reader in readers:
        await reader.connect()
    writer = Reader(url.format(ports[room % len(ports)], room))
    await writer.connect()
    assert writer._ws is not None
    sent_at: list[float] = []
    delay = start_at - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    for i, frame in enumerate(frames):
        wait = start_at + i * interval_s - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        sent_at.append(time.perf_counter())
        await writer._ws.send(frame)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(r.complete.wait() for r in readers)), 30)
    latencies = [
        (arrived - sent_at[clock]) * 1000
        for reader in readers
        for clock, arrived in reader.arrivals.items()
        if clock < len(sent_at)
    ]
    last = [max(r.arrivals.values()) for r in readers if r.arrivals]
    missing = sum(len(frames) - len(r.arrivals) for r in readers)
    for client in [*readers, writer]:
        await client.close()
    return latencies, missing, last


async def run_config(config: Config, args: argparse.Namespace, log_dir: Path) -> Result:
    result = Result(config.name)
    frames = _frames(args.updates)
    async with (
        _database(args.postgres_dsn) as database_url,
        _servers(config, database_url, args.redis_url, log_dir) as servers,
    ):
        ports = [port for port, _ in servers]
        cpu_before = sum(_cpu_seconds(p.pid) for _, p in servers)
        start_at = time.perf_counter() + 2.0 + 0.05 * args.rooms * args.clients
        rooms = await asyncio.gather(
            *(
                _room(ports, room, args.clients, frames, args.interval_ms / 1000, start_at)
                for room in range(args.rooms)
            )
        )
        result.server_cpu_s = round(sum(_cpu_seconds(p.pid) for _, p in servers) - cpu_before, 2)
    latencies = sorted(latency for room in rooms for latency in room[0])
    result.missing = sum(room[1] for room in rooms)
    result.deliveries = len(latencies)
    last = max((t for room in rooms for t in room[2]), default=start_at)
    if latencies:
        q = statistics.quantiles(latencies, n=100)
        result.p50_ms, result.p95_ms, result.p99_ms = (round(q[i], 2) for i in (49, 94, 98))
        result.max_ms = round(latencies[-1], 2)
        result.deliveries_per_s = round(result.deliveries / max(last - start_at, 1e-9), 1)
    return result


def _table(results: list[Result]) -> str:
    base = results[0]
    lines = [
        "| configuration | p50 ms | p95 ms | p99 ms | max ms | deliveries/s | missing "
        "| server CPU s | p50 vs 1 process | CPU vs 1 process |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.config} | {r.p50_ms} | {r.p95_ms} | {r.p99_ms} | {r.max_ms} | "
            f"{r.deliveries_per_s} | {r.missing} | {r.server_cpu_s} | "
            f"{r.p50_ms / base.p50_ms:.2f}x | {r.server_cpu_s / base.server_cpu_s:.2f}x |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10, help="per room, the writer included")
    parser.add_argument("--updates", type=int, default=200, help="per writer")
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "COLLAB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("COLLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


async def main(argv: list[str]) -> None:
    args = parse_args(argv)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"collab-bench-cluster-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"fan-out: {args.rooms} rooms x {args.clients} clients, {args.updates} updates per "
        f"writer every {args.interval_ms:g} ms; logs in {log_dir}",
        flush=True,
    )
    results = []
    for config in CONFIGS:
        result = await run_config(config, args, log_dir)
        print(f"  {config.name}: p50 {result.p50_ms} ms, missing {result.missing}", flush=True)
        results.append(result)
    print()
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
