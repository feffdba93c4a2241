"""Leases as tables, and the safety property: a lease always ends before the coordinator fails the node over."""

import pytest

from torua.coordinator.health import node_health
from torua.replication.lease import LeaseSettings, holds, lease_time, lease_until, renewed

S = LeaseSettings(heartbeat_interval=1.0, unhealthy_after=3)


@pytest.mark.parametrize(
    "interval,threshold,expected",
    [(1.0, 3, 2.0), (1.0, 2, 1.0), (0.5, 4, 1.5), (0.2, 10, 1.8), (5.0, 3, 10.0)],
    ids=["1s-x3", "1s-x2-shortest", "0.5s-x4", "0.2s-x10", "5s-x3"],
)
def test_lease_time(interval, threshold, expected):
    assert lease_time(LeaseSettings(interval, threshold)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "interval,threshold",
    [(1.0, 1), (1.0, 0), (1.0, -3), (0.0, 3), (-1.0, 3)],
    ids=["threshold-1-no-lease", "threshold-0", "threshold-negative", "interval-0", "interval-negative"],
)
def test_settings_without_a_positive_lease_are_refused(interval, threshold):
    with pytest.raises(ValueError):
        lease_time(LeaseSettings(interval, threshold))


@pytest.mark.parametrize(
    "until,now,ok",
    [(105.0, 104.0, True), (105.0, 104.999, True), (105.0, 105.0, False), (105.0, 106.0, False), (None, 0.0, False)],
    ids=["before", "just-before", "exactly-at-expiry", "after", "never-granted"],
)
def test_holds(until, now, ok):
    assert holds(until, now) is ok


# (id, sent_at, granted, own, expected)
GRANTS = [
    ("matching-epochs", 100.0, {0: 7, 1: 9}, {0: 7, 1: 9}, {0: 102.0, 1: 102.0}),
    ("coordinator-ahead-not-renewed", 100.0, {0: 8}, {0: 7}, {}),
    ("node-ahead-old-grant-not-renewed", 100.0, {0: 6}, {0: 7}, {}),
    ("granted-shard-not-held", 100.0, {3: 1}, {0: 7}, {}),
    ("held-shard-not-granted", 100.0, {}, {0: 7}, {}),
    ("mixed", 100.0, {0: 7, 1: 10, 2: 4}, {0: 7, 1: 9, 2: 4}, {0: 102.0, 2: 102.0}),
]


@pytest.mark.parametrize("sent_at,granted,own,expected", [c[1:] for c in GRANTS], ids=[c[0] for c in GRANTS])
def test_lease_until(sent_at, granted, own, expected):
    assert lease_until(sent_at, granted, own, lease_time(S)) == expected


# (id, current, sent_at, granted, own, expected)
RENEWALS = [
    ("first-grant", {}, 100.0, {0: 7}, {0: 7}, {0: 102.0}),
    ("extends", {0: 101.0}, 100.5, {0: 7}, {0: 7}, {0: 102.5}),
    ("shorter-grant-shortens", {0: 5000.0}, 100.0, {0: 7}, {0: 7}, {0: 102.0}),
    ("same-heartbeat-twice", {0: 102.0}, 100.0, {0: 7}, {0: 7}, {0: 102.0}),
    ("epoch-mismatch-keeps-old-expiry", {0: 101.0}, 100.5, {0: 8}, {0: 7}, {0: 101.0}),
    ("left-out-of-grant-keeps-old-expiry", {0: 101.0, 1: 101.0}, 100.5, {1: 3}, {0: 7, 1: 3}, {0: 101.0, 1: 102.5}),
    ("expired-lease-revived-by-fresh-grant", {0: 90.0}, 100.0, {0: 7}, {0: 7}, {0: 102.0}),
    ("nothing-granted", {0: 101.0}, 100.5, {}, {0: 7}, {0: 101.0}),
]


@pytest.mark.parametrize("current,sent_at,granted,own,expected", [c[1:] for c in RENEWALS], ids=[c[0] for c in RENEWALS])
def test_renewed(current, sent_at, granted, own, expected):
    before = dict(current)
    after = renewed(current, sent_at, granted, own, lease_time(S))
    assert after == pytest.approx(expected)
    assert current == before  # the input is not changed
    assert set(after) >= set(current)  # shards the grant leaves out keep their lease
    granted_here = {s for s, e in granted.items() if own.get(s) == e}
    assert all(after[s] == sent_at + lease_time(S) for s in granted_here)  # exactly this grant
    assert all(after[s] == current[s] for s in after if s not in granted_here)  # the rest untouched


def test_newest_grant_wins_whatever_the_order_replies_arrive_in():
    """The node takes a reply only if its heartbeat is newer than the last one taken
    (as Node._beat does with Heartbeat.seq): late replies change nothing."""
    heartbeats = [100.0, 101.0, 102.0, 103.0]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        leases: dict[int, float] = {}
        taken = -1
        for i in order:
            if i > taken:
                leases, taken = renewed(leases, heartbeats[i], {0: 7}, {0: 7}, lease_time(S)), i
        assert leases == {0: 105.0}, order


# ------------------------------------------------------------------ safety
#
# A heartbeat leaves the node at t_s and reaches the coordinator at t_r >= t_s.
# The node's lease from its reply ends at t_s + lease_time. The coordinator fails
# the node over once `node_health` says unhealthy, at t_r + unhealthy_after * interval
# at the earliest (later heartbeats only move that further out). The lease must end
# strictly before then, and the coordinator must still call the node healthy at the
# last instant the lease is valid.

INTERVALS = [0.05, 0.2, 1.0, 2.5]
THRESHOLDS = [2, 3, 5, 10]
DELAYS = [0.0, 0.001, 0.5, 1.0, 7.3]  # seconds from t_s to t_r
SENT = [0.0, 1234.567]


@pytest.mark.parametrize("sent_at", SENT, ids=lambda t: f"sent{t}")
@pytest.mark.parametrize("delay", DELAYS, ids=lambda d: f"delay{d}")
@pytest.mark.parametrize("threshold", THRESHOLDS, ids=lambda n: f"x{n}")
@pytest.mark.parametrize("interval", INTERVALS, ids=lambda i: f"every{i}s")
def test_lease_ends_before_failover(interval, threshold, delay, sent_at):
    settings = LeaseSettings(interval, threshold)
    received_at = sent_at + delay
    until = renewed({}, sent_at, {0: 1}, {0: 1}, lease_time(settings))[0]
    failover_at = received_at + threshold * interval
    assert until < failover_at
    assert failover_at - until >= interval - 1e-9  # at least one interval of margin
    assert node_health(received_at, until, interval, threshold) == "healthy"
    assert node_health(received_at, failover_at + 1e-9, interval, threshold) == "unhealthy"


# Clocks run at different rates: the node measures its lease on its own monotonic
# clock (real seconds * node_rate), the coordinator its failover delay on its own
# (real seconds * coordinator_rate). One interval of margin covers a rate ratio
# node_rate / coordinator_rate above (unhealthy_after - 1) / unhealthy_after: the
# larger the threshold, the smaller the share of the delay that margin is.


def lease_outlives_failover(interval, threshold, delay, node_rate, coordinator_rate) -> bool:
    settings = LeaseSettings(interval, threshold)
    real_sent = 50.0
    real_lease_end = real_sent + lease_time(settings) / node_rate
    real_failover = real_sent + delay + threshold * interval / coordinator_rate
    return real_lease_end >= real_failover


RATES = [(1.0, 1.0), (0.98, 1.02), (1.02, 0.98), (0.99, 1.0), (1.0, 1.01)]


@pytest.mark.parametrize("node_rate,coordinator_rate", RATES, ids=[f"node{n}-coord{c}" for n, c in RATES])
@pytest.mark.parametrize("delay", [0.0, 0.5, 3.0], ids=lambda d: f"delay{d}")
@pytest.mark.parametrize("threshold", THRESHOLDS, ids=lambda n: f"x{n}")
@pytest.mark.parametrize("interval", [0.2, 1.0], ids=lambda i: f"every{i}s")
def test_rates_within_2_percent_are_safe_up_to_10_intervals(interval, threshold, delay, node_rate, coordinator_rate):
    assert not lease_outlives_failover(interval, threshold, delay, node_rate, coordinator_rate)


# (id, threshold, node_rate, coordinator_rate, outlives): where the margin stops covering the rates
LIMITS = [
    ("x3-10pct-apart-safe", 3, 0.9, 1.1, False),
    ("x5-10pct-apart-safe", 5, 0.9, 1.1, False),
    ("x10-10pct-apart-unsafe", 10, 0.9, 1.1, True),
    ("x10-fast-node-clock-safe", 10, 1.1, 0.9, False),
    ("x2-node-clock-at-half-rate-unsafe", 2, 0.5, 1.0, True),
]


@pytest.mark.parametrize("threshold,node_rate,coordinator_rate,outlives", [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_where_the_margin_ends(threshold, node_rate, coordinator_rate, outlives):
    assert lease_outlives_failover(1.0, threshold, 0.0, node_rate, coordinator_rate) is outlives
    assert outlives is (node_rate / coordinator_rate <= (threshold - 1) / threshold)
