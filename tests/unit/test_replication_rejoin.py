"""Rejoin as a table: local last seq, promoted_at_seq and the primary's log base in; catch_up / recopy out."""

import pytest

from torua.replication.rejoin import POSITION_HOLD_S, agreed_seq, may_recopy, record_promotion, rejoin_plan

# (id, local_last_seq, promoted_at_seq, primary_log_base, expected)
CASES = [
    ("no-local-copy", None, 100, 0, "recopy"),
    ("no-local-copy-no-promotion", None, None, 0, "recopy"),
    ("behind-promotion", 90, 100, 50, "catch_up"),
    ("exactly-at-promotion", 100, 100, 50, "catch_up"),
    ("one-past-promotion-divergent", 101, 100, 50, "recopy"),
    ("far-past-promotion-divergent", 500, 100, 0, "recopy"),
    ("exactly-at-log-base", 50, 100, 50, "catch_up"),
    ("one-below-log-base-truncated", 49, 100, 50, "recopy"),
    ("empty-copy-full-log", 0, 100, 0, "catch_up"),
    ("empty-copy-truncated-log", 0, 100, 1, "recopy"),
    ("divergent-and-truncated", 120, 100, 110, "recopy"),
    ("no-promotion-since-cannot-diverge", 500, None, 50, "catch_up"),
    ("no-promotion-since-truncated", 10, None, 50, "recopy"),
]


@pytest.mark.parametrize("local,promoted_at,log_base,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejoin_plan(local, promoted_at, log_base, expected):
    assert rejoin_plan(local, promoted_at, log_base) == expected


# (id, copy's shard epoch, promotions shard epoch -> promoted_at_seq, expected)
AGREED = [
    ("no-promotions", 5, {}, None),
    ("only-earlier-promotions", 5, {3: 40, 5: 60}, None),
    ("one-later", 5, {3: 40, 6: 118}, 118),
    # old primary A at seq 10 (acked 8); B promoted at 8 writes 9', 10', 11'; C promoted at 11.
    # A's 9 and 10 are not C's: the first promotion after A's epoch decides.
    ("two-later-lowest-wins", 5, {6: 8, 9: 11}, 8),
    ("lower-seq-later", 5, {6: 20, 9: 12}, 12),
]


@pytest.mark.parametrize("epoch,promotions,expected", [c[1:] for c in AGREED], ids=[c[0] for c in AGREED])
def test_agreed_seq(epoch, promotions, expected):
    assert agreed_seq(epoch, promotions) == expected


def test_two_promotions_make_the_old_tail_divergent():
    # the example above: comparing with the latest promotion alone would wrongly catch up
    assert rejoin_plan(10, 11, 0) == "catch_up"
    assert rejoin_plan(10, agreed_seq(5, {6: 8, 9: 11}), 0) == "recopy"


def test_record_promotion_keeps_the_newest_and_merges_the_oldest():
    history: list[tuple[int, int]] = []
    for epoch, seq in [(2, 50), (4, 30), (6, 90), (8, 120)]:
        history = record_promotion(history, epoch, seq, keep=2)
    assert history == [(6, 30), (8, 120)]


def test_capped_history_never_answers_above_the_full_one():
    """A copy away for more promotions than are kept must not catch up over a divergent tail:
    for every copy epoch, the capped history's agreed seq is at most the full history's."""
    import random

    rng = random.Random(7)
    for _ in range(200):
        full: dict[int, int] = {}
        capped: list[tuple[int, int]] = []
        epoch = 0
        for _ in range(rng.randint(1, 20)):
            epoch += rng.randint(1, 3)
            seq = rng.randint(0, 500)
            full[epoch] = seq
            capped = record_promotion(capped, epoch, seq, keep=3)
            assert len(capped) <= 3
        for copy_epoch in range(0, epoch + 2):
            exact, kept = agreed_seq(copy_epoch, full), agreed_seq(copy_epoch, dict(capped))
            assert (exact is None) == (kept is None)
            if exact is not None:
                assert kept <= exact
        # the newest promotions are kept exactly
        assert capped[-1] == max(full.items())


@pytest.mark.parametrize(
    ("told_epoch", "map_epoch", "told_at", "now", "primaries", "allowed"),
    [
        (None, 3, 0.0, 0.0, ("n1", "n1"), True),  # never asked for its position: re-copy as before
        (5, 5, 100.0, 100.1, ("n1", "n1"), False),  # asked at the current epoch: the promotion may be on its way
        (5, 4, 100.0, 100.1, ("n1", "n1"), False),  # an older map still: keep waiting
        (5, 6, 100.0, 100.1, ("n1", "n2"), True),  # the map after the failover came, naming another primary: still a replica, so re-copy
        # A newer map that names the same primary: another shard's failover (a paused node led
        # both; seen in CI, the copy re-copied, then promoted empty): keep waiting
        (5, 6, 100.0, 100.1, ("n1", "n1"), False),
        (5, 6, 100.0, 100.1, (None, "n1"), True),  # told by an older release (no primary recorded): any newer map
        (5, 5, 100.0, 100.0 + POSITION_HOLD_S, ("n1", "n1"), True),  # no outcome within the hold: the failover did not happen
        (5, 6, 100.0, 100.0 + POSITION_HOLD_S, ("n1", "n1"), True),
        (5, 5, 100.0, 100.0 + POSITION_HOLD_S - 0.01, ("n1", "n1"), False),
    ],
)
def test_a_copy_that_told_a_failover_its_position_keeps_itself_whole_until_a_map_names_the_outcome(told_epoch, map_epoch, told_at, now, primaries, allowed):
    told_primary, primary = primaries
    assert may_recopy(told_epoch, map_epoch, told_at, now, told_primary=told_primary, primary=primary) is allowed
