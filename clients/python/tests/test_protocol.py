"""The pure pieces both clients share: key encoding, times, the retry schedule."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dedupd import _protocol as p


@pytest.mark.parametrize(
    "key, segment",
    [
        # The README's table ("Message ids in paths").
        ("a b", "a%20b"),
        ("a%20b", "a%2520b"),
        ("100%", "100%25"),
        ("x/y", "x%2Fy"),
        ("k?x", "k%3Fx"),
        ("h#1", "h%231"),
        ("\u00e9", "%C3%A9"),
        ("e\u0301", "e%CC%81"),
        ("+", "%2B"),
        ("\x00", "%00"),
        ("\U0001f600", "%F0%9F%98%80"),
        ("A-Za-z0-9-._~", "A-Za-z0-9-._~"),
        ("...", "..."),
    ],
)
def test_keys_are_encoded_byte_by_byte(key: str, segment: str) -> None:
    assert p.encode_segment(key) == segment


def test_times_with_any_fraction() -> None:
    want = datetime(2026, 12, 2, 16, 15, 19, 123456, tzinfo=timezone.utc)
    assert p.parse_time("2026-12-02T16:15:19.123456789Z") == want
    assert p.parse_time("2026-12-02T17:15:19.123456+01:00") == want
    assert p.parse_time("2026-12-02T16:15:19Z") == want.replace(microsecond=0)
    assert p.parse_time(None) is None


def test_the_schedule_honours_retry_after_within_the_budget() -> None:
    now = [0.0]
    schedule = p.RetrySchedule(5.0, clock=lambda: now[0])
    assert schedule.next_delay(1.0) == 1.0
    # Capped, and never past the budget.
    assert schedule.next_delay(60.0) == 5.0
    now[0] = 4.5
    assert schedule.next_delay(3.0) == pytest.approx(0.5)
    now[0] = 5.0
    assert schedule.next_delay(None) is None


def test_backoff_without_retry_after_grows_to_its_cap() -> None:
    schedule = p.RetrySchedule(1000.0, clock=lambda: 0.0)
    delays = [schedule.next_delay(None) for _ in range(12)]
    assert all(d is not None and 0 < d <= p.MAX_BACKOFF_SECS for d in delays)
    assert delays[-1] >= p.MAX_BACKOFF_SECS / 2  # type: ignore[operator]
