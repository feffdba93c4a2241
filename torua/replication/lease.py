"""How long a primary may serve after a heartbeat reply: the lease.

A node serves a shard as primary only until its lease runs out. Each heartbeat
reply (`LeaseGrant`) sets the lease of every granted shard whose shard epoch
matches the node's own to ``sent_at + lease_seconds`` on the node's monotonic
clock, where ``sent_at`` is when that heartbeat left the node. The coordinator
fails a node over only ``unhealthy_after`` intervals after the last heartbeat it
*received*, which is no earlier than it was sent, so a lease one interval shorter
has run out by at least one interval when failover happens.

The newest grant wins: a node takes the reply to a heartbeat only if it is newer
than the one whose reply it took last (`Heartbeat.seq`), and then a shorter
grant (the cluster's timing was shortened) shortens the lease. So what a node
holds is always what the coordinator granted last, which lets the coordinator
bound it (`torua.replication.lease_ledger`) instead of assuming the longest
grant of the past.

>>> s = LeaseSettings(heartbeat_interval=1.0, unhealthy_after=3)
>>> lease_time(s)
2.0
>>> renewed({0: 101.5}, sent_at=100.0, granted={0: 7, 1: 9}, own={0: 7, 1: 8}, seconds=lease_time(s))
{0: 102.0}
>>> renewed({0: 5000.0}, sent_at=100.0, granted={0: 7}, own={0: 7}, seconds=1.0)
{0: 101.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseSettings:
    heartbeat_interval: float
    unhealthy_after: int

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be > 0")
        # with 1 the lease would be 0 s long: no margin is left for delivery delay or clock rates
        if self.unhealthy_after < 2:
            raise ValueError("unhealthy_after must be >= 2 for a lease to be shorter than failover")


def lease_time(settings: LeaseSettings) -> float:
    """One interval shorter than the coordinator's failover delay; always > 0
    because `LeaseSettings` refuses ``unhealthy_after < 2`` (ValueError)."""
    return (settings.unhealthy_after - 1) * settings.heartbeat_interval


def holds(lease_until: float | None, now: float) -> bool:
    """A lease is valid strictly before its expiry; at the expiry it is gone."""
    return lease_until is not None and now < lease_until


def lease_until(sent_at: float, granted: Mapping[int, int], own: Mapping[int, int], seconds: float) -> dict[int, float]:
    """The expiry one grant gives, per shard: only shards granted at the shard epoch
    this node has. A grant at another epoch means the map changed and this node has
    not caught up (or the grant is older than its copy), so it renews nothing.
    `seconds` is the grant's length, `lease_time(settings)` on the coordinator."""
    until = sent_at + seconds
    return {shard: until for shard, epoch in granted.items() if own.get(shard) == epoch}


def renewed(current: Mapping[int, float], sent_at: float, granted: Mapping[int, int], own: Mapping[int, int], seconds: float) -> dict[int, float]:
    """Every lease after taking one heartbeat reply, the newest the node has taken
    (the caller drops replies to older heartbeats): each shard it grants at the
    node's own shard epoch gets this grant's expiry, longer or shorter than before.
    Shards the grant leaves out keep their expiry and simply run out; taking a copy
    away is an assignment's job, not the lease's."""
    result = dict(current)
    result.update(lease_until(sent_at, granted, own, seconds))
    return result
