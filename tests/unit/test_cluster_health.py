"""Cluster health as a table: map and nodes in, green / yellow / red and counts out."""

import pytest

from torua.cluster_health import cluster_health
from torua.protocol.messages import NodeStatus, ShardEntry, ShardMap


def node(node_id: str, status: str = "healthy", missing: list[int] | None = None) -> NodeStatus:
    return NodeStatus(node_id, status, False, 1.0, [], [], missing=missing or [])


def shard_map(*entries: ShardEntry, rf: int = 1) -> ShardMap:
    return ShardMap(epoch=3, num_shards=len(entries), replication_factor=rf, shards=list(entries))


UP = [node("n1"), node("n2"), node("n3")]


@pytest.mark.parametrize(
    "m,nodes,status,counts",
    [
        # no map yet: nothing is served
        (None, [node("n1")], "red", {"shards_total": 0, "epoch": 0, "nodes_healthy": 1}),
        (None, [], "red", {"nodes_total": 0}),
        # rf=1, every primary on a healthy node
        (shard_map(ShardEntry(0, "n1", in_sync=["n1"], state="active"), ShardEntry(1, "n2", in_sync=["n2"], state="active")), UP, "green", {"shards_active": 2, "epoch": 3}),
        # rf=1 maps may leave in_sync empty: the primary alone is enough
        (shard_map(ShardEntry(0, "n1", state="active")), UP, "green", {"shards_active": 1, "shards_under_replicated": 0}),
        # a shard nobody holds
        (shard_map(ShardEntry(0, "n1"), ShardEntry(1)), [node("n1")], "red", {"shards_unassigned": 1, "shards_active": 1}),
        # primary on an unhealthy or never-seen node
        (shard_map(ShardEntry(0, "n1"), ShardEntry(1, "n2")), [node("n1"), node("n2", "unhealthy")], "red", {"shards_unavailable": 1}),
        (shard_map(ShardEntry(0, "n1"), ShardEntry(1, "n2")), [node("n1"), node("n2", "unknown")], "red", {"shards_unavailable": 1}),
        (shard_map(ShardEntry(0, "n1"), ShardEntry(1, "ghost")), [node("n1")], "red", {"shards_unavailable": 1}),
        # the map says unavailable even though the node looks healthy now
        (shard_map(ShardEntry(0, "n1", state="unavailable")), UP, "red", {"shards_unavailable": 1, "shards_active": 0}),
        # a move in flight is still served: green
        (shard_map(ShardEntry(0, "n1", target="n2", state="moving")), UP, "green", {"shards_moving": 1, "shards_active": 0}),
        # rf=2: all copies in sync on healthy nodes
        (shard_map(ShardEntry(0, "n1", ["n2"], ["n1", "n2"]), rf=2), UP, "green", {"shards_under_replicated": 0}),
        # rf=2: replica missing, behind, or on an unhealthy node -> yellow
        (shard_map(ShardEntry(0, "n1", [], ["n1"]), rf=2), UP, "yellow", {"shards_under_replicated": 1}),
        (shard_map(ShardEntry(0, "n1", ["n2"], ["n1"]), rf=2), UP, "yellow", {"shards_under_replicated": 1}),
        (shard_map(ShardEntry(0, "n1", ["n2"], ["n1", "n2"]), rf=2), [node("n1"), node("n2", "unhealthy")], "yellow", {"shards_under_replicated": 1}),
        # rf=3 with one good replica of two
        (shard_map(ShardEntry(0, "n1", ["n2", "n3"], ["n1", "n2"]), rf=3), UP, "yellow", {"shards_under_replicated": 1}),
        # what nodes report wins over the map: a primary whose node lacks the shard serves nothing
        (shard_map(ShardEntry(0, "n1", state="active"), ShardEntry(1, "n2", state="active")), [node("n1", missing=[0]), node("n2")], "red", {"shards_unavailable": 1, "shards_active": 1}),
        # ... and an in-sync replica whose node lacks it (deleted, recreated empty) is not in sync
        (shard_map(ShardEntry(0, "n1", ["n2"], ["n1", "n2"]), rf=2), [node("n1"), node("n2", missing=[0]), node("n3")], "yellow", {"shards_under_replicated": 1}),
        # a node lacking another shard says nothing about this one
        (shard_map(ShardEntry(0, "n1", ["n2"], ["n1", "n2"]), rf=2), [node("n1", missing=[5]), node("n2", missing=[7]), node("n3")], "green", {"shards_under_replicated": 0}),
        # red wins over yellow
        (shard_map(ShardEntry(0, "n1", [], ["n1"]), ShardEntry(1), rf=2), UP, "red", {"shards_under_replicated": 1, "shards_unassigned": 1}),
    ],
)
def test_cluster_health(m, nodes, status, counts):
    report = cluster_health(m, nodes)
    assert report["status"] == status
    for name, value in counts.items():
        assert report[name] == value, name
    assert report["nodes_total"] == len(nodes)
    if m is not None:
        parts = ("shards_active", "shards_moving", "shards_unassigned", "shards_unavailable")
        assert sum(report[p] for p in parts) == report["shards_total"]


def test_report_has_every_documented_field():
    report = cluster_health(None, [])
    assert set(report) >= {
        "status", "shards_total", "shards_active", "shards_unassigned", "shards_unavailable",
        "shards_moving", "nodes_total", "nodes_healthy", "epoch",
    }
