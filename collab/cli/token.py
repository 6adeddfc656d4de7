"""`collab token issue`: print a signed token for a server configured with the same key.

The key comes from `--secret` / `--private-key`, or else from the server's own
settings (COLLAB_AUTH_SECRET; COLLAB_AUTH_AUDIENCE and COLLAB_AUTH_ISSUER become
the token's `aud` and `iss`), so on the server's machine
`collab token issue --doc notes --role write` just works. Only the token goes to
stdout, so `TOKEN=$(collab token issue ...)` captures it.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from collab.auth.issue import issue_token
from collab.auth.keys import AsymmetricKey, load_private_key
from collab.auth.policy import Role
from collab.config import Settings


def add_token_commands(commands: Any) -> None:
    parser = commands.add_parser("token", help="issue access tokens")
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
    issue.add_argument("--sub", help="who the token is for (the default author of versions)")
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


def run_token_command(args: argparse.Namespace) -> int:
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
