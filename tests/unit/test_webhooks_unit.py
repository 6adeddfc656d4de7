"""Webhooks without a server: signatures, the retry schedule, URLs and settings."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from collab.config import Settings
from collab.webhooks.dispatcher import WebhookPolicy
from collab.webhooks.http_post import check_url
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


def test_configured_webhook_urls_need_http_and_a_secret():
    with pytest.raises(ValueError, match="needs webhook_secret"):
        Settings(webhook_urls="https://hooks.example.com/a")
    with pytest.raises(ValueError, match="http:// or https://"):
        Settings(webhook_urls="ftp://hooks.example.com/a", webhook_secret="s")
    settings = Settings(
        webhook_urls=" https://a.example/x, ,http://b.example/y ", webhook_secret="s"
    )
    assert settings.webhook_url_list == ["https://a.example/x", "http://b.example/y"]


def test_a_subscription_url_must_be_http_with_a_host_and_no_control_characters():
    assert check_url("https://hooks.example.com/x?y=1") == "https://hooks.example.com/x?y=1"
    for bad in ("file:///etc/passwd", "http://", "http://a.example/\r\nHost: b", "gopher://a"):
        with pytest.raises(ValueError):
            check_url(bad)
