"""Keys and the algorithms they allow, for verifying and issuing tokens.

An HMAC secret (HS256, at least 32 bytes as RFC 7518 3.2 asks) or a key in PEM
(RSA -> RS256, EC P-256 -> ES256, Ed25519 -> EdDSA, ...). The accepted
algorithms are fixed by the key, never taken from a token, so a token cannot
pick `none` or present a public key as an HMAC secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from collab.auth.policy import (
    AuthConfigError,
)

# RFC 7518 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGORITHM_BY_CURVE = {
    "secp256r1": "ES256",
    "secp384r1": "ES384",
    "secp521r1": "ES512",
    "secp256k1": "ES256K",
}

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
