"""Keep-alives: an idle connection hears one no-op per interval, and no connection
is silent for longer than that. The checks (every half interval) are driven by
hand here, one call per check, so the test is about which checks send, not
about time."""

from __future__ import annotations

import random

from collab.metrics import Metrics
from collab.protocol.codec import KEEPALIVE_MESSAGE
from collab.rooms.peer import Peer, PeerLimits
from tests.support.fakes import RecordingTransport

INTERVAL_S = 3600.0  # the peer's own timer never fires during a test


def _peer() -> tuple[Peer, list[bytes]]:
    written: list[bytes] = []

    def write_now(message: bytes) -> bool:
        written.append(message)
        return True

    limits = PeerLimits(keepalive_interval_s=INTERVAL_S)
    peer = Peer(RecordingTransport(), "doc", limits, Metrics(), write_now=write_now)
    return peer, written


def _check(peer: Peer) -> None:
    """One of the checks the peer's timer makes every half interval."""
    peer._keepalive_due()
    assert peer._keepalive is not None
    peer._keepalive.cancel()  # re-armed by the check: driven by hand instead


async def test_an_idle_connection_hears_one_keepalive_per_interval_not_per_check():
    peer, written = _peer()
    sent_at = []
    for check in range(12):
        before = len(written)
        _check(peer)
        if len(written) > before:
            sent_at.append(check)
    assert written == [KEEPALIVE_MESSAGE] * 6
    assert sent_at == [0, 2, 4, 6, 8, 10]  # every other check: once an interval


async def test_a_message_just_after_a_check_is_followed_by_a_keepalive_two_checks_later():
    peer, written = _peer()
    _check(peer)  # silent since it joined: a keep-alive
    _check(peer)  # the keep-alive is half an interval old: nothing
    peer.send(b"\x00\x02\x01\x00")  # an update relayed just after that check
    _check(peer)  # something went out since the last check: nothing
    assert written == [KEEPALIVE_MESSAGE, b"\x00\x02\x01\x00"]
    _check(peer)  # an interval after the update: a keep-alive
    assert written[-1] == KEEPALIVE_MESSAGE and len(written) == 3


async def test_no_connection_is_silent_for_more_than_an_interval_whatever_it_is_sent():
    """Half intervals in which the room sends something or not, at random: the
    silence between two writes (keep-alives included) never spans more than two
    checks, i.e. one interval."""
    rng = random.Random(7)
    for _ in range(200):
        peer, written = _peer()
        last_write_check = 0
        longest = 0
        for check in range(1, 40):
            if rng.random() < 0.3:  # the room relays something in this half interval
                peer.send(b"\x00\x02\x01\x00")
                last_write_check = check - 1  # at worst just after the previous check
            before = len(written)
            _check(peer)
            if len(written) > before:
                last_write_check = check
            longest = max(longest, check - last_write_check)
        assert longest <= 2
