"""When a session reconnects: the backoff policy."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reconnect:
    """y-websocket's backoff (100 ms, doubling, at most 2.5 s), with jitter so the
    clients of a restarted server do not all come back in the same instant."""

    initial_delay_s: float = 0.1
    max_delay_s: float = 2.5
    # consecutive failed attempts before the session gives up; None: never
    max_attempts: int | None = None

    def delay_s(self, failures: int) -> float:
        delay: float = min(self.max_delay_s, self.initial_delay_s * 2.0 ** min(failures, 32))
        return delay * random.uniform(0.5, 1.0)

    def gives_up_after(self, failures: int) -> bool:
        return self.max_attempts is not None and failures > self.max_attempts


# the default of `Session` and `connect()`
DEFAULT_RECONNECT = Reconnect()
