"""What the leading coordinator knows of the leases nodes may hold: the bound a
failover or a planned hand-off waits out.

Pure: times are the coordinator's monotonic clock, passed in. A primary may
serve a shard while its lease holds (`torua.replication.lease`), so a new
primary may be promoted only once the old one's lease has surely run out. The
ledger records every grant the coordinator sends (before sending it) and what
each heartbeat says the node holds, and answers the latest instant a node may
still hold a lease for a shard:

- a grant answering heartbeat `beat` lasts at most until the coordinator's
  clock when it answered plus its length (the node counts from when it *sent*
  the heartbeat, which is earlier);
- a heartbeat says which grant the node took last (`grant_beat`) and how long
  each of its leases had left when it was sent (`lease_left`). A node takes only
  grants newer than the last one it took, so every grant up to `grant_beat` is
  either in that report or will never be taken: it is forgotten. Grants for
  later heartbeats may still arrive at the node and are kept until they expire.

So the bound is what nodes actually hold, not the longest timing of the past: a
cluster switched from a 60 s to a 1 s heartbeat holds failovers back only until
each node has taken one short grant (a heartbeat or two), and a node paused
while it held a long lease holds its own shards back for exactly that lease.

A node that sends no `seq` (an older release, where leases never shorten) is
never pruned: each grant counts until it expires. A ledger started by a new
leader does not know its predecessor's grants: `floor` covers them.

>>> book = LeaseLedger()
>>> book.granted("n1", incarnation=1.0, beat=5, shards=[0, 1], until=110.0)
>>> book.held_until("n1", 0)
110.0
>>> book.reported("n1", incarnation=1.0, beat=6, grant_beat=5, lease_left={0: 1.5}, now=103.0)
>>> book.held_until("n1", 0), book.held_until("n1", 1)
(104.5, -inf)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Grant:
    incarnation: float  # the node process's started_at: a restarted node starts its beats over
    beat: int  # the heartbeat it answers; 0 = the node sends no seq (older release)
    shards: frozenset[int]
    until: float


@dataclass
class NodeLeases:
    grants: list[Grant] = field(default_factory=list)
    # incarnation -> shard -> until, from that incarnation's newest report
    reported: dict[float, dict[int, float]] = field(default_factory=dict)
    newest_report: dict[float, int] = field(default_factory=dict)  # incarnation -> beat of it


class LeaseLedger:
    def __init__(self, floor: float = -math.inf) -> None:
        # Until then any node may hold a lease granted before this ledger existed
        # (by an earlier leader), for any shard.
        self.floor = floor
        self.nodes: dict[str, NodeLeases] = {}

    def granted(self, node: str, incarnation: float, beat: int, shards: Iterable[int], until: float) -> None:
        """Record a grant before it is sent."""
        shards = frozenset(shards)
        if shards:
            self.nodes.setdefault(node, NodeLeases()).grants.append(Grant(incarnation, beat, shards, until))

    def reported(self, node: str, incarnation: float, beat: int, grant_beat: int, lease_left: Mapping[int, float], now: float) -> None:
        """A heartbeat sent as beat `beat` said the node had taken the grant of beat
        `grant_beat` last, and had `lease_left` seconds of lease per shard."""
        book = self.nodes.setdefault(node, NodeLeases())
        if beat and beat <= book.newest_report.get(incarnation, 0):
            return  # an older heartbeat overtaken by a newer one says less
        if beat:
            book.newest_report[incarnation] = beat
        book.reported[incarnation] = {shard: now + left for shard, left in lease_left.items() if left > 0}
        if grant_beat > 0:
            book.grants = [g for g in book.grants if g.incarnation != incarnation or g.beat > grant_beat]

    def held_until(self, node: str, shard: int | None = None) -> float:
        """The latest instant `node` may hold a lease for `shard` (any shard if None); -inf if none."""
        book = self.nodes.get(node)
        bound = self.floor
        if book is None:
            return bound
        for g in book.grants:
            if shard is None or shard in g.shards:
                bound = max(bound, g.until)
        for leases in book.reported.values():
            for s, until in leases.items():
                if shard is None or s == shard:
                    bound = max(bound, until)
        return bound

    def left(self, now: float) -> dict[str, float]:
        """Seconds each node may still hold some lease (nodes with none left out)."""
        out = {}
        for node in self.nodes:
            remaining = self.held_until(node) - now
            if remaining > 0:
                out[node] = remaining
        return out

    def expire(self, now: float) -> None:
        """Forget what has run out, so the ledger stays as small as the leases held."""
        if self.floor <= now:
            self.floor = -math.inf
        for book in self.nodes.values():
            book.grants = [g for g in book.grants if g.until > now]
            for incarnation, leases in list(book.reported.items()):
                live = {s: t for s, t in leases.items() if t > now}
                if live:
                    book.reported[incarnation] = live
                else:
                    del book.reported[incarnation]
