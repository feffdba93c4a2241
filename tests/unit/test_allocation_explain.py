"""Tables for `explain_shard`: why a shard's copies are where they are."""

from __future__ import annotations

import pytest

from torua.coordinator.explain import explain_shard
from torua.coordinator.placement import NodeView
from torua.protocol.messages import MoveStatus, ShardEntry, ShardMap

H = "healthy"


def one_shard(entry: ShardEntry, rf: int = 1) -> ShardMap:
    return ShardMap(epoch=7, num_shards=1, replication_factor=rf, shards=[entry])


def nodes(*specs: tuple[str, str] | tuple[str, str, dict]) -> list[NodeView]:
    return [NodeView(s[0], s[1], **(s[2] if len(s) > 2 else {})) for s in specs]


THREE = nodes(("n1", H), ("n2", H), ("n3", H))

# (id, map, nodes, move, status, summary (a part of it), {node: decision}, {node: (stays, reason part)})
CASES = [
    (
        "assigned-rf1",
        one_shard(ShardEntry(0, "n1", [], ["n1"], "active", created=True)),
        THREE, None,
        "assigned", "all 1 copy assigned and in sync; primary on n1",
        {"n1": "holds_copy", "n2": "could_take", "n3": "could_take"},
        {"n1": (True, "primary: takes the writes")},
    ),
    (
        "only-copy-on-unhealthy-node",
        one_shard(ShardEntry(0, "n2", [], ["n2"], "unavailable", created=True)),
        nodes(("n1", H), ("n2", "unhealthy")), None,
        "unavailable", "its only copy is on n2, which is unhealthy: it waits for n2 rather than open an empty copy",
        {"n1": "could_take", "n2": "holds_copy"},
        {"n2": (True, "stays: n2 is unhealthy and data cannot be copied off a down node")},
    ),
    (
        "primary-down-in-sync-replica-takes-over",
        one_shard(ShardEntry(0, "n1", ["n2"], ["n1", "n2"], "unavailable", created=True), rf=2),
        nodes(("n1", "unhealthy"), ("n2", H), ("n3", H)), None,
        "unavailable", "its primary n1 is unhealthy; failing over to in-sync replica n2",
        {"n3": "could_take"},
        {"n1": (True, "fails over to an in-sync replica"), "n2": (True, "in-sync replica")},
    ),
    (
        "primary-down-no-in-sync-replica",
        one_shard(ShardEntry(0, "n1", ["n2"], ["n1"], "unavailable", created=True), rf=2),
        nodes(("n1", "unhealthy"), ("n2", H)), None,
        "unavailable", "its primary n1 is unhealthy and no in-sync replica is on a healthy node: it waits for n1 rather than lose acknowledged writes",
        {}, {"n2": (True, "replica out of sync: it may miss acknowledged writes")},
    ),
    (
        "under-replicated-no-node-may-hold-it",
        one_shard(ShardEntry(0, "n1", [], ["n1"], "active", created=True), rf=2),
        nodes(("n1", H), ("n2", H, {"maintenance": True}), ("n3", H, {"disk": "above_low"}), ("n4", "unhealthy")), None,
        "under_replicated",
        "needs 2 copies but only 1 node may hold it: n2 is in maintenance; n3's disk is 91.5% used, above the low watermark (85%); n4 is unhealthy",
        {"n2": "cannot_take", "n3": "cannot_take", "n4": "cannot_take"}, {},
    ),
    (
        "under-replicated-plan-adds-a-copy",
        one_shard(ShardEntry(0, "n1", [], ["n1"], "active", created=True), rf=2),
        nodes(("n1", H), ("n2", H, {"max_shards": 0}), ("n3", H)), None,
        "under_replicated", "needs 2 copies, has 1: the plan adds n3",
        {"n2": "cannot_take", "n3": "will_take"}, {},
    ),
    (
        "replica-catching-up",
        one_shard(ShardEntry(0, "n1", ["n2"], ["n1"], "active", created=True), rf=2),
        THREE, None,
        "out_of_sync", "n2 is not in sync yet: catching up from n1",
        {"n3": "could_take"}, {"n2": (True, "replica catching up from the primary")},
    ),
    (
        "moving",
        one_shard(ShardEntry(0, "n1", [], ["n1"], "moving", target="n3", created=True)),
        THREE, MoveStatus(0, "n1", "n3", "catching_up", 100.0),
        "moving", "a copy is moving from n1 to n3 (phase catching_up)",
        {}, {},
    ),
    (
        "draining-copy-moves-off",
        one_shard(ShardEntry(0, "n1", [], ["n1"], "active", created=True)),
        nodes(("n1", H, {"draining": True}), ("n2", H, {"max_shards": 0}), ("n3", H)), None,
        "assigned", "the plan moves the copy on n1 to n3",
        {"n2": "cannot_take", "n3": "will_take"},
        {"n1": (False, "the plan moves this copy off: n1 is being drained or evacuated")},
    ),
    (
        "above-high-watermark-without-room-stays",
        one_shard(ShardEntry(0, "n1", [], ["n1"], "active", created=True)),
        nodes(("n1", H, {"disk": "above_high"}), ("n2", H, {"disk": "above_high"})), None,
        "assigned", "all 1 copy assigned",
        {"n2": "cannot_take"},
        {"n1": (True, "stays although n1 should be emptied: no other node may take it")},
    ),
    (
        "replica-on-down-node-stays",
        one_shard(ShardEntry(0, "n1", ["n2"], ["n1"], "active", created=True), rf=2),
        nodes(("n1", H), ("n2", "unhealthy")), None,
        "out_of_sync", "n2 is not in sync yet",
        {}, {"n2": (True, "stays: n2 is unhealthy")},
    ),
    (
        "unassigned-nowhere-to-go",
        one_shard(ShardEntry(0)),
        nodes(("n1", H, {"maintenance": True}), ("n2", "unhealthy", {"gone": True})), None,
        "unassigned", "no node may hold a copy: n1 is in maintenance; n2 has been unhealthy longer than node_left_delay",
        {"n1": "cannot_take", "n2": "cannot_take"}, {},
    ),
    (
        "unassigned-with-a-plan",
        one_shard(ShardEntry(0)),
        nodes(("n1", H)), None,
        "unassigned", "not placed yet: the plan puts it on n1",
        {"n1": "will_take"}, {},
    ),
]


@pytest.mark.parametrize("shard_map, views, move, status, summary, decisions, copies", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_explain_shard(shard_map, views, move, status, summary, decisions, copies) -> None:
    e = explain_shard(shard_map, 0, views, move, disk_percent={"n3": 91.5}, watermarks=(85.0, 90.0))
    assert e.status == status, e.summary
    assert summary in e.summary, e.summary
    assert e.primary == shard_map.shards[0].primary and e.replication_factor == shard_map.replication_factor
    by_node = {d.node: d for d in e.nodes}
    assert sorted(by_node) == sorted(v.id for v in views)
    for node, decision in decisions.items():
        assert by_node[node].decision == decision, by_node[node]
    for copy in e.copies:
        assert by_node[copy.node].decision == "holds_copy"
    for node, (stays, reason) in copies.items():
        copy = next(c for c in e.copies if c.node == node)
        assert copy.stays is stays and reason in copy.reason, copy
    assert e.move == move


def test_cannot_take_lists_every_reason_with_codes() -> None:
    m = ShardMap(1, 2, 1, [ShardEntry(0, "n1", created=True, state="active"), ShardEntry(1, "n2", created=True, state="active")])
    views = nodes(("n1", H), ("n2", H, {"max_shards": 1, "maintenance": True, "disk": "above_high"}))
    e = explain_shard(m, 0, views, disk_percent={"n2": 97.0}, watermarks=(85.0, 90.0))
    n2 = next(d for d in e.nodes if d.node == "n2")
    assert n2.decision == "cannot_take"
    assert n2.codes == ["maintenance", "disk_high_watermark", "max_shards"]
    assert "n2's disk is 97% used, above the high watermark (90%)" in n2.reason
    assert "n2 holds 1 copy, its max_shards is 1" in n2.reason


def test_replicas_and_primary_are_named_in_a_healthy_replicated_shard() -> None:
    m = one_shard(ShardEntry(0, "n2", ["n1", "n3"], ["n2", "n1", "n3"], "active", created=True), rf=3)
    e = explain_shard(m, 0, THREE)
    assert [(c.node, c.role, c.in_sync, c.stays) for c in e.copies] == [
        ("n2", "primary", True, True), ("n1", "replica", True, True), ("n3", "replica", True, True)
    ]
    assert e.status == "assigned" and e.planned[0] == "n2"
    assert e.summary == "all 3 copies assigned and in sync; primary on n2"


@pytest.mark.parametrize("shard_id", [-1, 1, 99])
def test_unknown_shard_is_refused(shard_id: int) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        explain_shard(one_shard(ShardEntry(0)), shard_id, THREE)


def test_a_node_that_could_hold_a_stranded_shard_says_why_it_does_not() -> None:
    m = one_shard(ShardEntry(0, "n2", [], ["n2"], "unavailable", created=True))
    e = explain_shard(m, 0, nodes(("n1", H), ("n2", "unhealthy")))
    n1 = next(d for d in e.nodes if d.node == "n1")
    assert n1.decision == "could_take" and "an empty copy would lose it" in n1.reason


def test_a_copy_its_node_says_it_lacks_is_not_in_sync() -> None:
    m = one_shard(ShardEntry(0, "n1", ["n2"], ["n1", "n2"], "active", created=True), rf=2)
    healthy = explain_shard(m, 0, THREE)
    assert healthy.status == "assigned" and all(c.in_sync for c in healthy.copies)
    lacking = explain_shard(m, 0, THREE, missing={"n2": {0}})
    assert lacking.status == "out_of_sync"
    copy = next(c for c in lacking.copies if c.node == "n2")
    assert not copy.in_sync and "does not have this copy whole" in copy.reason
    other_shard = explain_shard(m, 0, THREE, missing={"n2": {3}})
    assert other_shard.status == "assigned"


def test_a_primary_its_node_says_it_lacks_is_unavailable() -> None:
    m = one_shard(ShardEntry(0, "n1", ["n2"], ["n1", "n2"], "active", created=True), rf=2)
    handed = explain_shard(m, 0, THREE, missing={"n1": {0}})
    assert handed.status == "unavailable"
    assert "says it does not have shard 0" in handed.summary and "handing it to in-sync replica n2" in handed.summary
    alone = explain_shard(one_shard(ShardEntry(0, "n1", [], ["n1"], "active", created=True)), 0, THREE, missing={"n1": {0}})
    assert alone.status == "unavailable" and "rather than open an empty copy" in alone.summary
