"""Cluster health from the shard map and the nodes: a pure function.

green: every shard has its primary on a healthy node and all its copies in sync;
yellow: every primary is fine but some replica copies are missing or behind;
red: some shard has no primary, or its primary's node is not healthy.
"""

from __future__ import annotations

from torua.protocol.messages import NodeStatus, ShardMap


def cluster_health(shard_map: ShardMap | None, nodes: list[NodeStatus]) -> dict:
    healthy = {n.id for n in nodes if n.status == "healthy"}
    report = {
        "status": "red",
        "epoch": shard_map.epoch if shard_map else 0,
        "shards_total": shard_map.num_shards if shard_map else 0,
        "shards_active": 0,
        "shards_moving": 0,
        "shards_unassigned": shard_map.num_shards if shard_map else 0,
        "shards_unavailable": 0,
        "shards_under_replicated": 0,
        "nodes_total": len(nodes),
        "nodes_healthy": len(healthy),
    }
    if shard_map is None:
        return report
    report["shards_unassigned"] = 0
    red = yellow = False
    for entry in shard_map.shards:
        if entry.primary is None:
            report["shards_unassigned"] += 1
            red = True
            continue
        if entry.primary not in healthy:
            report["shards_unavailable"] += 1
            red = True
            continue
        report["shards_moving" if entry.target else "shards_active"] += 1
        wanted = shard_map.replication_factor
        in_sync = [n for n in entry.in_sync if n in healthy] if entry.in_sync else [entry.primary]
        if len(entry.copies) < wanted or len(in_sync) < min(wanted, len(entry.copies)):
            report["shards_under_replicated"] += 1
            yellow = True
    report["status"] = "red" if red else "yellow" if yellow else "green"
    return report
