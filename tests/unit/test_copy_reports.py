"""Which copies the map counts on that nodes say they lack (torua.coordinator.copy_reports), as tables."""

from __future__ import annotations

import pytest

from torua.coordinator.copy_reports import MISSING_AFTER, confirmed, expected_copies, has_copy, missing_streaks
from torua.protocol.messages import ShardEntry, ShardMap


def test_expected_copies_are_the_primaries_and_in_sync_replicas():
    m = ShardMap(9, 4, 2, [
        ShardEntry(0, "n1", ["n2"], ["n1", "n2"]),
        ShardEntry(1, "n2", ["n1"], ["n2"]),  # n1 not in sync yet: not counted on
        ShardEntry(2, "n3", ["n2"], ["n3", "n2"], target="n1"),  # n1 is only a move's target
        ShardEntry(3, "n1", [], ["n1"]),
    ])
    assert expected_copies(m, "n1") == {0: "primary", 3: "primary"}
    assert expected_copies(m, "n2") == {0: "in_sync", 1: "primary", 2: "in_sync"}
    assert expected_copies(m, "n4") == {}


# (id, expected, reported (role, complete) or None, has it)
HAS = [
    ("primary-serving", "primary", ("primary", True), True),
    ("primary-frozen-mid-move", "primary", ("frozen", True), True),
    ("primary-not-there", "primary", None, False),
    ("primary-only-a-replica", "primary", ("replica", True), False),
    ("primary-still-copying", "primary", ("copying", True), False),
    ("primary-retired", "primary", ("retired", True), False),
    ("in-sync-replica-whole", "in_sync", ("replica", True), True),
    ("in-sync-replica-refilling", "in_sync", ("replica", False), False),
    ("in-sync-replica-not-there", "in_sync", None, False),
    ("in-sync-replica-already-primary", "in_sync", ("primary", True), True),
    ("in-sync-replica-copying", "in_sync", ("copying", True), False),
]


@pytest.mark.parametrize("expected,reported,ok", [c[1:] for c in HAS], ids=[c[0] for c in HAS])
def test_has_copy(expected, reported, ok):
    assert has_copy(expected, reported) is ok


def test_one_report_lacking_a_copy_proves_nothing():
    expected = {0: "primary"}
    streaks = missing_streaks(expected, {}, {}, current=True)
    assert streaks == {0: 1} and confirmed(streaks) == set()


def test_missing_after_consecutive_reports_and_forgiven_at_once():
    expected = {0: "primary", 1: "in_sync"}
    streaks: dict[int, int] = {}
    for _ in range(MISSING_AFTER):
        streaks = missing_streaks(expected, {0: ("primary", True)}, streaks, current=True)
    assert confirmed(streaks) == {1}
    streaks = missing_streaks(expected, {0: ("primary", True), 1: ("replica", True)}, streaks, current=True)
    assert streaks == {} and confirmed(streaks) == set()


def test_a_copy_no_longer_expected_is_forgotten():
    streaks = {0: MISSING_AFTER + 4}
    assert missing_streaks({}, {}, streaks, current=True) == {}


def test_a_report_from_before_the_map_in_force_starts_over():
    """A restarted node beats before its assignment arrives: that says nothing."""
    streaks = {0: MISSING_AFTER - 1}
    assert missing_streaks({0: "primary"}, {}, streaks, current=False) == {}
    assert missing_streaks({0: "primary"}, {}, streaks, current=True) == {0: MISSING_AFTER}
