"""`collab export NAME` and `collab import NAME FILE`: a document's text to and
from a file.

Like `collab snapshots`, never behind a running server's back: with `--server
URL`, or a live server found in the database's lease table, they go through
its HTTP API (GET /api/documents/{name}/export, POST /api/documents), so
connected editors see an import at once; with no server on that database they
open it directly, with the same runtime and the same rules (collab.history.edits,
collab.history.export).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import get_args

from collab.cli.snapshots import CliError, running_server_url
from collab.config import Settings, client_token
from collab.errors import CollabError, DocumentNotFound
from collab.history.edits import DocumentEdits
from collab.history.export import ExportFormat, export_document
from collab.runtime import open_runtime

DEFAULT_ROOT = "content"  # the text root the browser editor edits
_FORMAT_OF_SUFFIX = {".md": "markdown", ".markdown": "markdown", ".txt": "text"}
_FORMAT_OF_SUFFIX_OUT: dict[str, ExportFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
}


def add_transfer_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser("export", help="write a document's text to a file")
    export.add_argument("document")
    export.add_argument(
        "--format",
        choices=get_args(ExportFormat),
        help="default: from --output's extension, else markdown",
    )
    export.add_argument("--output", "-o", metavar="FILE", help="default: standard output")
    imported = commands.add_parser("import", help="create a document from a text file")
    imported.add_argument("document")
    imported.add_argument("file", metavar="FILE", help="`-` for standard input")
    imported.add_argument(
        "--format",
        choices=("markdown", "text"),
        help="default: from FILE's extension (.txt: text), else markdown",
    )
    for sub in (export, imported):
        sub.add_argument("--root", default=DEFAULT_ROOT, help="the text root (default: content)")
        sub.add_argument("--server", metavar="URL", help="a running collab server")
        sub.add_argument(
            "--token",
            default=client_token(),
            help="sent to a server that requires one (default: COLLAB_TOKEN)",
        )
        sub.add_argument(
            "--database", dest="database_url", metavar="URL", help="when no server runs"
        )


def run_transfer_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "export":
            body = asyncio.run(_export(args))
            if args.output:
                with open(args.output, "w", encoding="utf-8", newline="") as output:
                    output.write(body)
            else:
                sys.stdout.write(body)
        else:
            seq = asyncio.run(_import(args, _read_source(args.file)))
            print(f"imported {args.document} (sequence number {seq})", file=sys.stderr)
    except CliError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 1
    return 0


async def _export(args: argparse.Namespace) -> str:
    suffix = Path(args.output).suffix.lower() if args.output else ""
    export_format: ExportFormat = args.format or _FORMAT_OF_SUFFIX_OUT.get(suffix) or "markdown"
    settings = Settings.load(database_url=args.database_url)
    server = args.server or await running_server_url(settings)
    if server:
        query = urllib.parse.urlencode({"format": export_format, "root": args.root})
        url = f"{server.rstrip('/')}/api/documents/{args.document}/export?{query}"
        return _http("GET", url, args.token).decode("utf-8")
    async with open_runtime(settings, is_server=False) as runtime:
        try:
            state = await runtime.registry.read_state(args.document)
            if state is None:
                raise DocumentNotFound(args.document)
            return await asyncio.to_thread(
                export_document,
                state,
                args.document,
                export_format,
                args.root,
                allow_remote_images=settings.allow_remote_images,
            )
        except CollabError as exc:
            raise CliError(_describe(exc)) from exc


def _read_source(file: str) -> str:
    """The file's text exactly (line endings as they are), or standard input's."""
    if file == "-":
        return sys.stdin.read()
    with open(file, encoding="utf-8", newline="") as source:
        return source.read()


async def _import(args: argparse.Namespace, content: str) -> int | None:
    import_format = args.format or _FORMAT_OF_SUFFIX.get(Path(args.file).suffix.lower(), "markdown")
    settings = Settings.load(database_url=args.database_url)
    server = args.server or await running_server_url(settings)
    if server:
        body = {"name": args.document, "content": content, "format": import_format}
        body["root"] = args.root
        answer = _http("POST", f"{server.rstrip('/')}/api/documents", args.token, body)
        seq: int | None = json.loads(answer)["seq"]
        return seq
    async with open_runtime(settings, is_server=False) as runtime:
        edits = DocumentEdits(runtime.registry, runtime.history)
        try:
            result = await edits.create(args.document, args.root, content, author=None)
        except CollabError as exc:
            raise CliError(_describe(exc)) from exc
        return result.seq


def _http(method: str, url: str, token: str | None, body: dict[str, str] | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = str(json.loads(detail)["detail"])
        except (ValueError, KeyError, TypeError):
            pass
        if exc.code == 401:
            detail += " (pass --token or set COLLAB_TOKEN; `collab token issue` makes one)"
        raise CliError(f"{method} {url}: {exc.code} {detail}") from exc
    except urllib.error.URLError as exc:
        raise CliError(f"cannot reach the server at {url}: {exc.reason}") from exc


def _describe(exc: CollabError) -> str:
    if isinstance(exc, DocumentNotFound):
        return f"document {exc.args[0]!r} not found"
    return str(exc)
