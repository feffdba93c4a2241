"""May this node answer a request for a shard copy, or accept a replicated op?

The answer is ``ok``, ``moved`` (this copy is not the one to ask: the router
refreshes its map) or ``stale_epoch`` (someone's view is behind, or the primary's
lease has run out: refresh and retry). Both refusals are retryable.

For KV requests (`may_serve`):

- no copy, ``copying`` or ``retired``: moved.
- ``replica``: writes moved; reads moved too, unless the caller asked for
  eventually consistent reads (`allow_replica_reads`), which a replica answers
  when its shard epoch is at least the request's (else stale_epoch).
- ``frozen`` (a move is switching the shard away): writes moved, reads as a primary.
- ``primary`` / ``frozen``: stale_epoch if the request names a newer shard epoch
  than the copy's (this node has not heard of the change yet) or if the lease is
  not valid at `now` (at the expiry it is already gone). A request with an *older*
  shard epoch is served: it was routed by an older map that still named this node,
  and the valid lease proves this node is still the only primary.

Role refusals (moved) come before epoch and lease checks: they do not depend on time.

>>> may_serve(CopyState("primary", shard_epoch=7, lease_until=105.0), "put", 7, now=104.0)
'ok'
>>> may_serve(CopyState("primary", shard_epoch=7, lease_until=105.0), "put", 7, now=105.0)
'stale_epoch'
"""

from __future__ import annotations

from dataclasses import dataclass

from torua.replication.lease import holds
from torua.protocol.vocabulary import CopyRole, KvOp

ROLES = frozenset(set(CopyRole) - {CopyRole.ABSENT})
READS = frozenset({KvOp.GET, KvOp.LIST})
WRITES = frozenset({KvOp.PUT, KvOp.DELETE})


@dataclass(frozen=True)
class CopyState:
    """What a node knows about its copy of one shard."""

    role: str  # primary | replica | frozen | copying | retired
    shard_epoch: int
    # on this node's monotonic clock; None: no lease (replicas, or never granted)
    lease_until: float | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown copy role {self.role!r}")


def may_serve(state: CopyState | None, op: str, request_shard_epoch: int, now: float, allow_replica_reads: bool = False) -> str:
    """ok | moved | stale_epoch for a KV `op` (get | put | delete | list) on this copy."""
    if op not in READS and op not in WRITES:
        raise ValueError(f"unknown op {op!r}")
    if state is None or state.role in (CopyRole.COPYING, CopyRole.RETIRED):
        return "moved"
    if state.role == CopyRole.REPLICA:
        if op in WRITES or not allow_replica_reads:
            return "moved"
        return "ok" if state.shard_epoch >= request_shard_epoch else "stale_epoch"
    if state.role == CopyRole.FROZEN and op in WRITES:
        return "moved"
    if request_shard_epoch > state.shard_epoch or not holds(state.lease_until, now):
        return "stale_epoch"
    return "ok"
