"""Which copies the map counts on that their nodes say they do not have.

Pure. The map says where a shard's primary and in-sync replicas are; each
heartbeat says what the node really serves (`ShardReport`: role, and for a
replica whether it is `complete`, i.e. not recreated empty and still filling).
Health, allocation explanations, failover and the in-sync set must follow the
reports, not the map alone: a copy whose data was deleted on disk, a replica
recreated empty, or a node that stopped serving after an assignment it could
not carry out is not in sync, whatever the map says.

A node's report lags the map after every change (it takes its assignment, then
beats), and a restarted node knows nothing until its assignment comes. So only a
heartbeat sent after the node took the map in force (its `epoch` at least the
map's) says anything, and one such report lacking a copy still proves nothing (it
may have been taken while the assignment was being carried out): a copy is
*missing* only after `MISSING_AFTER` such heartbeats in a row lacked it. A report
from an older epoch starts the count over.

>>> expected = {3: "primary", 5: "in_sync"}
>>> streaks = {}
>>> for _ in range(MISSING_AFTER):
...     streaks = missing_streaks(expected, {3: ("primary", True), 5: ("replica", False)}, streaks, current=True)
>>> sorted(confirmed(streaks))
[5]
"""

from __future__ import annotations

from collections.abc import Mapping

from torua.protocol.messages import ShardMap
from torua.protocol.vocabulary import CopyRole

# Consecutive heartbeats that must lack a copy before it counts as missing.
MISSING_AFTER = 3

SERVES_PRIMARY = (CopyRole.PRIMARY, CopyRole.FROZEN)


def expected_copies(shard_map: ShardMap, node_id: str) -> dict[int, str]:
    """shard -> "primary" | "in_sync": the copies of `node_id` the map counts on.
    Replicas not in sync and move targets are not counted on, so not checked."""
    out: dict[int, str] = {}
    for e in shard_map.shards:
        if e.primary == node_id:
            out[e.shard_id] = "primary"
        elif node_id in e.replicas and node_id in e.in_sync:
            out[e.shard_id] = "in_sync"
    return out


def has_copy(expected: str, reported: tuple[str, bool] | None) -> bool:
    """Does a report (role, complete) show the copy the map expects?"""
    if reported is None:
        return False
    role, complete = reported
    if expected == "primary":
        return role in SERVES_PRIMARY
    # an in-sync replica: a complete replica (or already the primary, mid hand-off)
    return role in SERVES_PRIMARY or (role == CopyRole.REPLICA and complete)


def missing_streaks(expected: Mapping[int, str], reported: Mapping[int, tuple[str, bool]], streaks: Mapping[int, int], current: bool) -> dict[int, int]:
    """After one more heartbeat: for each expected copy the report lacks, how many
    heartbeats in a row have lacked it. Copies no longer expected are forgotten;
    a report not `current` (the node has not taken the map in force) starts over."""
    if not current:
        return {}
    return {shard: streaks.get(shard, 0) + 1 for shard, role in expected.items() if not has_copy(role, reported.get(shard))}


def confirmed(streaks: Mapping[int, int], after: int = MISSING_AFTER) -> set[int]:
    """The shards whose copy counts as missing on this node."""
    return {shard for shard, n in streaks.items() if n >= after}
