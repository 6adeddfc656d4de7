"""Who may do what: roles, document scopes and Origin checks, as pure policy.

A `Grant` is what a verified token allows: a role and the documents it covers.
`AccessPolicy.admit` turns what a request carries (a token, its Origin and Host
headers) and what it wants (a document, a role) into a Grant or exactly one
refusal: `Unauthenticated` (HTTP 401, close code 4401: get a new token) or
`Forbidden` (403, 4403: this token or page may not do this). Each refusal is
labelled with an `AuthFailure`, a stable string for log lines and metrics.

Token cryptography lives in collab.auth.tokens behind the `TokenVerifier` protocol,
revoked tokens in collab.auth.revocation behind `RevocationCheck` (a revoked token
is refused like an expired one, 401 / 4401); the transport (api.access) only
translates. Without a verifier the policy is
open: every request gets `OPEN_GRANT`, but the Origin check still applies, so a
page on another site cannot drive a browser into an open server on localhost.

This module does no I/O and never sees a key.
"""

from __future__ import annotations

import ipaddress
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from collab.errors import CloseCode, CollabError
from collab.protocol.names import (
    DOCUMENT_NAME_RULE,
    is_valid_document_name,
    is_valid_name_prefix,
)

ALL_DOCUMENTS = "*"
PREFIX_WILDCARD = "*"


class Role(StrEnum):
    """What a token may do; each role includes the ones before it."""

    READ = "read"  # receive documents and presence; REST GETs
    WRITE = "write"  # also edit, and save named versions
    ADMIN = "admin"  # also restore versions and delete documents

    def includes(self, required: Role) -> bool:
        return _RANK[self] >= _RANK[required]


_RANK = {Role.READ: 0, Role.WRITE: 1, Role.ADMIN: 2}


class AuthFailure(StrEnum):
    """Why a request or connection was refused: a label for logs and metrics."""

    MISSING_TOKEN = "missing_token"
    MALFORMED_TOKEN = "malformed_token"
    BAD_SIGNATURE = "bad_signature"  # also: signed with an algorithm we do not accept
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # nbf or iat in the future (beyond the leeway)
    INVALID_CLAIMS = "invalid_claims"  # docs/role missing or bad, wrong aud/iss
    DOCUMENT_NOT_IN_SCOPE = "document_not_in_scope"
    INSUFFICIENT_ROLE = "insufficient_role"
    BAD_ORIGIN = "bad_origin"
    REVOKED = "revoked"  # an administrator revoked the token (its `jti` or its subject)
    READ_ONLY_EDIT = "read_only_edit"  # raised by the room as errors.ReadOnlyEdit


class AuthError(CollabError):
    """A refusal. `message` is safe to show the client: it never holds the token."""

    close_code: CloseCode
    http_status: int

    def __init__(self, failure: AuthFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


class Unauthenticated(AuthError):
    """No usable token: retrying with the same one cannot help; get a new one."""

    close_code = CloseCode.UNAUTHORIZED
    http_status = 401


class Forbidden(AuthError):
    """A valid token (or an open server) that does not allow this request."""

    close_code = CloseCode.FORBIDDEN
    http_status = 403


class AuthConfigError(ValueError):
    """The server's auth settings are unusable; it must not start."""


# -- document scopes --------------------------------------------------------


def validate_document_patterns(patterns: object) -> tuple[str, ...]:
    """The `docs` claim: a non-empty list of exact document names, `PREFIX*`
    patterns (`team-a:*` covers `team-a:notes`, not `team-a`), or `*` (all)."""
    if not isinstance(patterns, list | tuple) or not patterns:
        raise ValueError("must be a non-empty list of document names or PREFIX* patterns")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ValueError(f"{pattern!r} is not a string")
        if pattern == ALL_DOCUMENTS:
            continue
        stem = pattern.removesuffix(PREFIX_WILDCARD)
        is_prefix = stem != pattern
        if not (is_valid_name_prefix(stem) if is_prefix else is_valid_document_name(stem)):
            raise ValueError(
                f"{pattern[:140]!r} is not a document name ({DOCUMENT_NAME_RULE}), "
                "a PREFIX* pattern, or *"
            )
    return tuple(patterns)


def pattern_covers(pattern: str, document: str) -> bool:
    if pattern.endswith(PREFIX_WILDCARD):
        return document.startswith(pattern[:-1])
    return document == pattern


@dataclass(frozen=True, slots=True)
class Grant:
    """What one verified token (or the open server) allows."""

    role: Role
    documents: tuple[str, ...]  # validated patterns
    subject: str | None = None  # the token's `sub`: who
    expires_at: float | None = None  # Unix time; None for the open server
    token_id: str | None = None  # the token's `jti`: what revokes this one token
    issued_at: float | None = None  # the token's `iat`: what a revocation by subject compares

    def covers(self, document: str) -> bool:
        return any(pattern_covers(pattern, document) for pattern in self.documents)

    @property
    def is_read_only(self) -> bool:
        return not self.role.includes(Role.WRITE)


OPEN_GRANT = Grant(Role.ADMIN, (ALL_DOCUMENTS,))


# -- browser origins ----------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_parts(origin: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `scheme://host[:port]`; ValueError for anything else
    (a path, credentials, the opaque origin "null")."""
    parts = urllib.parse.urlsplit(origin.strip())
    if (
        not parts.scheme
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"{origin[:200]!r} is not an origin (scheme://host[:port])")
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def _format_origin(scheme: str, host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalize_origin(origin: str) -> str:
    """`HTTPS://Example.com:443/` -> `https://example.com`: one spelling per origin."""
    return _format_origin(*_origin_parts(origin))


@dataclass(frozen=True)
class OriginPolicy:
    """Which web pages may use the API and the WebSocket from a browser.

    A page served by this server (Origin's host:port equal to the Host header) is
    always allowed; `allowed` adds other origins, `allows_any` all of them. A
    request without an Origin header is not from a browser page (browsers always
    send it on WebSocket handshakes and cross-origin requests) and is not judged
    here: Origin checks protect a browser's user, tokens protect the server.
    """

    allowed: frozenset[str] = frozenset()
    allows_any: bool = False

    @classmethod
    def parse(cls, spec: str) -> OriginPolicy:
        """`COLLAB_ALLOWED_ORIGINS`: comma-separated origins, or `*`; empty = same-origin."""
        items = [item.strip() for item in spec.split(",") if item.strip()]
        if "*" in items:
            return cls(allows_any=True)
        try:
            return cls(frozenset(normalize_origin(item) for item in items))
        except ValueError as exc:
            raise AuthConfigError(f"COLLAB_ALLOWED_ORIGINS: {exc}") from None

    @property
    def is_cross_origin_allowed(self) -> bool:
        return self.allows_any or bool(self.allowed)

    def is_allowed(self, origin: str | None, host: str | None) -> bool:
        if origin is None or self.allows_any:
            return True
        try:
            scheme, origin_host, origin_port = _origin_parts(origin)
        except ValueError:
            return False  # "null" (sandboxed frames, file://) or garbage
        if _format_origin(scheme, origin_host, origin_port) in self.allowed:
            return True
        return host is not None and _is_same_host(scheme, origin_host, origin_port, host)


def _is_same_host(scheme: str, origin_host: str, origin_port: int | None, host: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(f"//{host.strip()}")
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return False
    return parts.hostname is not None and (parts.hostname.lower(), port) == (
        origin_host,
        origin_port,
    )


# -- the policy -----------------------------------------------------------------


class RevocationCheck(Protocol):
    """Whether a grant was revoked; collab.auth.revocation.RevocationList is the one."""

    def is_revoked(self, grant: Grant, now: float) -> bool: ...


class TokenVerifier(Protocol):
    """Checks a token's signature and claims; collab.auth.tokens.JwtVerifier is the one."""

    @property
    def algorithms(self) -> Sequence[str]: ...

    def verify(self, token: str) -> Grant:
        """The token's grant, or `Unauthenticated`."""
        ...


@dataclass(frozen=True)
class AccessPolicy:
    verifier: TokenVerifier | None  # None: the server is open
    origins: OriginPolicy = OriginPolicy()
    # Tokens revoked before their `exp`; the list changes while the server runs.
    revocations: RevocationCheck | None = None
    clock: Callable[[], float] = time.time

    @property
    def is_open(self) -> bool:
        return self.verifier is None

    def admit(
        self,
        *,
        origin: str | None,
        host: str | None,
        token: str | None,
        document: str | None,
        role: Role,
    ) -> Grant:
        """Origin, then the token, then its scope and role; the first refusal wins.
        `document=None` asks only whether the token is good (for listings)."""
        if not self.origins.is_allowed(origin, host):
            raise Forbidden(AuthFailure.BAD_ORIGIN, "origin not allowed")
        grant = self.authenticate(token)
        if document is not None and not grant.covers(document):
            raise Forbidden(
                AuthFailure.DOCUMENT_NOT_IN_SCOPE, f"the token does not cover {document!r}"
            )
        if not grant.role.includes(role):
            raise Forbidden(
                AuthFailure.INSUFFICIENT_ROLE,
                f"needs the {role} role; the token grants {grant.role}",
            )
        return grant

    def authenticate(self, token: str | None) -> Grant:
        if self.verifier is None:
            return OPEN_GRANT
        if not token:
            raise Unauthenticated(AuthFailure.MISSING_TOKEN, "a token is required")
        grant = self.verifier.verify(token)
        if self.revocations is not None and self.revocations.is_revoked(grant, self.clock()):
            raise Unauthenticated(AuthFailure.REVOKED, "token revoked")
        return grant


def is_loopback_host(host: str) -> bool:
    """Only this machine can reach a server bound here."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # 0.0.0.0, ::, "" and host names: assume reachable
