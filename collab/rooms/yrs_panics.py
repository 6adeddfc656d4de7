"""Rust panics inside yrs as typed errors.

Its own module because the room, its limits, its commit path and the history
layer's scratch documents all encode or merge with yrs, and each must see a
panic as the error its caller already handles.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def yrs_panics_as(error: Callable[[str], Exception]) -> Iterator[None]:
    """Turn a Rust panic inside yrs into `error`.

    pycrdt surfaces a panic as pyo3's PanicException, a BaseException, so every
    `except Exception` task boundary would miss it (a janitor sweep that met one
    would end the janitor). Fuzzing found frames that leave a Doc whose encoding
    panics (yrs 0.28, divide by zero in block_store); this keeps that to one
    refused connection or one failed compaction, reported, not a dead task."""
    try:
        yield
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise error(f"yrs panicked: {exc}") from exc
