"""The activity timeline's `before` cursor: a page's last event, given back as
the ISO 8601 time the API printed, must not come back on the next page."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from collab.history.activity import microseconds


def test_a_time_printed_by_the_api_and_read_back_names_the_same_microsecond():
    rng = random.Random(7)
    for _ in range(20_000):
        at = 1_764_648_000 + rng.random() * 86_400
        printed = datetime.fromtimestamp(at, UTC).isoformat()  # as the API answers
        read_back = datetime.fromisoformat(printed).timestamp()  # as ?before= parses it
        assert microseconds(read_back) == microseconds(at), printed
