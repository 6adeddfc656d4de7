"""One timeout constant and `eventually`: every wait in the suite is scaled by
TIMEOUT_S (COLLAB_TEST_TIMEOUT_SCALE makes it longer on slow machines); no test
sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

TIMEOUT_S = 10.0 * float(os.environ.get("COLLAB_TEST_TIMEOUT_SCALE", "1"))


T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]], *, timeout_s: float = TIMEOUT_S, what: str = ""
) -> T:
    """Poll `check` until it returns a truthy value (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout_s
    last_error: AssertionError | None = None
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            if result:
                return result  # type: ignore[return-value]
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            if last_error is not None:
                raise last_error
            raise AssertionError(f"condition not met within {timeout_s}s: {what or check}")
        await asyncio.sleep(0.01)
