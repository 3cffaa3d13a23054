"""Pure pieces of the inbox: backoff, event times, stored headers, config value extraction."""

from datetime import UTC, datetime, timedelta

import pytest

from hotcrm.webhooks.inbox import parse_event_time
from hotcrm.webhooks.processing import MAX_BACKOFF_SECONDS, backoff_delay
from hotcrm.webhooks.signatures import relevant_headers


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(n, 30).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_delay(50, 30) == timedelta(seconds=MAX_BACKOFF_SECONDS)


@pytest.mark.parametrize(
    "value", [1764000000, 1764000000.0, "1764000000", "2025-11-24T16:00:00Z", "2025-11-24T16:00:00+00:00"]
)
def test_event_time_formats(value):
    assert parse_event_time(value) == datetime(2025, 11, 24, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, True, "yesterday", {"t": 1}])
def test_unreadable_event_times_are_none(value):
    assert parse_event_time(value) is None


def test_naive_iso_time_is_taken_as_utc():
    assert parse_event_time("2025-11-24T16:00:00") == datetime(2025, 11, 24, 16, 0, tzinfo=UTC)


def test_only_relevant_headers_are_kept():
    headers = {"Stripe-Signature": "t=1,v1=ab", "Authorization": "Bearer x", "Content-Type": "application/json"}
    assert relevant_headers("stripe", headers) == {"stripe-signature": "t=1,v1=ab", "content-type": "application/json"}
    assert relevant_headers("hmac-sha256", {"X-Sig": "ab", "Cookie": "c"}, header="X-Sig") == {"x-sig": "ab"}
