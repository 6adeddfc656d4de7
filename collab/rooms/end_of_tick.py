"""Coalescing work to the end of the current event-loop tick.

Why: when a socket delivers many frames at once, the receive loop handles them
all in one tick without suspending. Whatever each frame would send or store on
its own (an awareness broadcast, a log row and a relay) is cheaper done once for
the whole tick: one message per peer, one row, one commit. Work deferred this
way runs before anything scheduled after it, i.e. before any other task's next
step, so the delay is one pass of the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class EndOfTick:
    """Calls `flush` once at the end of the tick in which `schedule` was first called.

    `flush` must tolerate running with nothing to do: a caller that needs the
    work done now calls it directly, and the scheduled call still follows.
    """

    __slots__ = ("_flush", "_is_scheduled")

    def __init__(self, flush: Callable[[], object]) -> None:
        self._flush = flush
        self._is_scheduled = False

    def schedule(self) -> None:
        if self._is_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller: nothing to coalesce with
            self._flush()
            return
        self._is_scheduled = True
        loop.call_soon(self._run)

    def _run(self) -> None:
        self._is_scheduled = False
        self._flush()
