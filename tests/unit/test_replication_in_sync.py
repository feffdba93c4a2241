"""The in-sync set as a table: map entry, health, reports and failures in; the next in-sync list out."""

import pytest

from torua.replication.in_sync import ReplicaReport, in_sync_after

H = "healthy"
U = "unhealthy"
ALL = {"n1": H, "n2": H, "n3": H, "n4": H}


def rep(node: str, last_seq: int, acked_live: bool = True) -> ReplicaReport:
    return ReplicaReport(node, last_seq, acked_live)


# (id, primary, replicas, in_sync, health, primary_last_seq, reports, failed, max_lag, expected)
CASES = [
    ("nothing-changes", "n1", ["n2", "n3"], ["n1", "n2", "n3"], ALL, 100, {}, set(), 10, ["n1", "n2", "n3"]),
    ("order-kept-as-given", "n1", ["n2", "n3"], ["n1", "n3", "n2"], ALL, 100, {}, set(), 10, ["n1", "n3", "n2"]),
    ("primary-alone", "n1", [], ["n1"], ALL, 100, {}, set(), 10, ["n1"]),
    ("empty-in-sync-gets-primary", "n1", ["n2"], [], ALL, 100, {}, set(), 10, ["n1"]),
    ("primary-moved-to-front", "n2", ["n1", "n3"], ["n1", "n2", "n3"], ALL, 100, {}, set(), 10, ["n2", "n1", "n3"]),
    ("primary-kept-even-if-unhealthy", "n1", ["n2"], ["n1", "n2"], {"n1": U, "n2": H}, 100, {}, set(), 10, ["n1", "n2"]),
    ("primary-kept-even-if-failed", "n1", ["n2"], ["n1", "n2"], ALL, 100, {}, {"n1"}, 10, ["n1", "n2"]),
    ("duplicates-dropped", "n1", ["n2"], ["n1", "n2", "n1", "n2"], ALL, 100, {}, set(), 10, ["n1", "n2"]),
    # shrink
    ("unhealthy-dropped", "n1", ["n2", "n3"], ["n1", "n2", "n3"], {"n1": H, "n2": U, "n3": H}, 100, {}, set(), 10, ["n1", "n3"]),
    ("unknown-dropped", "n1", ["n2", "n3"], ["n1", "n2", "n3"], {"n1": H, "n2": "unknown", "n3": H}, 100, {}, set(), 10, ["n1", "n3"]),
    ("missing-from-health-dropped", "n1", ["n2", "n3"], ["n1", "n2", "n3"], {"n1": H, "n3": H}, 100, {}, set(), 10, ["n1", "n3"]),
    ("all-replicas-unhealthy", "n1", ["n2", "n3"], ["n1", "n2", "n3"], {"n1": H, "n2": U, "n3": U}, 100, {}, set(), 10, ["n1"]),
    ("failed-dropped", "n1", ["n2", "n3"], ["n1", "n2", "n3"], ALL, 100, {}, {"n3"}, 10, ["n1", "n2"]),
    ("failed-not-readded-same-round", "n1", ["n2"], ["n1", "n2"], ALL, 100, {"n2": rep("n2", 100)}, {"n2"}, 10, ["n1"]),
    ("no-longer-a-replica-dropped", "n1", ["n3"], ["n1", "n2", "n3"], ALL, 100, {}, set(), 10, ["n1", "n3"]),
    ("member-lagging-in-report-kept", "n1", ["n2"], ["n1", "n2"], ALL, 1000, {"n2": rep("n2", 10)}, set(), 10, ["n1", "n2"]),
    ("member-not-acked-live-kept", "n1", ["n2"], ["n1", "n2"], ALL, 100, {"n2": rep("n2", 100, False)}, set(), 10, ["n1", "n2"]),
    # grow
    ("caught-up-joins", "n1", ["n2"], ["n1"], ALL, 100, {"n2": rep("n2", 100)}, set(), 10, ["n1", "n2"]),
    ("lag-exactly-max-joins", "n1", ["n2"], ["n1"], ALL, 100, {"n2": rep("n2", 90)}, set(), 10, ["n1", "n2"]),
    ("lag-one-over-max-waits", "n1", ["n2"], ["n1"], ALL, 100, {"n2": rep("n2", 89)}, set(), 10, ["n1"]),
    ("zero-lag-allowed-only", "n1", ["n2", "n3"], ["n1"], ALL, 100, {"n2": rep("n2", 99), "n3": rep("n3", 100)}, set(), 0, ["n1", "n3"]),
    ("report-ahead-of-primary-joins", "n1", ["n2"], ["n1"], ALL, 100, {"n2": rep("n2", 103)}, set(), 10, ["n1", "n2"]),
    ("not-acked-live-waits", "n1", ["n2"], ["n1"], ALL, 100, {"n2": rep("n2", 100, False)}, set(), 10, ["n1"]),
    ("no-report-waits", "n1", ["n2"], ["n1"], ALL, 100, {}, set(), 10, ["n1"]),
    ("unhealthy-does-not-join", "n1", ["n2"], ["n1"], {"n1": H, "n2": U}, 100, {"n2": rep("n2", 100)}, set(), 10, ["n1"]),
    ("unknown-does-not-join", "n1", ["n2"], ["n1"], {"n1": H, "n2": "unknown"}, 100, {"n2": rep("n2", 100)}, set(), 10, ["n1"]),
    ("non-replica-report-ignored", "n1", ["n2"], ["n1"], ALL, 100, {"n4": rep("n4", 100)}, set(), 10, ["n1"]),
    ("newcomers-in-id-order-after-members", "n1", ["n4", "n3", "n2"], ["n1", "n3"], ALL, 100,
     {"n4": rep("n4", 100), "n2": rep("n2", 100)}, set(), 10, ["n1", "n3", "n2", "n4"]),
    ("shrink-and-grow-at-once", "n1", ["n2", "n3"], ["n1", "n2"], {"n1": H, "n2": U, "n3": H}, 100,
     {"n3": rep("n3", 95)}, set(), 10, ["n1", "n3"]),
    ("after-promotion", "n2", ["n1", "n3"], ["n1", "n2", "n3"], {"n1": U, "n2": H, "n3": H}, 100, {}, set(), 10, ["n2", "n3"]),
]


@pytest.mark.parametrize(
    "primary,replicas,in_sync,health,primary_last_seq,reports,failed,max_lag,expected",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_in_sync_after(primary, replicas, in_sync, health, primary_last_seq, reports, failed, max_lag, expected):
    result = in_sync_after(primary, replicas, in_sync, health, primary_last_seq, reports, failed, max_lag)
    assert result == expected
    assert result[0] == primary and len(result) == len(set(result))
    # applying it again with the same inputs changes nothing
    assert in_sync_after(primary, replicas, result, health, primary_last_seq, reports, failed, max_lag) == result
