"""Cluster health from the shard map and the nodes: a pure function.

- green: every shard has its primary on a healthy node and all its
  `replication_factor` copies, each on a healthy node and in sync;
- yellow: every primary is fine but some replica copies are missing or behind;
- red: there is no map yet, or some shard has no primary, or its primary's node is
  not healthy (or the map itself marks the shard unavailable).

What nodes report wins over the map: a copy whose node says it does not have it
(`NodeStatus.missing`: deleted on disk, recreated empty, not taken up) is not in
sync, and a primary whose node says so serves nothing.

>>> from torua.protocol.messages import NodeStatus, ShardEntry, ShardMap
>>> m = ShardMap(epoch=4, num_shards=1, shards=[ShardEntry(0, "n1", in_sync=["n1"])])
>>> cluster_health(m, [NodeStatus("n1", "healthy", False, None, [0], [0])])["status"]
'green'
"""

from __future__ import annotations

from typing import Any

from torua.protocol.messages import NodeStatus, ShardEntry, ShardMap
from torua.protocol.vocabulary import NodeHealth, ShardState


def cluster_health(shard_map: ShardMap | None, nodes: list[NodeStatus]) -> dict[str, Any]:
    healthy = {n.id for n in nodes if n.status == NodeHealth.HEALTHY}
    missing = {n.id: set(n.missing) for n in nodes}
    report: dict[str, Any] = {
        "status": "red",
        "epoch": shard_map.epoch if shard_map else 0,
        "shards_total": shard_map.num_shards if shard_map else 0,
        "shards_active": 0,
        "shards_moving": 0,
        "shards_unassigned": 0,
        "shards_unavailable": 0,
        "shards_under_replicated": 0,
        "nodes_total": len(nodes),
        "nodes_healthy": len(healthy),
    }
    if shard_map is None:
        return report
    red = yellow = False
    for entry in shard_map.shards:
        if entry.primary is None:
            report["shards_unassigned"] += 1
            red = True
        elif entry.primary not in healthy or entry.state == ShardState.UNAVAILABLE or entry.shard_id in missing.get(entry.primary, ()):
            # The map's own verdict counts too: routing refuses an unavailable shard
            # even if a heartbeat arrived since.
            report["shards_unavailable"] += 1
            red = True
        else:
            report["shards_moving" if entry.target or entry.state == ShardState.MOVING else "shards_active"] += 1
            if _good_replicas(entry, healthy, missing) < shard_map.replication_factor - 1:
                report["shards_under_replicated"] += 1
                yellow = True
    report["status"] = "red" if red else "yellow" if yellow else "green"
    return report


def _good_replicas(entry: ShardEntry, healthy: set[str], missing: dict[str, set[int]]) -> int:
    """Replica copies that could take over now: on a healthy node, in sync, and there."""
    return len({
        r for r in entry.replicas
        if r != entry.primary and r in healthy and r in entry.in_sync and entry.shard_id not in missing.get(r, ())
    })


def node_state(n: NodeStatus) -> str:
    """Health, or what the operator asked of a healthy node, as `/nodes` says it:
    evacuating / draining until it holds nothing, then evacuated / drained."""
    if n.status != NodeHealth.HEALTHY:
        return n.status
    if n.evacuating:
        return "evacuated" if not n.shards else "evacuating"
    if n.draining:
        return "drained" if not n.shards else "draining"
    return "maintenance" if n.maintenance else n.status
