"""How a replicated shard gets from its current copies to the target placement,
one safe step at a time: a pure function over plain data.

With replicas, moving a copy needs no copy protocol of its own:

1. **add** the target node as a replica (not in sync): it creates an empty copy
   and its follower fills it from the primary (log, or snapshot when the log no
   longer reaches back), then the primary puts it in the in-sync set;
2. **remove** a copy the target does not want, but only once every copy the
   target wants is in sync on a healthy node, so the shard never has fewer good
   copies than before;
3. **hand off** the primary to the copy the target names as primary, once that
   copy is in sync on a healthy node: when the target does not keep the
   primary's node (draining, gone), or keeps it as a replica (the node stops,
   or primaries per node differ by more than 1). No data is copied: a planned
   hand-off is a role change, so a node that comes back after a failover gets
   its share of primaries again while its copies stay where they are.

The target comes from `target_for`: `plan_placement` told which copies are in
sync (only they may take a primary over) and how many hand-offs may run at once
(each pauses its shard's writes for about a lease).

>>> from torua.protocol.messages import ShardEntry, ShardMap
>>> m = ShardMap(3, 1, 2, [ShardEntry(0, "a", ["b"], ["a", "b"], "active")])
>>> plan_replica_changes(m, {0: ("a", "c")}, {"a": "healthy", "b": "healthy", "c": "healthy"}, 2).adds
{0: ['c']}
>>> plan_replica_changes(m, {0: ("b", "a")}, {"a": "healthy", "b": "healthy"}, 2).handoffs
{0: 'b'}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from torua.coordinator.placement import NodeView, Placement, plan_placement
from torua.protocol.messages import ShardMap
from torua.protocol.vocabulary import NodeHealth


@dataclass
class ReplicaChanges:
    adds: dict[int, list[str]] = field(default_factory=dict)
    removes: dict[int, list[str]] = field(default_factory=dict)
    handoffs: dict[int, str] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.adds or self.removes or self.handoffs)


def target_for(shard_map: ShardMap, nodes: Sequence[NodeView], max_handoffs: int | None = None) -> Placement:
    """The placement target of a map: its copies as they are, with which of them are in sync."""
    return plan_placement(
        {e.shard_id: e.copies for e in shard_map.shards},
        nodes,
        shard_map.num_shards,
        shard_map.replication_factor,
        in_sync={e.shard_id: e.in_sync for e in shard_map.shards},
        max_handoffs=max_handoffs,
    )


def catching_up(shard_map: ShardMap, health: dict[str, str]) -> int:
    """Copies being filled right now: replicas on healthy nodes not (yet) in the in-sync set.
    (A copy on a dead node is out of sync too, but nothing is filling it.)"""
    return sum(1 for e in shard_map.shards for r in e.replicas if r not in e.in_sync and health.get(r) == NodeHealth.HEALTHY)


def plan_replica_changes(shard_map: ShardMap, target: Placement, health: dict[str, str], max_in_flight: int) -> ReplicaChanges:
    """The next safe steps toward `target`; at most `max_in_flight` copies filling at once."""
    changes = ReplicaChanges()
    budget = max(0, max_in_flight - catching_up(shard_map, health))
    for e in shard_map.shards:
        if e.primary is None or e.target:
            continue  # no data to copy from, or a move runs (its target is not a replica)
        want = list(target.get(e.shard_id, ()))
        have = list(e.copies)
        new = [n for n in want if n not in have]
        extra = [n for n in have if n not in want]
        if new:
            if budget > 0:
                changes.adds[e.shard_id] = new[:budget]
                budget -= len(changes.adds[e.shard_id])
            continue
        good = [n for n in e.in_sync if n in want and health.get(n) == NodeHealth.HEALTHY]
        if extra:
            if len(good) < len(want):
                continue  # wait until every wanted copy is in sync
            if e.primary in extra:
                if good:
                    changes.handoffs[e.shard_id] = want[0] if want[0] in good else good[0]
            else:
                changes.removes[e.shard_id] = extra
        elif want and want[0] != e.primary and want[0] in good and health.get(e.primary) == NodeHealth.HEALTHY:
            # The same copies, another primary: a planned hand-off. An unhealthy
            # primary is failover's to replace (by position), not a hand-off's.
            changes.handoffs[e.shard_id] = want[0]
    return changes
