"""Promotion as a table: primary, in-sync set, node health and last seqs in; the new primary (or None) out."""

import pytest

from torua.replication.promotion import choose_primary

H = "healthy"
U = "unhealthy"

# (id, primary, in_sync, health, last_seqs, expected)
CASES = [
    ("healthy-primary-stays", "n1", ["n1", "n2"], {"n1": H, "n2": H}, {"n1": 10, "n2": 50}, "n1"),
    ("healthy-primary-stays-even-if-in-sync-empty", "n1", [], {"n1": H}, {}, "n1"),
    ("healthy-primary-stays-even-if-not-listed", "n1", ["n2"], {"n1": H, "n2": H}, {"n2": 9}, "n1"),
    ("highest-last-seq-wins", "n1", ["n1", "n2", "n3"], {"n1": U, "n2": H, "n3": H}, {"n2": 40, "n3": 42}, "n3"),
    ("tie-lowest-id", "n1", ["n1", "n3", "n2"], {"n1": U, "n2": H, "n3": H}, {"n2": 42, "n3": 42}, "n2"),
    ("tie-ids-compared-as-strings", "n1", ["n1", "n10", "n9"], {"n1": U, "n9": H, "n10": H}, {"n9": 5, "n10": 5}, "n10"),
    ("higher-seq-on-unhealthy-ignored", "n1", ["n1", "n2", "n3"], {"n1": U, "n2": U, "n3": H}, {"n2": 99, "n3": 1}, "n3"),
    ("unknown-node-ignored", "n1", ["n1", "n2", "n3"], {"n1": U, "n2": "unknown", "n3": H}, {"n2": 99, "n3": 1}, "n3"),
    ("node-missing-from-health-ignored", "n1", ["n1", "n2", "n3"], {"n1": U, "n3": H}, {"n2": 99, "n3": 1}, "n3"),
    ("out-of-sync-replica-never-chosen", "n1", ["n1"], {"n1": U, "n2": H}, {"n2": 100}, None),
    ("out-of-sync-higher-seq-loses-to-in-sync", "n1", ["n1", "n3"], {"n1": U, "n2": H, "n3": H}, {"n2": 100, "n3": 1}, "n3"),
    ("empty-in-sync", "n1", [], {"n1": U, "n2": H}, {"n2": 5}, None),
    ("all-replicas-unhealthy", "n1", ["n1", "n2", "n3"], {"n1": U, "n2": U, "n3": "unknown"}, {"n2": 5, "n3": 6}, None),
    ("primary-unknown-after-restart", "n1", ["n1", "n2"], {"n1": "unknown", "n2": H}, {"n2": 5}, "n2"),
    ("no-primary-picks-from-in-sync", None, ["n2", "n3"], {"n2": H, "n3": H}, {"n2": 7, "n3": 3}, "n2"),
    ("no-primary-nothing-healthy", None, ["n2"], {"n2": U}, {"n2": 7}, None),
    ("nothing-at-all", None, [], {}, {}, None),
    ("missing-last-seq-ranks-below-reports", "n1", ["n1", "n2", "n3"], {"n1": U, "n2": H, "n3": H}, {"n3": 0}, "n3"),
    ("missing-last-seq-still-eligible", "n1", ["n1", "n2"], {"n1": U, "n2": H}, {}, "n2"),
    ("primary-listed-first-or-not", "n1", ["n2", "n1"], {"n1": U, "n2": H}, {"n1": 100, "n2": 1}, "n2"),
]


@pytest.mark.parametrize("primary,in_sync,health,last_seqs,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_choose_primary(primary, in_sync, health, last_seqs, expected):
    chosen = choose_primary(primary, in_sync, health, last_seqs)
    assert chosen == expected
    if chosen is not None and chosen != primary:
        assert chosen in in_sync and health[chosen] == H
