"""Command line: `collab serve` (the default) runs the server.

Flags override COLLAB_* variables, which override defaults (see config.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from collab import __version__
from collab.api.app import create_app
from collab.auth.tokens import build_access_policy
from collab.cli.db import add_db_commands, run_db_command
from collab.cli.snapshots import add_snapshot_commands, run_snapshot_command
from collab.cli.token import add_token_commands, run_token_command
from collab.config import Settings
from collab.logs import configure_logging, redact_url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collab", description="Yjs-compatible collaboration server"
    )
    parser.add_argument("--version", action="version", version=f"collab {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the server (default)")
    add_serve_arguments(serve)
    add_snapshot_commands(commands)
    add_db_commands(commands)
    add_token_commands(commands)
    return parser


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to bind (COLLAB_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (COLLAB_PORT, default 1234)")
    parser.add_argument(
        "--database",
        dest="database_url",
        metavar="URL",
        help="SQLAlchemy URL (COLLAB_DATABASE_URL)",
    )
    parser.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="COLLAB_LOG_LEVEL, default info",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["NORMAL", "FULL", "EXTRA"],
        help="FULL also survives power loss (COLLAB_SQLITE_SYNCHRONOUS, default NORMAL)",
    )
    parser.add_argument("--room-grace", dest="room_grace_s", type=float, metavar="SECONDS")
    parser.add_argument("--compact-after-updates", type=int, metavar="N")
    parser.add_argument("--compact-after", dest="compact_after_s", type=float, metavar="SECONDS")
    parser.add_argument("--max-message-bytes", type=int, metavar="BYTES")
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="COLLAB_LOG_FORMAT, default text"
    )
    parser.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=None,
        help="run open (no tokens) on a non-loopback host (COLLAB_ALLOW_ANONYMOUS)",
    )
    parser.add_argument(
        "--allowed-origins",
        metavar="ORIGINS",
        help="other web origins allowed, comma-separated, or * (COLLAB_ALLOWED_ORIGINS)",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="run as one of several processes sharing documents through Redis "
        "(COLLAB_REDIS_URL, e.g. redis://127.0.0.1:6379/0)",
    )


def uvicorn_config(settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration for `settings` (the tests' in-process server too)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "log_level": settings.log_level,
        "ws": "websockets-sansio",
        # Above our own limit, so an oversized message reaches our check (its 4413
        # and log line) instead of the library's 1009, which y-websocket retries.
        "ws_max_size": settings.max_message_bytes * 2 + 1,
        # y-websocket clients keep the socket alive themselves; protocol pings stay
        # on so half-open TCP connections are noticed (0 turns them off).
        "ws_ping_interval": settings.ws_ping_interval_s or None,
        "ws_ping_timeout": settings.ws_ping_timeout_s or None,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
    }
    options.update(overrides)
    return uvicorn.Config(create_app(settings), **options)


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    logger = logging.getLogger("collab")
    logger.info(
        "collab %s starting: http://%s:%d (WebSocket ws://%s:%d/ws/{document}), database %s",
        __version__,
        settings.host,
        settings.port,
        settings.host,
        settings.port,
        redact_url(settings.database_url),
    )
    uvicorn.Server(uvicorn_config(settings)).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in {"-h", "--help", "--version"}):
        argv.insert(0, "serve")  # `collab --port 8000` means `collab serve --port 8000`
    args = parser.parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        options = {k: v for k, v in vars(args).items() if k != "command"}
        try:
            settings = Settings.load(**options)
            build_access_policy(settings)  # refuse to start on unusable auth settings
        except ValueError as exc:
            parser.error(str(exc))
        serve(settings)
        return 0
    if command == "snapshots":
        return run_snapshot_command(args)
    if command == "db":
        return run_db_command(args)
    if command == "token":
        return run_token_command(args)
    parser.error(f"unknown command {command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
