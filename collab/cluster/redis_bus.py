"""Cross-process fan-out through Redis Streams: the `Cluster` of a clustered server.

Owns this process's Redis connections and three tasks:
- the publisher: sends what the rooms queued (`publish_*` never block) to each
  document's stream, `XADD ... MAXLEN ~ N`, pipelined, in order; while Redis is
  unreachable it keeps the queue (bounded: past the bound it drops it and,
  once Redis is back, tells the others to catch those documents up from
  storage instead);
- the reader: ONE `XREAD BLOCK` over the streams of every loaded document (plus
  this process's wake-up stream, written to re-issue the read when the set
  changes), handing each entry from another process to the `BusListener`;
- liveness: a heartbeat key with a TTL, and a check of the other processes'
  heartbeats - one that expired is gone, and the listener removes its clients'
  presence and catches its documents up (it may have committed updates it
  never published). Heartbeats lost with Redis are no death: after losing
  contact (or finding Redis restarted) nobody is judged until heartbeats have
  been watched for a full TTL again (collab.cluster.liveness).

Nothing is missed silently. A document's position is "unknown" (None) when
this process cannot vouch for having read everything up to it: it was loaded
while Redis was down, its stream was trimmed past our position (its oldest
entry is newer than the last one we read), or Redis restarted (its run id changed: the
streams, kept in memory only, are gone). For such a document the reader first
reads where its stream ends now, then asks the listener to catch the room up
from storage (the update log is the source of truth: everything in a stream
was committed before it was published), then reads on from there. Presence
is not in storage: once it knows where the stream ends, the reader announces
this process's clients again and asks the others to announce theirs (a query
entry), so what was published meanwhile is not missed either, and nothing
visible changes across a Redis restart (a state announced again with its
clock changes nothing).

Entry fields: t (u update, a awareness, q awareness query, d deleted, c catch
up from storage), o (origin process id), p (payload),
i (log row id of an update).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from collab.cluster.liveness import Liveness
from collab.cluster.publisher import CATCH_UP, StreamPublisher
from collab.cluster.redis_driver import NoBackoff, Redis, RedisError, Retry

logger = logging.getLogger(__name__)

_READ_COUNT = 1000
_BLOCK_MS = 5000
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 2.0
_NO_RETRY = Retry(NoBackoff(), 0)  # our loops do the retrying, with backoff

# For each stream: the id of its oldest entry ('' if missing or empty) and
# whether it ever lost an entry (entries-added > length, Redis >= 7), without
# sending the entries XINFO STREAM also returns.
_OLDEST = """
local out = {}
for i, key in ipairs(KEYS) do
  local first, added, length = '', 0, 0
  local ok, info = pcall(redis.call, 'XINFO', 'STREAM', key)
  if ok then
    for j = 1, #info, 2 do
      local name, value = info[j], info[j + 1]
      if name == 'first-entry' and value then first = value[1] end
      if name == 'entries-added' then added = value end
      if name == 'length' then length = value end
    end
  end
  out[i] = {first, added > length and 1 or 0}
end
return out
"""


class BusListener(Protocol):
    """What the bus hands on (collab.cluster.sync satisfies it). Must not block."""

    def on_update(
        self, document: str, update: bytes, row_id: int, owners: Mapping[int, str]
    ) -> None: ...

    def on_awareness(self, document: str, process_id: str, payload: bytes) -> None: ...

    def on_awareness_query(self, document: str) -> None: ...

    def on_deleted(self, document: str) -> None: ...

    def on_catch_up(self, document: str) -> None: ...

    def on_process_gone(self, process_id: str) -> None: ...

    def on_reconnected(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BusSettings:
    url: str
    prefix: str = "collab:"
    stream_max_entries: int = 10_000
    heartbeat_interval_s: float = 2.0
    heartbeat_ttl_s: float = 6.0
    max_queued_bytes: int = 64 * 1024 * 1024


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _is_gap(position: bytes, oldest: bytes, has_lost: bool) -> bool:
    """Whether entries after `position` may have been trimmed before we read them."""
    if position == b"0-0":  # we followed an empty stream: any loss is ours
        return has_lost
    return bool(oldest) and _stream_id(oldest) > _stream_id(position)


def _report_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # Fan-out between processes has stopped: say so as loudly as we can.
        logger.critical("%s died", task.get_name(), exc_info=task.exception())


class RedisBus:
    def __init__(self, settings: BusSettings, process_id: str) -> None:
        self._settings = settings
        self.process_id = process_id
        self._origin = process_id.encode()
        prefix = settings.prefix
        self._stream_prefix = f"{prefix}doc:"
        self._wake_key = f"{prefix}wake:{process_id}"
        self._listener: BusListener | None = None
        options: dict[str, Any] = {"retry": _NO_RETRY, "socket_connect_timeout": 2}
        self._redis: Redis = Redis.from_url(settings.url, socket_timeout=5, **options)
        # The blocking reader has its own connection, with no read timeout.
        self._reader_redis: Redis = Redis.from_url(settings.url, **options)
        self._oldest = self._redis.register_script(_OLDEST)
        self._read_count = min(_READ_COUNT, settings.stream_max_entries)
        self._liveness = Liveness(self._redis, prefix, process_id, settings.heartbeat_ttl_s)
        self._was_judging = False  # for the log line when judging resumes
        self._publisher = StreamPublisher(
            self._redis,
            origin=self._origin,
            document_prefix=self._stream_prefix,
            max_entries=settings.stream_max_entries,
            max_queued_bytes=settings.max_queued_bytes,
            on_error=self._note_error,
        )
        # document -> last entry id read (None: unknown, catch up from storage)
        self.positions: dict[str, bytes | None] = {}
        self._wake_position: bytes = b"$"
        self._run_id: str | None = None
        self.is_connected = False
        self._has_connected = False
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, listener: BusListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        """Start the tasks; a first heartbeat if Redis answers (it may not yet)."""
        with contextlib.suppress(RedisError, OSError):
            await self._liveness.beat()
        for name, job in (
            ("publisher", self._publisher.run),
            ("reader", self._run_reader),
            ("liveness", self._run_liveness),
        ):
            task = asyncio.create_task(job(), name=f"redis {name}")
            task.add_done_callback(_report_death)
            self._tasks.append(task)

    async def close(self) -> None:
        """Stop; queued entries get one chance to go out, and the heartbeat is
        removed so the others know at once that this process left."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._publisher.flush()
            await self._redis.delete(self._wake_key)
            await self._liveness.leave()
        await self._redis.aclose()
        await self._reader_redis.aclose()

    async def live_processes(self) -> set[str] | None:
        """Ids of the processes whose heartbeat is current; None if Redis is down."""
        try:
            return await self._liveness.live_processes()
        except (RedisError, OSError):
            return None

    # -- the Cluster protocol (called by rooms and the registry) ------------

    def publish_update(
        self, document: str, update: bytes, row_id: int, owners: Mapping[int, str] = {}
    ) -> None:
        fields = {b"t": b"u", b"p": update, b"i": str(row_id).encode()}
        if owners:  # the client ids this row claimed: {"client id": subject}
            fields[b"c"] = json.dumps({str(c): s for c, s in owners.items()}).encode()
        self._publish(document, fields)

    def publish_awareness(self, document: str, payload: bytes) -> None:
        self._publish(document, {b"t": b"a", b"p": payload})

    def publish_deleted(self, document: str) -> None:
        self._publish(document, {b"t": b"d"})

    def _publish(self, document: str, fields: dict[bytes, bytes]) -> None:
        self._publisher.queue(self._stream_prefix + document, fields)

    def _wake_reader(self) -> None:
        """Make the reader re-issue its XREAD (the set of documents changed)."""
        self._publisher.queue(self._wake_key, {b"t": b"w"}, max_entries=16)

    async def stream_position(self, document: str) -> str | None:
        if not self.is_connected:
            return None
        try:
            last = await self._redis.xrevrange(self._stream_prefix + document, count=1)
        except (RedisError, OSError):
            return None
        return last[0][0].decode() if last else "0-0"

    def follow(self, document: str, position: str | None) -> None:
        self.positions[document] = None if position is None else position.encode()
        # Ask the processes that have it loaded for their clients' presence.
        self._publish(document, {b"t": b"q"})
        self._wake_reader()

    def unfollow(self, document: str) -> None:
        if self.positions.pop(document, b"") is not None:
            self._wake_reader()

    # -- reading -------------------------------------------------------------

    async def _run_reader(self) -> None:
        delay_s = _RETRY_MIN_S
        while True:
            try:
                await self._check_server(self._reader_redis)
                self._set_connected(True)
                delay_s = _RETRY_MIN_S
                while True:
                    await self._resolve_unknown_positions()
                    await self._read_once()
            except (RedisError, OSError) as exc:
                self._set_connected(False)
                self._note_error("read", exc)
            except Exception:  # task boundary: the reader must outlive a bad batch
                logger.exception("redis reader failed; catching every document up")
                for document in self.positions:
                    self.positions[document] = None
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, _RETRY_MAX_S)

    async def _check_server(self, redis: Redis) -> None:
        """A Redis that restarted has lost every stream: catch everything up."""
        run_id = str((await redis.info("server"))["run_id"])
        if self._run_id is not None and run_id != self._run_id:
            logger.warning("redis restarted (streams lost): catching up every loaded document")
            for document in self.positions:
                self.positions[document] = None
            self._liveness.lost_contact()  # every heartbeat key went with it
        self._run_id = run_id

    async def _resolve_unknown_positions(self) -> None:
        unknown = [d for d, position in self.positions.items() if position is None]
        if not unknown:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for document in unknown:
                pipe.xrevrange(self._stream_prefix + document, count=1)
            tails = await pipe.execute()
        for document, tail in zip(unknown, tails, strict=True):
            if document in self.positions and self.positions[document] is None:
                # Read the end first, then catch up from storage: what was
                # published before this point is in storage already. Presence
                # is not: announce our clients, and ask the others to announce
                # theirs (a process that resolved its position before us would
                # miss our question, but reads our announcement).
                self.positions[document] = tail[0][0] if tail else b"0-0"
                self._catch_up(document)
                self._publish(document, {b"t": b"q"})
                if self._listener is not None:
                    self._listener.on_awareness_query(document)

    async def _read_once(self) -> None:
        streams: dict[Any, Any] = {self._wake_key: self._wake_position}
        streams.update(
            (self._stream_prefix + d, position)
            for d, position in self.positions.items()
            if position is not None
        )
        response = await self._reader_redis.xread(streams, count=self._read_count, block=_BLOCK_MS)
        batches: list[tuple[str, bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = []
        for raw_key, entries in response or ():
            key = raw_key.decode()
            if key == self._wake_key:
                self._wake_position = entries[-1][0]
                continue
            document = key[len(self._stream_prefix) :]
            before = self.positions.get(document)
            if before is not None:
                batches.append((document, before, entries))
        # Trimming keeps at least `stream_max_entries` entries, all newer than any
        # it removed: if entries after our position were trimmed, at least that
        # many follow it, and the read came back full. Only a full one is checked.
        full = [b for b in batches if len(b[2]) >= self._read_count]
        oldest = (
            await self._oldest(keys=[self._stream_prefix + d for d, _, _ in full]) if full else []
        )
        trimmed_past = {
            document
            for (document, before, _), (first, has_lost) in zip(full, oldest, strict=True)
            if _is_gap(before, first, bool(has_lost))
        }
        for document, before, entries in batches:
            if self.positions.get(document) != before:
                continue  # unfollowed or reset while we read
            if document in trimmed_past:
                # Trimming reached past our position: entries between it and the
                # oldest one left may be gone (or, rarely, it stopped right at our
                # position; catching up is harmless either way).
                logger.warning("doc=%s stream trimmed past our position: catching up", document)
                self.positions[document] = None
                continue
            self.positions[document] = entries[-1][0]
            for _, fields in entries:
                self._dispatch(document, fields)

    def _dispatch(self, document: str, fields: dict[bytes, bytes]) -> None:
        origin = fields.get(b"o", b"").decode()
        if origin == self.process_id or self._listener is None:
            return
        self._liveness.saw(origin)
        kind = fields.get(b"t")
        listener = self._listener
        try:
            if kind == b"u":
                claimed = json.loads(fields.get(b"c", b"{}"))
                owners = {int(client_id): str(s) for client_id, s in claimed.items()}
                listener.on_update(document, fields[b"p"], int(fields[b"i"]), owners)
            elif kind == b"a":
                listener.on_awareness(document, origin, fields[b"p"])
            elif kind == b"q":
                listener.on_awareness_query(document)
            elif kind == b"d":
                listener.on_deleted(document)
            elif kind == CATCH_UP:
                self._catch_up(document)
        except Exception:  # task boundary: one bad entry must not stop the reader
            logger.exception("doc=%s could not apply a %r entry from %s", document, kind, origin)
            self._catch_up(document)

    def _catch_up(self, document: str) -> None:
        if self._listener is not None:
            self._listener.on_catch_up(document)

    # -- liveness ------------------------------------------------------------

    async def _run_liveness(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval_s)
            try:
                await self._check_server(self._redis)
                was_presumed_dead = not await self._liveness.beat()
                if was_presumed_dead and self._listener is not None:
                    self._listener.on_reconnected()  # announce our clients again
                for process_id in await self._liveness.newly_dead():
                    logger.warning("process %s stopped its heartbeat: its clients go", process_id)
                    if self._listener is not None:
                        self._listener.on_process_gone(process_id)
                self._note_judging()
            except (RedisError, OSError) as exc:
                # Our heartbeat may not land, and we cannot see theirs: nobody is
                # judged until heartbeats have been observable for a full TTL.
                self._liveness.lost_contact()
                self._note_judging()
                self._note_error("heartbeat", exc)

    def _note_judging(self) -> None:
        is_judging = self._liveness.is_judging
        if is_judging and not self._was_judging:
            logger.info(
                "heartbeats observed for %.1fs: judging the other processes' liveness",
                self._settings.heartbeat_ttl_s,
            )
        elif self._was_judging and not is_judging:
            logger.info("redis unreachable or restarted: nobody is judged dead until it answers")
        self._was_judging = is_judging

    # -- state ---------------------------------------------------------------

    def _set_connected(self, is_connected: bool) -> None:
        if not is_connected:
            self._liveness.lost_contact()
        if is_connected and not self.is_connected:
            logger.info("redis connected (key prefix %r)", self._settings.prefix)
            if self._has_connected and self._listener is not None:
                self._listener.on_reconnected()  # announce our clients again
            self._has_connected = True
        self.is_connected = is_connected

    def _note_error(self, what: str, exc: BaseException) -> None:
        if self.is_connected:
            logger.warning("redis %s failed (%s); local relays go on, retrying", what, exc)
        else:
            logger.debug("redis %s still failing: %s", what, exc)
