"""The per-copy operation rate a node reports in its heartbeat (pure; time passed in)."""

from __future__ import annotations

import pytest

from torua.node.rates import RateMeter


def steady(meter: RateMeter, start: float, seconds: float, per_second: int) -> float:
    """`per_second` evenly spaced ops for `seconds`; returns the time after the last one."""
    n = int(seconds * per_second)
    for i in range(n):
        meter.record(start + i / per_second)
    return start + n / per_second


@pytest.mark.parametrize(
    "ops_per_second, seconds, expected",
    [
        (10, 30.0, 10.0),  # long steady load: the window's average
        (100, 30.0, 100.0),
        (10, 3.0, 10.0),  # younger than the window: divided by its age, not the window
        (50, 1.0, 50.0),
    ],
)
def test_steady_load_reads_as_its_rate(ops_per_second, seconds, expected):
    meter = RateMeter(window=10.0)
    end = steady(meter, 1000.0, seconds, ops_per_second)
    assert meter.rate(end) == pytest.approx(expected, rel=0.12)


def test_nothing_recorded_is_zero():
    assert RateMeter().rate(5.0) == 0.0


def test_a_single_operation_counts_over_at_least_min_span():
    meter = RateMeter(window=10.0, min_span=1.0)
    meter.record(50.0)
    assert meter.rate(50.0) == 1.0


def test_old_operations_leave_the_window():
    meter = RateMeter(window=10.0)
    end = steady(meter, 0.0, 20.0, 20)
    assert meter.rate(end) == pytest.approx(20.0, rel=0.12)
    assert meter.rate(end + 5.0) == pytest.approx(10.0, rel=0.25)  # half the window idle
    assert meter.rate(end + 11.0) == 0.0


def test_load_change_shows_within_one_window():
    meter = RateMeter(window=10.0)
    end = steady(meter, 0.0, 20.0, 10)
    end = steady(meter, end, 10.0, 40)
    assert meter.rate(end) == pytest.approx(40.0, rel=0.12)


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"buckets": 0}, {"min_span": 0}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        RateMeter(**kwargs)
