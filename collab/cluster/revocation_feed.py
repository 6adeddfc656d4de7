"""Token revocations between the processes of a cluster, over one Redis stream.

Owns the stream `{prefix}revocations`, one publisher for it and one reader of
it, each on its own Redis connection (the reader's `XREAD BLOCK` holds its
connection; the document streams' reader, collab.cluster.redis_bus, is left
alone). An entry is `t=r` with the revocation as JSON in `p`, or the
publisher's catch-up marker `t=c` when it had to drop entries; `o` is the
process that wrote it.

Nothing is missed silently, by the rule the document streams follow: on every
(re)connection the reader first reads where the stream ends, then asks the
listener to read the table again (everything published before that point was
stored before it was published), then reads on from there. A Redis restart,
a broken connection or a dropped queue all end in a reconnect or a marker, so
in a table read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Protocol

from collab.auth.revocation import Revocation, RevocationKind
from collab.cluster.publisher import CATCH_UP, StreamPublisher
from collab.cluster.redis_driver import NoBackoff, Redis, RedisError, Retry

logger = logging.getLogger(__name__)

REVOKED = b"r"  # the entry type of a revocation
_MAX_ENTRIES = 10_000
_MAX_QUEUED_BYTES = 4 * 1024 * 1024
_READ_COUNT = 100
_BLOCK_MS = 5000
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 2.0
_NO_RETRY = Retry(NoBackoff(), 0)  # our loops do the retrying, with backoff


class RevocationListener(Protocol):
    """What the feed hands on (collab.cluster.revocations.Revocations). Must not block."""

    def on_revoked(self, revocation: Revocation) -> None: ...

    def on_revocations_unknown(self) -> None:
        """Something may have been missed: read the table again."""
        ...


def encode_revocation(revocation: Revocation) -> bytes:
    return json.dumps(
        {
            "kind": revocation.kind.value,
            "value": revocation.value,
            "revoked_at": revocation.revoked_at,
            "until": revocation.until,
            "reason": revocation.reason,
            "revoked_by": revocation.revoked_by,
        }
    ).encode()


def decode_revocation(payload: bytes) -> Revocation:
    """ValueError (or KeyError, TypeError) for anything but `encode_revocation`'s output."""
    fields: dict[str, Any] = json.loads(payload)
    until = fields["until"]
    return Revocation(
        kind=RevocationKind(fields["kind"]),
        value=str(fields["value"]),
        revoked_at=float(fields["revoked_at"]),
        until=None if until is None else float(until),
        reason=fields["reason"],
        revoked_by=fields["revoked_by"],
    )


class RevocationFeed:
    """Satisfies collab.cluster.revocations.RevocationPublisher."""

    def __init__(
        self, url: str, *, prefix: str, process_id: str, listener: RevocationListener
    ) -> None:
        self._key = f"{prefix}revocations"
        self._origin = process_id.encode()
        self._listener = listener
        options: dict[str, Any] = {"retry": _NO_RETRY, "socket_connect_timeout": 2}
        self._redis: Redis = Redis.from_url(url, socket_timeout=5, **options)
        self._reader_redis: Redis = Redis.from_url(url, **options)
        self._publisher = StreamPublisher(
            self._redis,
            origin=self._origin,
            # Its entries are dropped only past the bound; a marker follows then.
            document_prefix=self._key,
            max_entries=_MAX_ENTRIES,
            max_queued_bytes=_MAX_QUEUED_BYTES,
            on_error=self._note_error,
        )
        self._is_connected = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name, job in (("publisher", self._publisher.run), ("reader", self._run_reader)):
            self._tasks.append(asyncio.create_task(job(), name=f"revocation {name}"))

    async def close(self) -> None:
        """Stop; what is queued gets one chance to go out."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._publisher.flush()
        await self._redis.aclose()
        await self._reader_redis.aclose()

    def publish_revocation(self, revocation: Revocation) -> None:
        self._publisher.queue(self._key, {b"t": REVOKED, b"p": encode_revocation(revocation)})

    async def _run_reader(self) -> None:
        delay_s = _RETRY_MIN_S
        while True:
            try:
                tail = await self._reader_redis.xrevrange(self._key, count=1)
                position: bytes = tail[0][0] if tail else b"0-0"
                # Read the end first, then the table: what was published before
                # this point was stored before it was published.
                self._listener.on_revocations_unknown()
                if not self._is_connected:
                    logger.info("revocation feed connected (%s)", self._key)
                self._is_connected = True
                delay_s = _RETRY_MIN_S
                while True:
                    response = await self._reader_redis.xread(
                        {self._key: position}, count=_READ_COUNT, block=_BLOCK_MS
                    )
                    for _key, entries in response or ():
                        for entry_id, fields in entries:
                            position = entry_id
                            self._dispatch(fields)
            except (RedisError, OSError) as exc:
                self._note_error("read", exc)
                self._is_connected = False
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, _RETRY_MAX_S)

    def _dispatch(self, fields: dict[bytes, bytes]) -> None:
        if fields.get(b"o") == self._origin:
            return  # ours: applied here before it was published
        kind = fields.get(b"t")
        if kind == CATCH_UP:
            self._listener.on_revocations_unknown()
        elif kind == REVOKED:
            try:
                revocation = decode_revocation(fields[b"p"])
            except (ValueError, KeyError, TypeError):
                logger.exception("a revocation entry does not decode; reading the table instead")
                self._listener.on_revocations_unknown()
                return
            self._listener.on_revoked(revocation)

    def _note_error(self, what: str, exc: BaseException) -> None:
        if self._is_connected:
            logger.warning("revocation feed: redis %s failed (%s); retrying", what, exc)
        else:
            logger.debug("revocation feed: redis %s still failing: %s", what, exc)
