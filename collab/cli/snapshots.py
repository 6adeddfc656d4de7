"""`collab snapshots list|save|show|restore`: version history from the shell.

Two ways to reach the versions, chosen so the CLI never writes behind a running
server's back (connected clients would never see the change, and the server's
next compaction would be ordered wrongly against it):
- `--server URL`, or a live server found in the database's lease table: go
  through that server's HTTP API, so connected editors receive the restore;
- no server running on that database: open the database directly, with the same
  runtime the server uses.
Output is the API's JSON shape (`--json`) or a short human summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from collab.api.versions import SnapshotOut
from collab.config import Settings, client_token
from collab.content import render_content
from collab.errors import CollabError, DocumentNotFound
from collab.logs import redact_url
from collab.runtime import Runtime, open_runtime
from collab.storage.leases import running_servers
from collab.storage.sql_store import SqlStore


class CliError(Exception):
    """Shown to the user as one line; exit code 1."""


def add_snapshot_commands(commands: Any) -> None:
    parser = commands.add_parser("snapshots", help="list, save, show and restore versions")
    actions = parser.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("list", "versions of a document, newest first"),
        ("save", "save the current state as a named version"),
        ("show", "a version's metadata and content"),
        ("restore", "restore a version (the current state is kept as a pre-restore version)"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("document")
        if action in ("show", "restore"):
            sub.add_argument("snapshot_id", type=int, metavar="ID")
        if action == "save":
            sub.add_argument("--label", required=True)
            sub.add_argument("--author")
        if action == "list":
            sub.add_argument("--limit", type=_positive, default=50)
            sub.add_argument("--before", type=int, metavar="ID")
        sub.add_argument("--server", metavar="URL", help="a running collab server")
        sub.add_argument(
            "--token",
            default=client_token(),
            help="sent to a server that requires one (default: COLLAB_TOKEN)",
        )
        sub.add_argument(
            "--database", dest="database_url", metavar="URL", help="when no server runs"
        )
        sub.add_argument("--json", action="store_true", help="print the API's JSON")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def run_snapshot_command(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_dispatch(args))
    except CliError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 1
    _print(args, result)
    return 0


async def _dispatch(args: argparse.Namespace) -> dict[str, Any]:
    server = args.server or await running_server_url(Settings.load(database_url=args.database_url))
    if server:
        return _over_http(server.rstrip("/"), args)
    settings = Settings.load(database_url=args.database_url)
    async with open_runtime(settings, is_server=False) as runtime:
        try:
            return await _direct(runtime, args)
        except CollabError as exc:
            raise CliError(_describe(exc)) from exc


async def running_server_url(settings: Settings) -> str | None:
    """The URL of a live server on this database, so we go through it."""
    store = SqlStore(settings.database_url)
    await store.open()
    try:
        leases = await running_servers(store)
    finally:
        await store.close()
    if not leases:
        return None
    # Several servers (a cluster) share the database: any of them will do.
    lease = max(leases, key=lambda lease: lease.heartbeat_at)
    url = lease.url
    print(
        f"collab: a server ({url}, pid {lease.pid} on {lease.hostname}) uses "
        f"{redact_url(settings.database_url)}; going through its API",
        file=sys.stderr,
    )
    return url


def _over_http(server: str, args: argparse.Namespace) -> dict[str, Any]:
    base = f"{server}/api/documents/{args.document}/snapshots"
    token = args.token
    if args.action == "list":
        query = f"?limit={args.limit}" + (f"&before={args.before}" if args.before else "")
        return _request("GET", base + query, token)
    if args.action == "save":
        return _request("POST", base, token, {"label": args.label, "author": args.author})
    if args.action == "show":
        return _request("GET", f"{base}/{args.snapshot_id}", token)
    return _request("POST", f"{base}/{args.snapshot_id}/restore", token)


def _request(
    method: str, url: str, token: str | None, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
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


async def _direct(runtime: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    history = runtime.history
    if args.action == "list":
        versions = await history.list_versions(
            args.document, limit=args.limit, before_id=args.before
        )
        return {
            "snapshots": [_json(SnapshotOut.of(v)) for v in versions],
            "next_before": versions[-1].id if len(versions) == args.limit else None,
        }
    if args.action == "save":
        info = await history.save_version(args.document, label=args.label, author=args.author)
        return _json(SnapshotOut.of(info))
    if args.action == "show":
        snapshot = await history.get_version(args.document, args.snapshot_id)
        return {
            "name": args.document,
            "content": render_content(snapshot.state),
            "snapshot": _json(SnapshotOut.of(snapshot.info)),
        }
    result = await history.restore(args.document, args.snapshot_id)
    return {
        "document": args.document,
        "restored_snapshot_id": args.snapshot_id,
        "pre_restore_snapshot_id": result.pre_restore_id,
        "changed": result.changed,
    }


def _json(model: SnapshotOut) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _describe(exc: CollabError) -> str:
    if isinstance(exc, DocumentNotFound):
        return f"document {exc.args[0]!r} not found"
    return str(exc)


def _print(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif args.action == "list":
        for version in result["snapshots"]:
            print(_line(version))
        if result["next_before"]:
            print(f"(more: --before {result['next_before']})")
    elif args.action == "save":
        print(f"saved version {result['id']}: {_line(result)}")
    elif args.action == "show":
        print(_line(result["snapshot"]))
        print(json.dumps(result["content"], indent=2, ensure_ascii=False))
    else:
        print(
            f"restored version {result['restored_snapshot_id']} of {result['document']}; "
            f"undo with: collab snapshots restore {result['document']} "
            f"{result['pre_restore_snapshot_id']}"
        )


def _line(version: dict[str, Any]) -> str:
    label = f" {version['label']!r}" if version.get("label") else ""
    author = f" by {version['author']}" if version.get("author") else ""
    preview = version.get("preview", "")[:50]
    return (
        f"{version['id']:>6}  {version['updated_at'][:19]}  {version['kind']:<11}"
        f"{label}{author}  {version['size_bytes']} B  {preview!r}"
    )
