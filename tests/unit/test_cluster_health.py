import pytest

from torua.cluster_health import cluster_health
from torua.protocol.messages import NodeStatus, ShardEntry, ShardMap


def node(node_id: str, status: str = "healthy") -> NodeStatus:
    return NodeStatus(node_id, status, False, 1.0, [], [])


def shard_map(*entries: ShardEntry, rf: int = 1) -> ShardMap:
    return ShardMap(epoch=3, num_shards=len(entries), replication_factor=rf, shards=list(entries))


@pytest.mark.parametrize(
    "m,nodes,status,counts",
    [
        (None, [node("n1")], "red", {"shards_total": 0}),
        (shard_map(ShardEntry(0, "n1", in_sync=["n1"]), ShardEntry(1, "n2", in_sync=["n2"])), [node("n1"), node("n2")], "green", {"shards_active": 2}),
        (shard_map(ShardEntry(0, "n1"), ShardEntry(1)), [node("n1")], "red", {"shards_unassigned": 1}),
        (shard_map(ShardEntry(0, "n1"), ShardEntry(1, "n2")), [node("n1"), node("n2", "unhealthy")], "red", {"shards_unavailable": 1}),
        (shard_map(ShardEntry(0, "n1"), ShardEntry(1, "n2")), [node("n1"), node("n2", "unknown")], "red", {"shards_unavailable": 1}),
        (shard_map(ShardEntry(0, "n1", target="n2")), [node("n1"), node("n2")], "green", {"shards_moving": 1}),
        (shard_map(ShardEntry(0, "n1", ["n2"], ["n1", "n2"]), rf=2), [node("n1"), node("n2")], "green", {"shards_under_replicated": 0}),
        (shard_map(ShardEntry(0, "n1", [], ["n1"]), rf=2), [node("n1"), node("n2")], "yellow", {"shards_under_replicated": 1}),
        (shard_map(ShardEntry(0, "n1", ["n2"], ["n1"]), rf=2), [node("n1"), node("n2")], "yellow", {"shards_under_replicated": 1}),
    ],
)
def test_cluster_health(m, nodes, status, counts):
    report = cluster_health(m, nodes)
    assert report["status"] == status
    for name, value in counts.items():
        assert report[name] == value
    assert report["nodes_total"] == len(nodes)
