"""The access rules as pure functions: scopes, roles, origins, token checks, settings,
and the room refusing a read-only peer's edits (with in-memory fakes, no sockets)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Awareness, Doc, Text

from collab.auth.issue import issue_token
from collab.auth.keys import load_private_key, load_public_key
from collab.auth.policy import (
    OPEN_GRANT,
    AccessPolicy,
    AuthConfigError,
    AuthFailure,
    Forbidden,
    Grant,
    OriginPolicy,
    Role,
    Unauthenticated,
    is_loopback_host,
    normalize_origin,
    validate_document_patterns,
)
from collab.auth.revocation import Revocation, RevocationKind, RevocationList
from collab.auth.tokens import JwtVerifier, build_access_policy, build_verifier
from collab.cli.token import parse_ttl
from collab.config import Settings, client_token
from collab.errors import CloseCode, ReadOnlyEdit, Refusal
from collab.logs import TokenRedactingFilter, redact_tokens
from collab.metrics import Metrics
from collab.protocol.codec import (
    AwarenessUpdate,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_awareness,
)
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.room import Room
from tests.support.fakes import RecordingSink, RecordingTransport
from tests.support.server import metric_value
from tests.unit.test_fuzz import FUZZ, frames

SECRET = "unit-test-secret-of-at-least-32-bytes!"


# -- roles and scopes -------------------------------------------------------------


def test_each_role_includes_the_ones_below_it():
    assert Role.ADMIN.includes(Role.WRITE) and Role.ADMIN.includes(Role.READ)
    assert Role.WRITE.includes(Role.READ) and not Role.WRITE.includes(Role.ADMIN)
    assert not Role.READ.includes(Role.WRITE)


def test_exact_names_prefix_patterns_and_star_cover_what_they_say():
    grant = Grant(Role.WRITE, ("team-a:*", "notes"))
    assert grant.covers("team-a:plan") and grant.covers("team-a:x:y")
    assert grant.covers("notes")
    assert not grant.covers("team-a"), "the prefix is `team-a:`, not `team-a`"
    assert not grant.covers("team-b:plan")
    assert not grant.covers("notes2") and not grant.covers("note")
    everything = Grant(Role.READ, ("*",))
    assert everything.covers("anything") and everything.covers("team-b:x")


@pytest.mark.parametrize(
    "patterns",
    [[], "notes", ["bad name"], ["a/b"], ["a*b"], ["**"], [1], ["x" * 129], [""], [".."], None],
)
def test_bad_docs_claims_are_refused(patterns):
    with pytest.raises(ValueError):
        validate_document_patterns(patterns)


def test_good_docs_claims_are_accepted():
    assert validate_document_patterns(["*"]) == ("*",)
    assert validate_document_patterns(["team-a:*", "a.b_c-d", "x*", ".*"]) == (
        "team-a:*",
        "a.b_c-d",
        "x*",
        ".*",  # a prefix: it covers `.config`, never `.` alone (not a name)
    )


# -- origins ----------------------------------------------------------------------


def test_same_origin_is_allowed_by_default_and_other_origins_are_not():
    policy = OriginPolicy.parse("")
    assert policy.is_allowed(None, "127.0.0.1:1234"), "no Origin: not a browser page"
    assert policy.is_allowed("http://127.0.0.1:1234", "127.0.0.1:1234")
    assert policy.is_allowed("HTTP://LocalHost:1234", "localhost:1234")
    assert policy.is_allowed("https://example.com", "example.com"), "default ports"
    assert policy.is_allowed("https://example.com", "example.com:443")
    assert policy.is_allowed("http://[::1]:8000", "[::1]:8000")
    assert not policy.is_allowed("http://127.0.0.1:9999", "127.0.0.1:1234")
    assert not policy.is_allowed("https://evil.example", "127.0.0.1:1234")
    assert not policy.is_allowed("http://example.com", "example.com:443")
    assert not policy.is_allowed("null", "127.0.0.1:1234")
    assert not policy.is_allowed("https://example.com", None)


def test_configured_origins_are_allowed_besides_same_origin():
    policy = OriginPolicy.parse(" https://app.example.com , http://localhost:5173/")
    assert policy.is_allowed("https://app.example.com", "collab.example.com")
    assert policy.is_allowed("https://APP.example.com:443", "collab.example.com")
    assert policy.is_allowed("http://localhost:5173", "127.0.0.1:1234")
    assert policy.is_allowed("https://collab.example.com", "collab.example.com")
    assert not policy.is_allowed("https://other.example.com", "collab.example.com")
    assert policy.allowed == {"https://app.example.com", "http://localhost:5173"}
    anything = OriginPolicy.parse("*")
    assert anything.allows_any and anything.is_allowed("null", "x")


@pytest.mark.parametrize(
    "spec", ["example.com", "https://example.com/app", "https://u@x.com", "null"]
)
def test_bad_allowed_origins_are_a_start_up_error(spec):
    with pytest.raises(AuthConfigError, match="COLLAB_ALLOWED_ORIGINS"):
        OriginPolicy.parse(spec)


def test_normalize_origin_gives_one_spelling():
    assert normalize_origin("HTTPS://Example.COM:443/") == "https://example.com"
    assert normalize_origin("http://h:8080") == "http://h:8080"


# -- the policy -------------------------------------------------------------------


def _verifier(**kwargs) -> JwtVerifier:
    return JwtVerifier(SECRET, ("HS256",), **kwargs)


def _token(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    base = {"exp": int(time.time()) + 60, "docs": ["doc"], "role": "write"}
    return jwt.encode({**base, **claims}, key, algorithm=algorithm)


def test_open_policy_grants_everything_but_still_checks_origin():
    policy = AccessPolicy(None)
    grant = policy.admit(origin=None, host=None, token=None, document="x", role=Role.ADMIN)
    assert grant is OPEN_GRANT
    with pytest.raises(Forbidden) as refused:
        policy.admit(
            origin="https://evil.example", host="h", token=None, document="x", role=Role.READ
        )
    assert refused.value.failure is AuthFailure.BAD_ORIGIN


def test_admit_checks_origin_then_token_then_scope_then_role():
    policy = AccessPolicy(_verifier())
    admit = policy.admit
    with pytest.raises(Forbidden, match="origin"):
        admit(origin="https://evil.example", host="h", token=None, document="doc", role=Role.READ)
    with pytest.raises(Unauthenticated) as missing:
        admit(origin=None, host=None, token=None, document="doc", role=Role.READ)
    assert missing.value.failure is AuthFailure.MISSING_TOKEN
    assert missing.value.close_code == CloseCode.UNAUTHORIZED == 4401
    token = _token({"role": "read"})
    with pytest.raises(Forbidden) as scope:
        admit(origin=None, host=None, token=token, document="other", role=Role.READ)
    assert scope.value.failure is AuthFailure.DOCUMENT_NOT_IN_SCOPE
    assert scope.value.close_code == CloseCode.FORBIDDEN == 4403
    with pytest.raises(Forbidden) as role:
        admit(origin=None, host=None, token=token, document="doc", role=Role.WRITE)
    assert role.value.failure is AuthFailure.INSUFFICIENT_ROLE
    grant = admit(origin=None, host=None, token=token, document="doc", role=Role.READ)
    assert grant.role is Role.READ and grant.is_read_only
    listing = admit(origin=None, host=None, token=token, document=None, role=Role.READ)
    assert listing == grant


# -- revocation -------------------------------------------------------------------


def test_a_revoked_token_is_refused_like_an_expired_one_and_others_are_not():
    revocations = RevocationList()
    policy = AccessPolicy(_verifier(), revocations=revocations, clock=lambda: 1e10 - 1)
    revoked, kept = _token({"jti": "t-1", "sub": "ada"}), _token({"jti": "t-2", "sub": "ada"})
    revocations.add(Revocation(RevocationKind.TOKEN, "t-1", revoked_at=0.0))
    admit = policy.admit
    with pytest.raises(Unauthenticated) as refused:
        admit(origin=None, host=None, token=revoked, document="doc", role=Role.READ)
    assert refused.value.failure is AuthFailure.REVOKED
    assert (refused.value.message, refused.value.close_code, refused.value.http_status) == (
        "token revoked",
        CloseCode.UNAUTHORIZED,
        401,
    )
    assert admit(origin=None, host=None, token=kept, document="doc", role=Role.READ)


def test_a_subject_revocation_covers_tokens_issued_up_to_it_and_only_until_it_lapses():
    by_subject = Revocation(RevocationKind.SUBJECT, "ada", revoked_at=1000.0, until=5000.0)
    old = Grant(Role.WRITE, ("*",), subject="ada", issued_at=999.0)
    same_second = Grant(Role.WRITE, ("*",), subject="ada", issued_at=1000.0)
    newer = Grant(Role.WRITE, ("*",), subject="ada", issued_at=1001.0)
    no_iat = Grant(Role.WRITE, ("*",), subject="ada")
    someone_else = Grant(Role.WRITE, ("*",), subject="bob", issued_at=999.0)
    assert by_subject.covers(old, now=2000) and by_subject.covers(same_second, now=2000)
    assert by_subject.covers(no_iat, now=2000), "it cannot show it is newer"
    assert not by_subject.covers(newer, now=2000), "a token issued afterwards works"
    assert not by_subject.covers(someone_else, now=2000)
    assert not by_subject.covers(old, now=5000), "lapsed"
    by_id = Revocation(RevocationKind.TOKEN, "t-1", revoked_at=1000.0)
    assert by_id.covers(Grant(Role.READ, ("*",), token_id="t-1"), now=1e12), "for good"
    assert not by_id.covers(Grant(Role.READ, ("*",), token_id="t-2"), now=2000)
    assert not by_id.covers(Grant(Role.READ, ("*",)), now=2000), "no jti: not this token"


def test_the_revocation_list_merges_copies_and_drops_lapsed_entries():
    revocations = RevocationList()
    first = Revocation(RevocationKind.TOKEN, "t-1", revoked_at=1.0, until=100.0)
    second = Revocation(RevocationKind.SUBJECT, "ada", revoked_at=2.0)
    assert revocations.merge([first, second]) == [first, second]
    assert revocations.merge([second, first]) == [], "heard twice: nothing new"
    assert revocations.in_force(now=50) == [first, second]
    assert revocations.in_force(now=100) == [second] and len(revocations) == 1


# -- token verification -------------------------------------------------------------


def _failure(verifier: JwtVerifier, token: str) -> AuthFailure:
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert token not in refused.value.message
    return refused.value.failure


def test_a_good_token_becomes_a_grant():
    grant = _verifier().verify(_token({"sub": "ada", "docs": ["a:*", "b"], "role": "admin"}))
    assert grant.role is Role.ADMIN
    assert grant.documents == ("a:*", "b")
    assert grant.subject == "ada"
    assert grant.expires_at and grant.expires_at > time.time()
    assert (grant.token_id, grant.issued_at) == (None, None)
    named = _verifier().verify(_token({"jti": "t-1", "iat": 1000}))
    assert (named.token_id, named.issued_at) == ("t-1", 1000.0)


def test_bad_tokens_are_refused_with_their_reason():
    verifier = _verifier(leeway_s=5)
    now = int(time.time())
    assert _failure(verifier, _token({"exp": now - 60})) is AuthFailure.EXPIRED
    assert _failure(verifier, _token({"nbf": now + 60})) is AuthFailure.NOT_YET_VALID
    other = "another-secret-that-is-32-bytes-long!!"
    assert _failure(verifier, _token({}, key=other)) is AuthFailure.BAD_SIGNATURE
    assert _failure(verifier, "not.a.token") is AuthFailure.MALFORMED_TOKEN
    assert _failure(verifier, "garbage") is AuthFailure.MALFORMED_TOKEN
    unsigned = jwt.encode({"exp": now + 60, "docs": ["doc"], "role": "admin"}, None, "none")
    assert _failure(verifier, unsigned) is AuthFailure.BAD_SIGNATURE
    hs512 = _token({}, key=SECRET * 2, algorithm="HS512")
    assert _failure(verifier, hs512) is AuthFailure.BAD_SIGNATURE
    for claim in ("exp", "docs", "role"):
        claims = {"exp": now + 60, "docs": ["doc"], "role": "read"}
        del claims[claim]
        assert _failure(verifier, jwt.encode(claims, SECRET)) is AuthFailure.INVALID_CLAIMS
    assert _failure(verifier, _token({"role": "owner"})) is AuthFailure.INVALID_CLAIMS
    assert _failure(verifier, _token({"docs": "doc"})) is AuthFailure.INVALID_CLAIMS
    assert _failure(verifier, _token({"docs": ["a b"]})) is AuthFailure.INVALID_CLAIMS


def test_clock_skew_within_the_leeway_is_tolerated():
    verifier = _verifier(leeway_s=30)
    now = int(time.time())
    assert verifier.verify(_token({"exp": now - 5, "iat": now + 5}))


def test_audience_and_issuer_are_required_when_configured():
    verifier = _verifier(audience="collab", issuer="https://idp.example")
    good = _token({"aud": "collab", "iss": "https://idp.example"})
    assert verifier.verify(good).role is Role.WRITE
    assert _failure(verifier, _token({"iss": "https://idp.example"})) is AuthFailure.INVALID_CLAIMS
    wrong = _token({"aud": "other", "iss": "https://idp.example"})
    assert _failure(verifier, wrong) is AuthFailure.INVALID_CLAIMS
    assert _failure(verifier, _token({"aud": "collab"})) is AuthFailure.INVALID_CLAIMS


def _hs256(claims: dict, key: str) -> str:
    """An HS256 JWT by hand (PyJWT rightly refuses to sign with a PEM key)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    signature = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def _pem(key, private: bool = False) -> str:
    if private:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        data = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return data.decode()


@pytest.mark.parametrize(
    ("make_key", "algorithm"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
    ],
)
def test_public_key_verification_and_the_algorithm_confusion_attack(tmp_path, make_key, algorithm):
    private = make_key()
    key_file = tmp_path / "public.pem"
    key_file.write_text(_pem(private))
    for source in (_pem(private), str(key_file), _pem(private).replace("\n", "\\n")):
        verifier = build_verifier(Settings(auth_public_key=source))
        assert verifier is not None and verifier.algorithms == (algorithm,)
        token = issue_token(private, documents=["d"], role=Role.READ, ttl_s=60)
        assert jwt.get_unverified_header(token)["alg"] == algorithm
        assert verifier.verify(token).documents == ("d",)
    # An HMAC token "signed" with the public key's PEM text (which any client may
    # know) must not pass: the accepted algorithms come from the key, not the token.
    forged = _hs256({"exp": int(time.time()) + 60, "docs": ["*"], "role": "admin"}, _pem(private))
    assert _failure(verifier, forged) is AuthFailure.BAD_SIGNATURE


def test_key_settings_are_checked_at_start_up(tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthConfigError, match="at least 32"):
        build_verifier(Settings(auth_secret="short"))
    with pytest.raises(AuthConfigError, match="not both"):
        build_verifier(Settings(auth_secret=SECRET, auth_public_key=_pem(private)))
    with pytest.raises(AuthConfigError, match="private key"):
        load_public_key(_pem(private, private=True))
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_public_key(str(tmp_path / "missing.pem"))
    with pytest.raises(AuthConfigError, match="does not fit"):
        build_verifier(Settings(auth_public_key=_pem(private), auth_algorithms="RS256"))
    with pytest.raises(AuthConfigError, match="does not fit"):
        build_verifier(Settings(auth_secret=SECRET, auth_algorithms="ES256"))
    with pytest.raises(AuthConfigError, match="need COLLAB_AUTH_SECRET"):
        build_verifier(Settings(auth_audience="collab"))
    with pytest.raises(AuthConfigError, match="at least 64"):
        build_verifier(Settings(auth_secret=SECRET, auth_algorithms="HS256,HS512"))
    assert build_verifier(Settings()) is None
    key_file = tmp_path / "private.pem"
    key_file.write_text(_pem(private, private=True))
    assert isinstance(load_private_key(str(key_file)), ec.EllipticCurvePrivateKey)


def test_an_open_server_must_be_loopback_unless_anonymous_is_allowed():
    assert build_access_policy(Settings()).is_open
    assert build_access_policy(Settings(host="localhost")).is_open
    for host in ("0.0.0.0", "::", "192.168.1.5", "collab.example.com"):
        with pytest.raises(AuthConfigError, match="--allow-anonymous"):
            build_access_policy(Settings(host=host))
        assert build_access_policy(Settings(host=host, allow_anonymous=True)).is_open
        assert not build_access_policy(Settings(host=host, auth_secret=SECRET)).is_open
    assert is_loopback_host("127.0.0.2") and is_loopback_host("::1") and is_loopback_host("[::1]")


def test_boolean_and_client_token_variables():
    assert Settings.load({"COLLAB_ALLOW_ANONYMOUS": "1"}).allow_anonymous is True
    assert Settings.load({"COLLAB_ALLOW_ANONYMOUS": "no"}).allow_anonymous is False
    with pytest.raises(ValueError, match="COLLAB_ALLOW_ANONYMOUS"):
        Settings.load({"COLLAB_ALLOW_ANONYMOUS": "maybe"})
    assert client_token({"COLLAB_TOKEN": "abc"}) == "abc"
    assert client_token({}) is None
    assert SECRET not in repr(Settings(auth_secret=SECRET))


# -- issuing and logs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("1h30m", 5400)],
)
def test_ttl_parsing(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "1w", "h", "1.5h", "-1h", "1h 30m"])
def test_bad_ttls_are_refused(text):
    with pytest.raises(ValueError):
        parse_ttl(text)


def test_issued_tokens_carry_the_documented_claims():
    token = issue_token(
        SECRET,
        documents=["team-a:*"],
        role=Role.WRITE,
        ttl_s=3600,
        subject="ada",
        token_id="t-1",
        now=1000,
    )
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "iat": 1000,
        "exp": 4600,
        "docs": ["team-a:*"],
        "role": "write",
        "sub": "ada",
        "jti": "t-1",
    }
    # Without one given, each token gets its own id, so each can be revoked alone.
    ids = {
        jwt.decode(issue_token(SECRET, documents=["d"], role=Role.READ, ttl_s=60), SECRET,
                   algorithms=["HS256"])["jti"]
        for _ in range(3)
    }  # fmt: skip
    assert len(ids) == 3 and all(uuid.UUID(i) for i in ids)
    with pytest.raises(ValueError):
        issue_token(SECRET, documents=["bad name"], role=Role.READ, ttl_s=60)


def test_tokens_are_redacted_from_log_lines():
    token = issue_token(SECRET, documents=["d"], role=Role.READ, ttl_s=60)
    line = f'127.0.0.1:5 - "WebSocket /ws/d?token={token}&x=1" [accepted]'
    assert token not in redact_tokens(line)
    assert redact_tokens(line).endswith('?token=[redacted]&x=1" [accepted]')
    assert "secret" not in redact_tokens("GET /api?access_token=secret")
    assert "abc.def" not in redact_tokens("Authorization: Bearer abc.def")
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "%s", (line,), None)
    assert TokenRedactingFilter().filter(record)
    assert token not in record.getMessage() and "[redacted]" in record.getMessage()


# -- the room and a read-only peer ----------------------------------------------------------


def _an_edit(text: str) -> bytes:
    doc = Doc()
    doc.get("text", type=Text).insert(0, text)
    return doc.get_update()


async def test_the_room_never_applies_a_read_only_peers_updates():
    sink = RecordingSink(asyncio.get_running_loop())
    metrics = Metrics()
    room = Room("doc", Doc(), sink, metrics=metrics)
    reader = Peer(RecordingTransport(), "doc", PeerLimits(), Metrics(), is_read_only=True)
    writer = Peer(RecordingTransport(), "doc", PeerLimits(), Metrics())
    room.add_peer(reader)
    room.add_peer(writer)

    assert room.handle(reader, SyncStep2(_an_edit("catch-up"))) is False
    assert metric_value(metrics, "collab_messages_ignored_total", reason="read_only_step2") == 1
    assert reader.is_open
    assert room.handle(reader, SyncUpdate(b"\x00\x00")) is False
    with pytest.raises(ReadOnlyEdit) as refused:
        room.handle(reader, SyncUpdate(_an_edit("live edit")))
    assert refused.value.close_code == CloseCode.FORBIDDEN
    assert str(room.doc.get("text", type=Text)) == "" and sink.ops == []

    assert room.handle(writer, SyncUpdate(_an_edit("ok"))) is True
    room.submit_edits()
    assert str(room.doc.get("text", type=Text)) == "ok" and len(sink.ops) == 1


async def test_a_read_only_peers_presence_is_applied():
    room = Room("doc", Doc(), RecordingSink(asyncio.get_running_loop()))
    reader = Peer(RecordingTransport(), "doc", PeerLimits(), Metrics(), is_read_only=True)
    room.add_peer(reader)
    client = Doc()
    awareness = Awareness(client)
    awareness.set_local_state({"user": {"name": "viewer"}})
    message = decode_message(
        encode_awareness(awareness.encode_awareness_update([client.client_id]))
    )
    assert isinstance(message, AwarenessUpdate)
    room.handle(reader, message)
    assert room.awareness.states[client.client_id] == {"user": {"name": "viewer"}}
    assert reader.client_ids == {client.client_id}


@FUZZ
@given(sequence=st.lists(frames, min_size=1, max_size=12))
def test_whatever_a_read_only_peer_sends_the_document_never_changes(sequence: list[bytes]) -> None:
    with contextlib.closing(asyncio.new_event_loop()) as loop:
        _check_read_only_room(RecordingSink(loop), sequence)


def _check_read_only_room(sink: RecordingSink, sequence: list[bytes]) -> None:
    room = Room("fuzz", Doc(), sink)
    peer = Peer(RecordingTransport(), "fuzz", PeerLimits(), Metrics(), is_read_only=True)
    room.add_peer(peer)
    empty = room.doc.get_update()
    for frame in sequence:
        try:
            room.handle(peer, decode_message(frame))
        except Refusal:
            pass
    assert sink.ops == [], "nothing was submitted for storage (so nothing relayed)"
    assert room.doc.get_update() == empty
