"""The `collab` command: one subcommand per job, `serve` when none is named.

This module only builds the parser and dispatches; each subcommand lives in
its own module (serve, snapshots, db, token, transfer). `collab --port 8000` means
`collab serve --port 8000`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from collab import __version__
from collab.cli.db import add_db_commands, run_db_command
from collab.cli.serve import add_serve_arguments, run_serve_command
from collab.cli.snapshots import add_snapshot_commands, run_snapshot_command
from collab.cli.token import add_token_commands, run_token_command
from collab.cli.transfer import add_transfer_commands, run_transfer_command


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
    add_transfer_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in {"-h", "--help", "--version"}):
        argv.insert(0, "serve")  # `collab --port 8000` means `collab serve --port 8000`
    args = parser.parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        return run_serve_command(args, parser)
    if command == "snapshots":
        return run_snapshot_command(args)
    if command == "db":
        return run_db_command(args)
    if command == "token":
        return run_token_command(args)
    if command in ("export", "import"):
        return run_transfer_command(args)
    parser.error(f"unknown command {command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
