"""The in-sync set of a shard after the latest reports and replication failures.

The primary waits for every in-sync replica before acknowledging a write, so a
replica joins only once it can keep up, and leaves as soon as it cannot:

- the primary is always a member, first.
- a member leaves when its node is not healthy, when the primary reported that
  replicating to it failed, or when it is no longer one of the shard's replicas.
- a replica joins when its node is healthy, it has acknowledged live ops from the
  primary and its reported last seq is within `max_lag_ops` of the primary's.

Lag alone never removes a member: heartbeat reports are snapshots taken at
different times, and a member that acks every write is in sync by definition; a
slow one is removed through `failed` instead. Members keep their order and newcomers
follow in node id order, so nothing changing returns the same list.

>>> in_sync_after("n1", ["n2", "n3"], ["n1", "n2"], {"n1": "healthy", "n2": "healthy", "n3": "healthy"},
...               100, {"n3": ReplicaReport("n3", 95, True)}, set(), max_lag_ops=10)
['n1', 'n2', 'n3']
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaReport:
    """What the coordinator knows of one replica copy (from its heartbeat)."""

    node_id: str
    last_seq: int
    # has acknowledged live Replicate ops from the current primary
    acked_live: bool


def in_sync_after(
    primary: str,
    replicas: Sequence[str],
    in_sync: Sequence[str],
    health: Mapping[str, str],
    primary_last_seq: int,
    reports: Mapping[str, ReplicaReport],
    failed: Collection[str],
    max_lag_ops: int,
) -> list[str]:
    def usable(node: str) -> bool:
        return node in replicas and node != primary and health.get(node) == "healthy" and node not in failed

    result = [primary]
    for node in in_sync:
        if usable(node) and node not in result:
            result.append(node)
    for node in sorted(replicas):
        report = reports.get(node)
        if (
            node not in result
            and usable(node)
            and report is not None
            and report.acked_live
            and primary_last_seq - report.last_seq <= max_lag_ops
        ):
            result.append(node)
    return result
