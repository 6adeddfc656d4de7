"""Issuing tokens the server accepts (`collab token issue`, tests, programs)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt

from collab.auth.keys import AsymmetricKey, choose_algorithms
from collab.auth.policy import (
    AuthConfigError,
    Role,
    validate_document_patterns,
)


def issue_token(
    key: str | AsymmetricKey,
    *,
    documents: Iterable[str],
    role: Role,
    ttl_s: int,
    algorithm: str | None = None,
    subject: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    token_id: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token the server (configured with this key) accepts. It carries a
    `jti` (`token_id`, a new UUID by default), so it can be revoked on its own."""
    algorithms = choose_algorithms(key, algorithm or "", "--algorithm")
    if len(algorithms) != 1:
        raise AuthConfigError("--algorithm takes one algorithm")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iat": issued_at,
        "exp": issued_at + ttl_s,
        "docs": list(validate_document_patterns(list(documents))),
        "role": Role(role).value,
        "jti": token_id or str(uuid.uuid4()),
    }
    for claim, value in (("sub", subject), ("aud", audience), ("iss", issuer)):
        if value:
            claims[claim] = value
    return jwt.encode(claims, key, algorithm=algorithms[0])  # type: ignore[arg-type]
