"""JSON Web Tokens (PyJWT): verified into Grants; the server's access policy.

Claims (the README's security section is the contract):
- `exp` (required), `iat`, `nbf`: checked with `COLLAB_AUTH_LEEWAY_S` of clock skew;
- `docs` (required): document names, `PREFIX*` patterns, or `*` for all;
- `role` (required): `read`, `write` or `admin`;
- `sub`: who; the author of versions saved and restores made through REST;
- `jti`: the token's id, by which an administrator revokes this one token
  (collab.auth.revocation); `iat` is what a revocation by subject compares;
- `aud`, `iss`: required and checked when the server is configured with them.

Keys and their algorithms: collab.auth.keys. Issuing: collab.auth.issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from collab.auth.keys import AsymmetricKey, choose_algorithms, load_public_key
from collab.auth.policy import (
    AccessPolicy,
    AuthConfigError,
    AuthFailure,
    Grant,
    OriginPolicy,
    RevocationCheck,
    Role,
    Unauthenticated,
    is_loopback_host,
    validate_document_patterns,
)
from collab.config import Settings

REQUIRED_CLAIMS = ("exp", "docs", "role")


# -- verifying --------------------------------------------------------------------


@dataclass(frozen=True)
class JwtVerifier:
    """Satisfies `auth.TokenVerifier`."""

    key: str | AsymmetricKey = field(repr=False)
    algorithms: tuple[str, ...]
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = 0.0

    def verify(self, token: str) -> Grant:
        try:
            claims = jwt.decode(
                token,
                self.key,  # type: ignore[arg-type]
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(AuthFailure.EXPIRED, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated(AuthFailure.NOT_YET_VALID, "token not valid yet") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(AuthFailure.BAD_SIGNATURE, "bad token signature") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated(
                AuthFailure.BAD_SIGNATURE,
                f"token not signed with an accepted algorithm ({', '.join(self.algorithms)})",
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(
                AuthFailure.INVALID_CLAIMS, f"token has no {exc.claim!r} claim"
            ) from None
        except jwt.DecodeError:
            raise Unauthenticated(AuthFailure.MALFORMED_TOKEN, "malformed token") from None
        except jwt.InvalidTokenError as exc:  # audience, issuer, iat, sub types...
            raise Unauthenticated(
                AuthFailure.INVALID_CLAIMS, f"token rejected: {type(exc).__name__}"
            ) from None
        return grant_from_claims(claims)


def grant_from_claims(claims: Mapping[str, Any]) -> Grant:
    try:
        role = Role(claims["role"])
    except (ValueError, TypeError):
        raise Unauthenticated(
            AuthFailure.INVALID_CLAIMS, "token role must be read, write or admin"
        ) from None
    try:
        documents = validate_document_patterns(claims["docs"])
    except ValueError as exc:
        raise Unauthenticated(AuthFailure.INVALID_CLAIMS, f"token docs claim {exc}") from None
    subject, token_id, issued_at = claims.get("sub"), claims.get("jti"), claims.get("iat")
    return Grant(
        role,
        documents,
        subject=subject if isinstance(subject, str) and subject else None,
        expires_at=float(claims["exp"]),
        token_id=token_id if isinstance(token_id, str) and token_id else None,
        # PyJWT has checked that a present `iat` is a number.
        issued_at=float(issued_at) if isinstance(issued_at, int | float) else None,
    )


def build_verifier(settings: Settings) -> JwtVerifier | None:
    """From the settings, or None when none of the keys is set (an open server)."""
    if settings.auth_secret and settings.auth_public_key:
        raise AuthConfigError(
            "set COLLAB_AUTH_SECRET (HMAC) or COLLAB_AUTH_PUBLIC_KEY (RSA/EC), not both"
        )
    key: str | AsymmetricKey
    if settings.auth_secret:
        key = settings.auth_secret
    elif settings.auth_public_key:
        key = load_public_key(settings.auth_public_key)
    elif settings.auth_algorithms or settings.auth_audience or settings.auth_issuer:
        raise AuthConfigError(
            "COLLAB_AUTH_ALGORITHMS/AUDIENCE/ISSUER need COLLAB_AUTH_SECRET or "
            "COLLAB_AUTH_PUBLIC_KEY"
        )
    else:
        return None
    return JwtVerifier(
        key,
        choose_algorithms(key, settings.auth_algorithms, "COLLAB_AUTH_ALGORITHMS"),
        audience=settings.auth_audience or None,
        issuer=settings.auth_issuer or None,
        leeway_s=settings.auth_leeway_s,
    )


def build_access_policy(
    settings: Settings, revocations: RevocationCheck | None = None
) -> AccessPolicy:
    """The server's policy; `AuthConfigError` for settings it must not start with.
    `revocations`: the tokens it refuses before their `exp` (none when open)."""
    verifier = build_verifier(settings)
    if verifier is None and not settings.allow_anonymous and not is_loopback_host(settings.host):
        raise AuthConfigError(
            f"refusing to listen on {settings.host or 'every interface'} without "
            "COLLAB_AUTH_SECRET or COLLAB_AUTH_PUBLIC_KEY: anyone who can reach it could "
            "read, change and delete every document. Configure a key, or pass "
            "--allow-anonymous (COLLAB_ALLOW_ANONYMOUS=1) to run open on purpose."
        )
    return AccessPolicy(
        verifier,
        OriginPolicy.parse(settings.allowed_origins),
        revocations=None if verifier is None else revocations,
    )
