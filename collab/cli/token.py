"""`collab token issue|revoke|revocations`: tokens for a server, and taking them back.

`issue` prints a signed token for a server configured with the same key. The key
comes from `--secret` / `--private-key`, or else from the server's own settings
(COLLAB_AUTH_SECRET; COLLAB_AUTH_AUDIENCE and COLLAB_AUTH_ISSUER become the
token's `aud` and `iss`), so on the server's machine
`collab token issue --doc notes --role write` just works. Only the token goes to
stdout, so `TOKEN=$(collab token issue ...)` captures it. Every token carries a
`jti` (a new UUID, or `--jti`), by which `revoke` takes that one token back.

`revoke` and `revocations` reach the revocations the way `collab snapshots`
reaches versions (collab.cli.snapshots), so nothing is written behind a running
server's back: through a running server's API (`--server`, or one found in the
database's lease table), which closes the connections the revoked tokens hold
on every process; or, when no server runs on the database, in the table
directly, which every server reads when it starts. The API needs an admin token
for every document: `--token`, COLLAB_TOKEN, or else one minted for a minute
from COLLAB_AUTH_SECRET when it is set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from collab.api.tokens import RevocationOut
from collab.auth.issue import issue_token
from collab.auth.keys import AsymmetricKey, load_private_key
from collab.auth.policy import ALL_DOCUMENTS, Role
from collab.auth.revocation import Revocation, RevocationKind
from collab.cli.snapshots import CliError, _request, running_server_url
from collab.cluster.revocations import Revocations
from collab.config import Settings, client_token
from collab.storage.sql_store import SqlStore

# Who a revocation made without a server is recorded as made by.
COMMAND_LINE = "command line"
# The subject of the short-lived admin token the CLI mints for itself.
CLI_SUBJECT = "collab-cli"


def add_token_commands(commands: Any) -> None:
    parser = commands.add_parser("token", help="issue and revoke access tokens")
    actions = parser.add_subparsers(dest="action", required=True)
    issue = actions.add_parser(
        "issue",
        help="print a signed token",
        description="Print a token granting ROLE on the documents named by --doc.",
    )
    issue.add_argument(
        "--doc",
        dest="documents",
        action="append",
        required=True,
        metavar="NAME",
        help="a document name, a PREFIX* pattern (team-a:*), or * for all; repeatable",
    )
    issue.add_argument(
        "--role",
        required=True,
        choices=[role.value for role in Role],
        help="read: view; write: also edit and save versions; admin: also restore and delete",
    )
    issue.add_argument("--ttl", default="1h", help="lifetime: 30s, 15m, 1h, 7d (default 1h)")
    issue.add_argument("--sub", help="who the token is for (the author of its versions)")
    issue.add_argument(
        "--jti", help="the token's id, to revoke it by (default: a new UUID)", metavar="ID"
    )
    key = issue.add_mutually_exclusive_group()
    key.add_argument("--secret", help="HMAC secret (default: COLLAB_AUTH_SECRET)")
    key.add_argument(
        "--private-key", metavar="PEM_FILE", help="RSA, EC or Ed25519 private key (PEM)"
    )
    issue.add_argument(
        "--algorithm", help="default: HS256 for a secret, RS256/ES256/EdDSA by key type"
    )
    issue.add_argument("--audience", help="the `aud` claim (default: COLLAB_AUTH_AUDIENCE)")
    issue.add_argument("--issuer", help="the `iss` claim (default: COLLAB_AUTH_ISSUER)")

    revoke = actions.add_parser(
        "revoke",
        help="refuse a token, or a subject's tokens, before they expire",
        description="Refuse the token with this jti, or every token of this subject issued "
        "up to now; the connections they hold open are closed (4401).",
    )
    named = revoke.add_mutually_exclusive_group(required=True)
    named.add_argument("--jti", metavar="ID", help="the token's `jti` claim")
    named.add_argument("--subject", metavar="SUB", help="every token of this `sub`")
    revoke.add_argument(
        "--until",
        metavar="WHEN",
        help="when the revocation lapses: a duration from now (8h, 7d) or an ISO 8601 time "
        "(UTC unless it says otherwise); default: never",
    )
    revoke.add_argument("--reason", help="kept with the revocation")
    listing = actions.add_parser("revocations", help="the revocations in force")
    for sub in (revoke, listing):
        sub.add_argument("--server", metavar="URL", help="a running collab server")
        sub.add_argument(
            "--token",
            default=client_token(),
            help="an admin token for every document (default: COLLAB_TOKEN, or one "
            "minted from COLLAB_AUTH_SECRET)",
        )
        sub.add_argument(
            "--database", dest="database_url", metavar="URL", help="when no server runs"
        )
        sub.add_argument("--json", action="store_true", help="print the API's JSON")


def run_token_command(args: argparse.Namespace) -> int:
    if args.action in ("revoke", "revocations"):
        return _run_revocation_command(args)
    try:
        settings = Settings.load()
        key = _signing_key(args, settings)
        token = issue_token(
            key,
            documents=args.documents,
            role=Role(args.role),
            ttl_s=parse_ttl(args.ttl),
            algorithm=args.algorithm,
            subject=args.sub,
            audience=args.audience or settings.auth_audience or None,
            issuer=args.issuer or settings.auth_issuer or None,
            token_id=args.jti,
        )
    except ValueError as exc:
        print(f"collab token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _signing_key(args: argparse.Namespace, settings: Settings) -> str | AsymmetricKey:
    if args.private_key:
        return load_private_key(args.private_key)
    if args.secret:
        return str(args.secret)
    if settings.auth_secret:
        return settings.auth_secret
    if settings.auth_public_key:
        raise ValueError(
            "the server verifies with COLLAB_AUTH_PUBLIC_KEY: sign with the private half "
            "(--private-key FILE)"
        )
    raise ValueError("no signing key: set COLLAB_AUTH_SECRET, or pass --secret or --private-key")


_TTL_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TTL_PART = re.compile(r"(\d+)([smhd])")


def parse_ttl(text: str) -> int:
    """`90`, `30s`, `15m`, `1h`, `7d`, `1h30m` -> seconds."""
    spec = text.strip().lower()
    if spec.isdigit():
        seconds = int(spec)
    else:
        parts = _TTL_PART.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise ValueError(f"bad TTL {text!r}: use e.g. 30s, 15m, 1h, 7d or 1h30m")
        seconds = sum(int(n) * _TTL_UNITS_S[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("the TTL must be positive")
    return seconds


# -- revoke, revocations ------------------------------------------------------


def _run_revocation_command(args: argparse.Namespace) -> int:
    try:
        until = None if args.action != "revoke" else parse_until(args.until, time.time())
        result = asyncio.run(_dispatch_revocation(args, until))
    except (CliError, ValueError) as exc:
        print(f"collab token: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif args.action == "revoke":
        print(f"revoked {_describe(result)}")
    else:
        for entry in result["revocations"]:
            print(_describe(entry))
    return 0


async def _dispatch_revocation(args: argparse.Namespace, until: float | None) -> dict[str, Any]:
    settings = Settings.load(database_url=args.database_url)
    server = args.server or await running_server_url(settings)
    if server:
        base = f"{server.rstrip('/')}/api/tokens/revocations"
        token = args.token or _admin_token(settings)
        if args.action == "revocations":
            return _request("GET", base, token)
        body = {"jti": args.jti, "subject": args.subject, "until": until, "reason": args.reason}
        return _request("POST", base, token, {k: v for k, v in body.items() if v is not None})
    store = SqlStore(settings.database_url)
    await store.open()
    try:
        revocations = Revocations(store)
        if args.action == "revocations":
            return {"revocations": [_json(r) for r in await revocations.in_force()]}
        kind, value = (
            (RevocationKind.TOKEN, args.jti) if args.jti else (RevocationKind.SUBJECT, args.subject)
        )
        revocation = Revocation(
            kind,
            value,
            revoked_at=time.time(),
            until=until,
            reason=args.reason,
            revoked_by=COMMAND_LINE,
        )
        await revocations.revoke(revocation)
        return _json(revocation)
    finally:
        await store.close()


def _admin_token(settings: Settings) -> str | None:
    """A minute's admin token for every document, from the server's own secret (on
    its machine, whoever can read the secret can mint any token anyway)."""
    if not settings.auth_secret:
        return None
    return issue_token(
        settings.auth_secret,
        documents=[ALL_DOCUMENTS],
        role=Role.ADMIN,
        ttl_s=60,
        subject=CLI_SUBJECT,
        audience=settings.auth_audience or None,
        issuer=settings.auth_issuer or None,
    )


def parse_until(text: str | None, now: float) -> float | None:
    """`--until`: a duration from `now` (`8h`, `7d`) or an ISO 8601 time -> Unix seconds."""
    if text is None:
        return None
    try:
        return now + parse_ttl(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"bad --until {text!r}: use a duration (8h, 7d) or an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() <= now:
        raise ValueError(f"--until {text!r} is in the past")
    return moment.timestamp()


def _json(revocation: Revocation) -> dict[str, Any]:
    return RevocationOut.of(revocation).model_dump(mode="json")


def _describe(entry: dict[str, Any]) -> str:
    until = f" until {entry['until']}" if entry.get("until") else " for good"
    by = f" by {entry['revoked_by']}" if entry.get("revoked_by") else ""
    reason = f" ({entry['reason']})" if entry.get("reason") else ""
    return f"{entry['kind']} {entry['value']!r}{until}{by}{reason}"
