"""A coordinator process's own Prometheus collector, from a read-only snapshot.

`CoordinatorProcess.snapshot()` says whether this coordinator leads, its term,
and, while it leads, the cluster as its brain sees it (`Coordinator.snapshot()`:
the map, each node's health, the moves running). `coordinator_families` turns
that into metric families when Prometheus scrapes. It lives with the process,
not the brain, so a standby answers too (leader 0) and only the leader reports
the cluster. The shared machinery (registry, server, `gauge`) is `torua.metrics`.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client.core import Metric

from torua.metrics import build_info, gauge
from torua.protocol.messages import ShardMap
from torua.protocol.vocabulary import MapRole, NodeHealth, ShardState

# Every value is shown, zeros included, so a series never vanishes when it drops to 0.
NODE_HEALTH = (NodeHealth.HEALTHY.value, NodeHealth.UNHEALTHY.value, NodeHealth.UNKNOWN.value)
SHARD_STATES = ShardState.values()


@dataclass(frozen=True)
class ClusterSnapshot:
    """The cluster as the leading coordinator sees it."""

    map: ShardMap | None  # None until the cluster has formed
    health: dict[str, str] = field(default_factory=dict)  # every known node -> its health
    moves_running: int = 0


@dataclass(frozen=True)
class CoordinatorSnapshot:
    coordinator_id: str
    leading: bool
    term: int  # of its lead; 0 while it stands by
    cluster: ClusterSnapshot | None = None  # only while it leads: a standby's view would be stale


def coordinator_families(snapshot: CoordinatorSnapshot) -> Iterable[Metric]:
    """Whether this coordinator leads, and, while it does, the cluster as its brain sees it."""
    me = {"coordinator": snapshot.coordinator_id}
    yield build_info("coordinator")
    yield gauge("torua_coordinator_leader", "1 while this coordinator leads, 0 while it stands by", me, [({}, 1 if snapshot.leading else 0)])
    yield gauge("torua_coordinator_term", "term of this coordinator's lead (0 while it stands by)", me, [({}, snapshot.term if snapshot.leading else 0)])
    cluster = snapshot.cluster
    if not snapshot.leading or cluster is None:
        return
    health = Tally(cluster.health.values())
    statuses = list(NODE_HEALTH) + sorted(set(health) - set(NODE_HEALTH))
    yield gauge("torua_coordinator_nodes", "nodes known, by health", me, [({"status": s}, health[s]) for s in statuses])
    yield gauge("torua_coordinator_moves_in_progress", "shard moves running now", me, [({}, cluster.moves_running)])
    shard_map = cluster.map
    if shard_map is None:
        return  # the cluster has not formed yet
    states = Tally(e.state for e in shard_map.shards)
    copies: Tally[tuple[str, str]] = Tally()
    out_of_sync = 0
    for e in shard_map.shards:
        if e.primary:
            copies[(e.primary, MapRole.PRIMARY)] += 1
        for replica in e.replicas:
            copies[(replica, MapRole.REPLICA)] += 1
            out_of_sync += replica not in e.in_sync
    yield gauge("torua_coordinator_map_epoch", "epoch of the current shard map", me, [({}, shard_map.epoch)])
    yield gauge("torua_coordinator_shards", "shards, by state", me, [({"state": s}, states[s]) for s in SHARD_STATES + tuple(sorted(set(states) - set(SHARD_STATES)))])
    yield gauge("torua_coordinator_replicas_out_of_sync", "replica copies the map does not count as in sync", me, [({}, out_of_sync)])
    nodes = sorted(set(cluster.health) | {n for n, _ in copies})
    yield gauge(
        "torua_coordinator_shard_copies", "shard copies the map gives each node, by role", me,
        [({"node": n, "role": role}, copies[(n, role)]) for n in nodes for role in MapRole.values()],
    )
