"""Which processes of a cluster are alive: heartbeats in Redis.

Owns the heartbeat keys: each process renews `<prefix>proc:<id>` with a TTL
every interval and lists itself in `<prefix>procs`. A process whose key has
expired is dead - killed, frozen, or cut off from Redis for longer than the
TTL - and each survivor notices on its own (every survivor remembers whom it
saw alive, so it notices even after another survivor tidied the member list).
The bus (collab.cluster.redis_bus) runs the loop and tells its listener.

A missing heartbeat means death only while heartbeats can be observed. When
Redis restarts it loses every key, and while it is unreachable nobody's
heartbeat lands: the other processes are not dead for that. So after any loss
of contact (`lost_contact`: a failed command, a restarted server) this process
judges nobody until it has watched heartbeats for one full TTL since its own
first successful beat - by then every live process has renewed its key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from collab.cluster.redis_driver import Redis

# `# type: ignore[misc]` below: redis-py types the asyncio client's set commands
# with the sync client's annotations (`Awaitable[int] | int`), which `await`
# rejects; they are coroutines at run time (redis-py issues #2399, #3195).


class Liveness:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        process_id: str,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._process_id = process_id
        self._ttl_s = ttl_s
        self._ttl_ms = int(ttl_s * 1000)
        self._clock = clock
        self._key = self._heartbeat_key(process_id)
        self._members_key = f"{prefix}procs"
        self._known: set[str] = set()  # processes this one has seen alive
        # From when missing heartbeats mean death again: one TTL after the first
        # beat that succeeded since contact was (re)established; None until then.
        self._judging_from: float | None = None

    @property
    def is_judging(self) -> bool:
        """Whether heartbeats have been observable for a full TTL, so a missing
        one means its process is dead."""
        return self._judging_from is not None and self._clock() >= self._judging_from

    def lost_contact(self) -> None:
        """Redis was unreachable, or restarted (losing every heartbeat key): until
        heartbeats have been observed for a full TTL again, none is missing."""
        self._judging_from = None

    def _heartbeat_key(self, process_id: str) -> str:
        return f"{self._prefix}proc:{process_id}"

    def saw(self, process_id: str) -> None:
        """`process_id` published something: it is alive (watch it from now on)."""
        self._known.add(process_id)

    async def beat(self) -> bool:
        """Renew this process's heartbeat; False if it had expired meanwhile (the
        others took this process for dead and removed its clients' presence)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(self._key)
            pipe.set(self._key, b"1", px=self._ttl_ms)
            pipe.sadd(self._members_key, self._process_id)
            existed, *_ = await pipe.execute()
        if self._judging_from is None:
            self._judging_from = self._clock() + self._ttl_s
        return bool(existed)

    async def live_processes(self) -> set[str]:
        members = {m.decode() for m in await self._redis.smembers(self._members_key)}  # type: ignore[misc]
        return await self._alive(members)

    async def _alive(self, process_ids: Iterable[str]) -> set[str]:
        ids = sorted(process_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for process_id in ids:
                pipe.exists(self._heartbeat_key(process_id))
            found = await pipe.execute()
        return {process_id for process_id, ok in zip(ids, found, strict=True) if ok}

    async def newly_dead(self) -> list[str]:
        """Processes seen alive before whose heartbeat has now expired (each is
        reported once); dead members nobody here knew are just tidied away.
        Nobody, while heartbeats have not been observable for a full TTL."""
        if not self.is_judging:
            return []
        members = {m.decode() for m in await self._redis.smembers(self._members_key)}  # type: ignore[misc]
        candidates = (members | self._known) - {self._process_id}
        alive = await self._alive(candidates)
        dead = candidates - alive
        if dead:
            await self._redis.srem(self._members_key, *dead)  # type: ignore[misc]
        reported = sorted(dead & self._known)
        self._known = alive
        return reported

    async def leave(self) -> None:
        """A graceful exit: the others need not wait for the TTL."""
        await self._redis.delete(self._key)
        await self._redis.srem(self._members_key, self._process_id)  # type: ignore[misc]
