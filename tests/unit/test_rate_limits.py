"""Per-key request rates (torua.rate_limits): the token bucket as a table of
requests over a clock, and the buckets a process keeps."""

from __future__ import annotations

import pytest

from torua.rate_limits import Limiter, retry_after, take


@pytest.mark.parametrize(
    "rate, times, waits",
    [
        # 1/s: one at once, then one a second
        (1.0, [0.0, 0.0, 0.5, 1.0, 1.0, 3.0], [0.0, 1.0, 0.5, 0.0, 1.0, 0.0]),
        # 4/s: a burst of 4, then one each quarter second
        (4.0, [0.0, 0.0, 0.0, 0.0, 0.0, 0.25], [0.0, 0.0, 0.0, 0.0, 0.25, 0.0]),
        # a slow rate: one request, then a long wait; idle time refills only to the burst
        (0.1, [0.0, 1.0, 100.0, 100.0], [0.0, 9.0, 0.0, 10.0]),
        # the clock going backwards (never on a monotonic clock) refills nothing
        (1.0, [5.0, 4.0], [0.0, 1.0]),
    ],
)
def test_the_token_bucket(rate, times, waits):
    bucket, got = None, []
    for now in times:
        bucket, wait = take(bucket, rate, now)
        got.append(round(wait, 6))
    assert got == waits


def test_a_refused_request_takes_nothing():
    bucket, _ = take(None, 1.0, 0.0)
    for _ in range(5):
        bucket, wait = take(bucket, 1.0, 0.5)
        assert wait == 0.5
    assert take(bucket, 1.0, 1.0)[1] == 0.0  # refusals did not push the next request further out


@pytest.mark.parametrize("wait, header", [(0.01, 1), (1.0, 1), (1.2, 2), (9.0, 9)])
def test_retry_after_is_whole_seconds_at_least_one(wait, header):
    assert retry_after(wait) == header


def test_the_limiter_keeps_a_bucket_per_key_and_forgets_the_least_recently_used():
    limiter = Limiter(max_buckets=2)
    assert limiter.take("a", 1.0, 0.0) == 0.0
    assert limiter.take("a", 1.0, 0.0) == 1.0  # a's own bucket is empty
    assert limiter.take("b", 1.0, 0.0) == 0.0  # b has its own
    assert limiter.take("c", 1.0, 0.0) == 0.0  # a is forgotten (least recently used) ...
    assert limiter.take("a", 1.0, 0.0) == 0.0  # ... so it starts full again
