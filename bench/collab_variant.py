"""Run `collab serve` with another event loop or WebSocket implementation.

    python bench/collab_variant.py --loop asyncio|uvloop --ws IMPL -- serve --port P ...

Only for comparing transports in the benchmark: collab's own `serve` builds the
uvicorn Config; this shim overrides its `loop`, `ws` and `ws_per_message_deflate`
arguments and changes nothing else, so every variant runs collab's exact code.
Run with the project's .venv Python (wsproto is installed there on demand).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn

from collab.cli import main as cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "auto"])
    parser.add_argument("--ws", choices=["websockets", "websockets-sansio", "wsproto"])
    parser.add_argument("--deflate", choices=["on", "off"])
    parser.add_argument("collab_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    if args.loop:
        overrides["loop"] = args.loop
    if args.ws:
        overrides["ws"] = args.ws
    if args.deflate:
        overrides["ws_per_message_deflate"] = args.deflate == "on"
    original = uvicorn.Config

    def config_with_overrides(*a: Any, **kw: Any) -> uvicorn.Config:
        kw.update(overrides)
        return original(*a, **kw)

    uvicorn.Config = config_with_overrides  # type: ignore[misc]
    argv = [a for a in args.collab_args if a != "--"]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
