"""JSON Web Tokens (PyJWT): verify them into Grants, issue them, keep them out of logs.

Claims (the README's security section is the contract):
- `exp` (required), `iat`, `nbf`: checked with `COLLAB_AUTH_LEEWAY_S` of clock skew;
- `docs` (required): document names, `PREFIX*` patterns, or `*` for all;
- `role` (required): `read`, `write` or `admin`;
- `sub`: who; the default author of versions saved through REST;
- `aud`, `iss`: required and checked when the server is configured with them.

Keys: an HMAC secret (HS256, at least 32 bytes as RFC 7518 3.2 asks) or a public
key in PEM (RSA -> RS256, EC P-256 -> ES256, ...). The accepted algorithms are
fixed by the key, never taken from the token, so a token cannot pick `none` or
present a public key as an HMAC secret.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from collab.auth.policy import (
    AccessPolicy,
    AuthConfigError,
    AuthFailure,
    Grant,
    OriginPolicy,
    Role,
    Unauthenticated,
    is_loopback_host,
    validate_document_patterns,
)
from collab.config import Settings

REQUIRED_CLAIMS = ("exp", "docs", "role")
# RFC 7518 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGORITHM_BY_CURVE = {
    "secp256r1": "ES256",
    "secp384r1": "ES384",
    "secp521r1": "ES512",
    "secp256k1": "ES256K",
}
_TTL_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TTL_PART = re.compile(r"(\d+)([smhd])")

AsymmetricKey = (
    rsa.RSAPublicKey
    | rsa.RSAPrivateKey
    | ec.EllipticCurvePublicKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PublicKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PublicKey
    | ed448.Ed448PrivateKey
)


# -- keys and algorithms --------------------------------------------------------


def _read_pem(value: str, setting: str) -> bytes:
    """PEM text (literal `\\n` allowed, for one-line env files) or a path to a PEM file."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n").encode()
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise AuthConfigError(f"{setting}: cannot read PEM file {value!r}: {exc}") from None


def load_public_key(value: str, setting: str = "COLLAB_AUTH_PUBLIC_KEY") -> AsymmetricKey:
    pem = _read_pem(value, setting)
    try:
        if b"CERTIFICATE-----" in pem:
            key: Any = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        hint = (
            " (that is a private key: give the server the public half, "
            "`openssl pkey -in key.pem -pubout`)"
            if b"PRIVATE KEY-----" in pem
            else ""
        )
        raise AuthConfigError(f"{setting}: not a PEM public key{hint}: {exc}") from None
    return _checked_key_type(key, setting)


def load_private_key(value: str, setting: str = "--private-key") -> AsymmetricKey:
    pem = _read_pem(value, setting)
    try:
        key: Any = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise AuthConfigError(f"{setting}: not an unencrypted PEM private key: {exc}") from None
    return _checked_key_type(key, setting)


def _checked_key_type(key: Any, setting: str) -> AsymmetricKey:
    if isinstance(key, AsymmetricKey):
        if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and (
            key.curve.name not in _EC_ALGORITHM_BY_CURVE
        ):
            raise AuthConfigError(f"{setting}: EC curve {key.curve.name} has no JWT algorithm")
        return key
    raise AuthConfigError(f"{setting}: use an RSA, EC or Ed25519/Ed448 key, not {type(key)}")


def algorithms_for(key: str | AsymmetricKey) -> tuple[str, ...]:
    """Every algorithm this key can verify or sign with; the first is the default."""
    if isinstance(key, str):
        return tuple(_HMAC_MIN_KEY_BYTES)
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return (_EC_ALGORITHM_BY_CURVE[key.curve.name],)
    return ("EdDSA",)


def choose_algorithms(key: str | AsymmetricKey, spec: str, setting: str) -> tuple[str, ...]:
    """`spec` (comma-separated) checked against the key; empty = the key's default."""
    possible = algorithms_for(key)
    chosen = tuple(a.strip() for a in spec.split(",") if a.strip()) or possible[:1]
    for algorithm in chosen:
        if algorithm not in possible:
            raise AuthConfigError(
                f"{setting}: {algorithm!r} does not fit this key; use one of {', '.join(possible)}"
            )
    if isinstance(key, str):
        needed = max(_HMAC_MIN_KEY_BYTES[a] for a in chosen)
        if len(key.encode()) < needed:
            raise AuthConfigError(
                f"the HMAC secret is {len(key.encode())} bytes; {'/'.join(chosen)} needs at "
                f"least {needed} (RFC 7518 3.2), e.g. `python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`"
            )
    return chosen


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
    subject = claims.get("sub")
    return Grant(
        role,
        documents,
        subject=subject if isinstance(subject, str) and subject else None,
        expires_at=float(claims["exp"]),
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


def build_access_policy(settings: Settings) -> AccessPolicy:
    """The server's policy; `AuthConfigError` for settings it must not start with."""
    verifier = build_verifier(settings)
    if verifier is None and not settings.allow_anonymous and not is_loopback_host(settings.host):
        raise AuthConfigError(
            f"refusing to listen on {settings.host or 'every interface'} without "
            "COLLAB_AUTH_SECRET or COLLAB_AUTH_PUBLIC_KEY: anyone who can reach it could "
            "read, change and delete every document. Configure a key, or pass "
            "--allow-anonymous (COLLAB_ALLOW_ANONYMOUS=1) to run open on purpose."
        )
    return AccessPolicy(verifier, OriginPolicy.parse(settings.allowed_origins))


# -- issuing ------------------------------------------------------------------------


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
    now: float | None = None,
) -> str:
    """A signed token the server (configured with this key) accepts."""
    algorithms = choose_algorithms(key, algorithm or "", "--algorithm")
    if len(algorithms) != 1:
        raise AuthConfigError("--algorithm takes one algorithm")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iat": issued_at,
        "exp": issued_at + ttl_s,
        "docs": list(validate_document_patterns(list(documents))),
        "role": Role(role).value,
    }
    for claim, value in (("sub", subject), ("aud", audience), ("iss", issuer)):
        if value:
            claims[claim] = value
    return jwt.encode(claims, key, algorithm=algorithms[0])  # type: ignore[arg-type]
