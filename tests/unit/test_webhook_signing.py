"""Webhook signatures: what a receiver accepts and refuses; the retry schedule."""

from __future__ import annotations

import hashlib
import hmac

from collab.webhooks.dispatcher import WebhookPolicy
from collab.webhooks.signing import is_valid, signature_header

SECRET = "whsec-test-secret"
BODY = b'{"id":1,"type":"document.created"}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature_header(SECRET, 1700000000, BODY) == f"t=1700000000,v1={expected}"


def test_a_receiver_accepts_a_fresh_signature_of_the_exact_body():
    header = signature_header(SECRET, 1700000000, BODY)
    assert is_valid(SECRET, header, BODY, now=1700000010)


def test_a_receiver_refuses_another_body_secret_or_an_old_timestamp():
    header = signature_header(SECRET, 1700000000, BODY)
    assert not is_valid(SECRET, header, BODY + b" ", now=1700000000)
    assert not is_valid("another-secret", header, BODY, now=1700000000)
    assert not is_valid(SECRET, header, BODY, now=1700000000 + 301)
    assert not is_valid(SECRET, "v1=abc", BODY, now=1700000000)
    assert not is_valid(SECRET, "t=x,v1=abc", BODY, now=1700000000)


def test_retries_back_off_exponentially_up_to_the_maximum():
    policy = WebhookPolicy(secret="", retry_base_s=1.0, retry_max_s=10.0)
    assert [policy.retry_delay_s(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
