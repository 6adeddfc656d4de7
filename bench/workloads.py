"""The three workloads. Each takes a running `Server` and returns a result record.

A. replay   one writer sends the first K trace updates as fast as the protocol
            allows over one WebSocket; a second client reads and applies them.
            updates/s = K / (first send -> reader has applied the K-th update).
B. fanout   1 writer + N readers on one document; the writer sends one small
            update every `interval` (bounded count); latency = writer's send ->
            each reader's receive, same process clock (perf_counter).
C. join     a document holding the first K trace updates; a new, empty client
            connects, sends step 1 and applies step 2: connect -> synced, repeated.
            "live": another client keeps the document open (it is in memory);
            "disk": nobody is connected, the server loads it from its storage.

Every wait is bounded by a timeout; every loop by a count.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from editing_trace import TEXT_ROOT
from pycrdt import Doc, Text, TransactionEvent, create_update_message
from servers import Server, machine_busy_seconds
from yclient import BenchClient

FANOUT_CLIENT_ID = 7  # the fan-out writer's Yjs client id; its clock numbers the updates


# -- shared helpers -----------------------------------------------------------


class CpuMeter:
    """CPU used over a window by the server process, by this (client) process, and by
    everything else on the machine (other work skews the numbers: it is reported)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._wall = time.perf_counter()
        self._server_cpu = server.cpu_seconds()
        self._client_cpu = time.process_time()
        self._machine = machine_busy_seconds()

    def utilisation(self) -> tuple[float, float, float]:
        """(server, client, other) CPU seconds per wall second since construction."""
        wall = max(time.perf_counter() - self._wall, 1e-9)
        server = (self._server.cpu_seconds() - self._server_cpu) / wall
        client = (time.process_time() - self._client_cpu) / wall
        machine = (machine_busy_seconds() - self._machine) / wall
        other = max(0.0, machine - server - client)
        return round(server, 2), round(client, 2), round(other, 2)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def send_all(client: BenchClient, frames: Sequence[bytes]) -> float:
    """Send frames back to back; yield to the loop after each so the client keeps
    reading its own echoes (a client that never reads is a slow consumer)."""
    started = time.perf_counter()
    for frame in frames:
        await client.send(frame)
        await asyncio.sleep(0)
    return time.perf_counter() - started


def stored_update_count(db_path: Path, document_path: str) -> int:
    """Rows in pycrdt-websocket's SQLiteYStore for one room (read-only)."""
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute(
                "SELECT count(*) FROM yupdates WHERE path = ?", (document_path,)
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


async def wait_stored(server: Server, document: str, count: int, timeout_s: float) -> float | None:
    """pycrdt-ws+sqlite writes after relaying: seconds until `count` rows are stored."""
    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        stored = await asyncio.to_thread(stored_update_count, server.db_path, f"/ws/{document}")
        if stored >= count:
            return time.perf_counter() - started
        await asyncio.sleep(0.2)
    return None


# -- A: trace replay ----------------------------------------------------------


@dataclass
class ReplayResult:
    target: str
    updates: int
    seconds: float = float("nan")
    updates_per_s: float = float("nan")
    writer_send_s: float = float("nan")
    # Until every update is in the store: collab relays only committed updates, so
    # its reader's time already includes it; pycrdt-ws+sqlite stores after relaying.
    durable_seconds: float | None = None
    durable_updates_per_s: float | None = None
    text_ok: bool = False
    server_cpu: float = float("nan")
    client_cpu: float = float("nan")
    other_cpu: float = float("nan")
    server_peak_rss_mb: float = float("nan")
    runs_updates_per_s: list[float] = field(default_factory=list)
    error: str | None = None


async def replay(
    server: Server,
    frames: Sequence[bytes],
    expected_text: str,
    *,
    repeats: int,
    timeout_s: float,
) -> ReplayResult:
    """`repeats` replays, each on a fresh document of the same server; the median
    run (by updates/s) is reported, with every run's rate alongside."""
    runs: list[ReplayResult] = []
    for attempt in range(repeats):
        run = await replay_once(
            server, frames, expected_text, document=f"bench-replay-{attempt}", timeout_s=timeout_s
        )
        runs.append(run)
        if run.error:
            return run
    runs.sort(key=lambda r: r.updates_per_s)
    median = runs[len(runs) // 2]
    median.runs_updates_per_s = [r.updates_per_s for r in runs]
    return median


async def replay_once(
    server: Server,
    frames: Sequence[bytes],
    expected_text: str,
    *,
    document: str,
    timeout_s: float,
) -> ReplayResult:
    count = len(frames)
    result = ReplayResult(server.target.name, count)
    reader = BenchClient(server.url(document))
    writer = BenchClient(server.url(document), apply=False)
    try:
        await reader.sync()
        await writer.sync()
        meter = CpuMeter(server)
        started = time.perf_counter()
        send = asyncio.create_task(send_all(writer, frames))
        complete = await reader.wait_updates(count, timeout_s)
        elapsed = time.perf_counter() - started
        result.server_cpu, result.client_cpu, result.other_cpu = meter.utilisation()
        result.server_peak_rss_mb = server.peak_rss_mb()
        result.writer_send_s = round(await asyncio.wait_for(send, timeout_s), 3)
        if not complete:
            result.error = (
                f"reader got {reader.updates_received}/{count} updates in {timeout_s:.0f}s "
                f"({reader.describe_close()}; writer {writer.describe_close()})"
            )
            return result
        result.seconds = round(elapsed, 3)
        result.updates_per_s = round(count / elapsed)
        result.text_ok = reader.text == expected_text
        if not result.text_ok:
            result.error = "reader's text differs from the trace's text"
        if server.target.name == "collab":
            result.durable_seconds = result.seconds
        elif server.target.durable:
            stored_after = await wait_stored(server, document, count, timeout_s)
            if stored_after is None:
                result.error = f"store did not hold {count} updates within {timeout_s:.0f}s"
            else:
                result.durable_seconds = round(elapsed + stored_after, 3)
        if result.durable_seconds:
            result.durable_updates_per_s = round(count / result.durable_seconds)
        return result
    finally:
        await writer.close()
        await reader.close()


# -- B: fan-out latency -------------------------------------------------------


@dataclass
class FanoutResult:
    target: str
    readers: int
    updates: int
    interval_ms: float
    samples: int = 0
    missing: int = 0
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    mean_ms: float = float("nan")
    server_cpu: float = float("nan")
    client_cpu: float = float("nan")
    other_cpu: float = float("nan")
    server_peak_rss_mb: float = float("nan")
    error: str | None = None


def fanout_frames(count: int) -> list[bytes]:
    """`count` one-character appends by client FANOUT_CLIENT_ID: update i has clock i."""
    doc: Doc[Text] = Doc(client_id=FANOUT_CLIENT_ID)
    text = doc.get(TEXT_ROOT, type=Text)
    updates: list[bytes] = []

    def collect(event: TransactionEvent) -> None:
        updates.append(event.update)

    subscription = doc.observe(collect)
    for i in range(count):
        text.insert(i, "abcdefghijklmnopqrstuvwxyz"[i % 26])
    doc.unobserve(subscription)
    return [create_update_message(update) for update in updates]


def _read_varuint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


def first_struct_id(update_frame: bytes) -> tuple[int, int] | None:
    """(client, clock) of the first struct in a sync-update frame, or None (delete-only).

    Frame: varuint 0 (sync), varuint 2 (update), varuint length, then the Yjs v1
    update: varuint groups, then per group varuint structs, client, clock, ...
    """
    _, offset = _read_varuint(update_frame, 0)
    _, offset = _read_varuint(update_frame, offset)
    _, offset = _read_varuint(update_frame, offset)
    groups, offset = _read_varuint(update_frame, offset)
    if groups == 0:
        return None
    _, offset = _read_varuint(update_frame, offset)
    client, offset = _read_varuint(update_frame, offset)
    clock, _ = _read_varuint(update_frame, offset)
    return client, clock


async def fanout(
    server: Server,
    *,
    readers: int,
    updates: int,
    interval_ms: float,
    repeats: int,
    timeout_s: float,
) -> FanoutResult:
    """`repeats` rounds, each on a fresh document; latencies are pooled."""
    result = FanoutResult(server.target.name, readers, updates, interval_ms)
    frames = fanout_frames(updates)
    latencies: list[float] = []
    closed: set[str] = set()
    cpu: list[tuple[float, float, float]] = []
    for attempt in range(repeats):
        round_ = await _fanout_round(
            server, f"bench-fanout-{attempt}", frames, readers, interval_ms, timeout_s
        )
        latencies += round_.latencies
        result.missing += round_.missing
        closed.update(round_.closed)
        cpu.append(round_.cpu)
    result.server_cpu, result.client_cpu, result.other_cpu = (
        round(statistics.fmean(column), 2) for column in zip(*cpu, strict=True)
    )
    result.server_peak_rss_mb = server.peak_rss_mb()
    if result.missing or closed:
        result.error = f"{result.missing} deliveries missing; " + "; ".join(sorted(closed))
    latencies.sort()
    result.samples = len(latencies)
    if latencies:
        result.p50_ms = round(percentile(latencies, 50), 3)
        result.p95_ms = round(percentile(latencies, 95), 3)
        result.p99_ms = round(percentile(latencies, 99), 3)
        result.max_ms = round(latencies[-1], 3)
        result.mean_ms = round(statistics.fmean(latencies), 3)
    return result


@dataclass
class _FanoutRound:
    latencies: list[float]
    missing: int
    closed: list[str]
    cpu: tuple[float, float, float]


async def _fanout_round(
    server: Server,
    document: str,
    frames: Sequence[bytes],
    readers: int,
    interval_ms: float,
    timeout_s: float,
) -> _FanoutRound:
    updates = len(frames)
    clients = [BenchClient(server.url(document), apply=False, record=True) for _ in range(readers)]
    writer = BenchClient(server.url(document), apply=False)
    sent_at = [float("nan")] * updates
    try:
        for client in clients:
            await client.sync()
        await writer.sync()
        await asyncio.sleep(0.2)
        meter = CpuMeter(server)
        start = time.perf_counter() + 0.05
        for i, frame in enumerate(frames):
            delay = start + i * interval_ms / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[i] = time.perf_counter()
            await writer.send(frame)
        deadline = time.perf_counter() + timeout_s
        for client in clients:
            await client.wait_updates(updates, max(0.0, deadline - time.perf_counter()))
        cpu = meter.utilisation()
        # Before we close them ourselves: did the server close anyone?
        closed = [c.describe_close() for c in [*clients, writer] if c.closed.is_set()]
    finally:
        await writer.close()
        for client in clients:
            await client.close()
    latencies: list[float] = []
    missing = 0
    for client in clients:
        seen: set[int] = set()
        for arrived, frame in client.records:
            struct_id = first_struct_id(frame)
            if struct_id is None or struct_id[0] != FANOUT_CLIENT_ID:
                continue
            index = struct_id[1]
            if 0 <= index < updates and index not in seen:
                seen.add(index)
                latencies.append((arrived - sent_at[index]) * 1000)
        missing += updates - len(seen)
    return _FanoutRound(latencies, missing, closed, cpu)


# -- C: cold join -------------------------------------------------------------


@dataclass
class JoinResult:
    target: str
    mode: str  # "live" or "disk"
    updates: int
    joins: int = 0
    median_ms: float = float("nan")
    p95_ms: float = float("nan")
    min_ms: float = float("nan")
    max_ms: float = float("nan")
    sync_bytes: int = 0
    text_ok: bool = False
    preload_s: float = float("nan")
    samples_ms: list[float] = field(default_factory=list)
    error: str | None = None


async def _preload(
    server: Server, document: str, frames: Sequence[bytes], timeout_s: float
) -> BenchClient:
    """Connect a client, send the frames, wait for all their echoes (every server
    relays to the sender too; collab only once committed)."""
    holder = BenchClient(server.url(document), apply=False)
    await holder.sync()
    await send_all(holder, frames)
    if not await holder.wait_updates(len(frames), timeout_s):
        await holder.close()
        raise RuntimeError(
            f"preload: {holder.updates_received}/{len(frames)} echoes ({holder.describe_close()})"
        )
    return holder


async def _wait_log_count(server: Server, needle: str, count: int, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if server.count_in_log(needle) >= count:
            return True
        await asyncio.sleep(0.05)
    return False


async def join(
    server: Server,
    frames: Sequence[bytes],
    expected_text: str,
    *,
    mode: str,
    joins: int,
    timeout_s: float,
) -> JoinResult:
    """Time `joins` fresh clients from connect to synced.

    live: the preloading client stays connected, so the document stays in memory.
    disk: it leaves first; collab (run with --room-grace 0) unloads the room after
    each join (we wait for its "unloaded" log line); pycrdt-ws+sqlite drops a room
    when its last client leaves and reloads it from SQLite on the next join.
    """
    result = JoinResult(server.target.name, mode, len(frames))
    document = f"bench-join-{mode}"
    started = time.perf_counter()
    holder: BenchClient | None = None
    unloaded_line = f"doc={document} unloaded"
    try:
        holder = await _preload(server, document, frames, timeout_s)
        if server.target.name == "pycrdt-ws+sqlite":
            if await wait_stored(server, document, len(frames), timeout_s) is None:
                raise RuntimeError("preload: the store did not hold every update in time")
        result.preload_s = round(time.perf_counter() - started, 3)
        await asyncio.sleep(1.5)  # let background work (compaction, checkpoints) settle
        if mode == "disk":
            await holder.close()
            holder = None
        for attempt in range(joins):
            if mode == "disk" and server.target.name == "collab":
                if not await _wait_log_count(server, unloaded_line, attempt + 1, 10):
                    raise RuntimeError("collab did not unload the room within 10s")
            elif mode == "disk":
                await asyncio.sleep(0.2)  # the room is dropped when its client leaves
            client = BenchClient(server.url(document))
            t0 = time.perf_counter()
            try:
                await client.sync(timeout_s=timeout_s)
                elapsed_ms = (time.perf_counter() - t0) * 1000
                result.sync_bytes = client.bytes_received
                if client.text != expected_text:
                    raise RuntimeError(f"join {attempt}: the synced text differs from the trace")
            finally:
                await client.close()
            result.samples_ms.append(round(elapsed_ms, 3))
        result.text_ok = True
    except (RuntimeError, ConnectionError, OSError, TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if holder is not None:
            await holder.close()
    samples = sorted(result.samples_ms)
    result.joins = len(samples)
    if samples:
        result.median_ms = round(statistics.median(samples), 3)
        result.p95_ms = round(percentile(samples, 95), 3)
        result.min_ms = samples[0]
        result.max_ms = samples[-1]
    return result
