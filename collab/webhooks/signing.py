"""Webhook signatures: HMAC-SHA256 over `timestamp + "." + body`.

The header is `X-Collab-Signature: t=<unix seconds>,v1=<hex digest>` (the scheme
Stripe made familiar): the timestamp is signed too, so a receiver that refuses
old timestamps also refuses replays. docs/webhooks.md has the receiver's side.
Pure functions, standard library only.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Collab-Signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `timestamp.body` under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def is_valid(
    secret: str, header: str, body: bytes, *, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> bool:
    """What a receiver checks: a v1 signature of this body under `secret`, made
    at most `tolerance_s` from `now`."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
