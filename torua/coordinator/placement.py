"""Shard placement: a pure function from (current placement, node views) to a target.

Pure (no I/O, no clock) so the coordinator can re-plan on every membership
change and tests can check it exhaustively; the executor turns the difference
into copy moves (`moves_between`), and with replicas into replica changes and
planned primary hand-offs (`torua.coordinator.replica_plan`).

A node is *active* when healthy, not draining, not stopping, not gone and its
disk is not above the high watermark; it *takes new copies* when active, not in
maintenance and its disk is below the low watermark; it is *eligible* when it
takes new copies and is below its ``max_shards``. Rules:

1. New copies go only to eligible nodes. A node in maintenance or above the
   low disk watermark keeps (and serves) what it holds, takes nothing new and
   gives nothing away for balance.
2. Every shard 0..num_shards-1 gets min(rf, nodes that may hold it) copies on
   distinct nodes. Copies on nodes not listed in ``nodes`` are dropped.
3. A copy on an unhealthy/unknown (not gone) node stays and counts: data cannot
   be copied off a dead node, and a lone copy must wait for its node rather
   than be opened empty elsewhere.
4. A copy on a gone node is dropped only if the shard has a copy on a non-gone
   node (never lose the only copy); dropped copies are replaced when rf needs.
   A shard whose copies are all on gone nodes gets no new copies: they could
   not be filled, and the next plan would drop the gone copy for an empty one.
5. Copies on draining healthy nodes move to eligible nodes if there is room;
   so do copies on a node above the high disk watermark: the planner cannot
   predict disk use after a move, so it empties such a node like a drained
   one, as far as there is room elsewhere. A stopping node (it asked for a
   hand-off before a planned stop) keeps its copies and leads nothing.
6. Copies per node that takes new copies differ by at most 1 unless
   max_shards prevents it;
   primaries per active node holding copies likewise, balanced by choosing
   another copy of a shard as primary (a planned hand-off), not by moving data.
   A shard's primary is on an active copy whenever it has one. Given
   ``in_sync``, a primary changes only to a copy in the shard's in-sync set
   (one that has every acknowledged write), so balance goes as far as in-sync
   copies allow, and a copy still catching up takes no primary until it is in
   sync.
7. max_shards is never exceeded by new copies; copies already above it move
   off when they can.
8. Minimal movement: keep every copy the rules allow, move only what balance
   needs, most loaded to least loaded; ties break by node id, then shard id.
   A primary changes for balance only along a chain of shards that takes one
   primary from a node to one leading at least two fewer, so every chain lowers
   the sum of squared primaries per node and repeated planning converges
   without handing a primary back and forth. Planning the result again returns
   it unchanged (without ``max_handoffs``).
9. Fresh placement spreads shards evenly (16 shards on 3 nodes: 6/5/5).
10. A fresh shard's primary is the copy whose node has the fewest primaries.
11. ``max_handoffs`` bounds how many primaries that could stay are changed for
    balance in one plan (each hand-off pauses its shard's writes for about a
    lease); the first chain is taken even when longer, so balance always
    progresses. Primaries that must change (their node leaves) are not counted.
Pinned copies (rule 3/4) are never trimmed, even when above rf.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

from torua.protocol.vocabulary import NodeHealth

HEALTHY = NodeHealth.HEALTHY
# A node's disk level against the cluster's watermarks (torua.coordinator.capacity.disk_level).
DISK_OK, DISK_ABOVE_LOW, DISK_ABOVE_HIGH = "ok", "above_low", "above_high"

Placement = dict[int, tuple[str, ...]]  # shard_id -> (primary, *replicas); () = unassigned


@dataclass(frozen=True)
class NodeView:
    """What placement needs to know about a node, nothing more."""

    id: str
    status: str  # "healthy" | "unhealthy" | "unknown"
    draining: bool = False  # operator asked to move everything off
    gone: bool = False  # unhealthy longer than node_left_delay: its copies count as lost
    max_shards: int | None = None  # None = unlimited
    maintenance: bool = False  # operator asked for no new copies here; it keeps what it holds
    disk: str = DISK_OK  # ok | above_low (no new copies) | above_high (copies move off)
    stopping: bool = False  # asked for a hand-off of its primaries before a planned stop (SIGTERM)


def is_active(v: NodeView) -> bool:
    """May hold primaries and keep its copies: healthy, not leaving or stopping, disk not over the high mark."""
    return v.status == HEALTHY and not v.draining and not v.stopping and not v.gone and v.disk != DISK_ABOVE_HIGH


def takes_new_copies(v: NodeView) -> bool:
    """Active, not in maintenance and below the low disk watermark (max_shards aside)."""
    return is_active(v) and not v.maintenance and v.disk == DISK_OK


@dataclass(frozen=True)
class CopyMove:
    """One new copy to build; `source` is where its data comes from (None = nothing to copy)."""

    shard_id: int
    source: str | None
    target: str


def copies_per_node(p: Placement) -> dict[str, int]:
    """Copies (primary or replica) each node holds."""
    return dict(Counter(n for copies in p.values() for n in copies))


def primaries_per_node(p: Placement) -> dict[str, int]:
    """Primaries each node holds."""
    return dict(Counter(copies[0] for copies in p.values() if copies))


def moves_between(current: Placement, target: Placement) -> list[CopyMove]:
    """Copies the target adds, each sourced from the shard's current primary."""
    moves = []
    for shard_id in sorted(target):
        now = tuple(current.get(shard_id, ()))
        source = now[0] if now else None
        for node in sorted(set(target[shard_id]) - set(now)):
            moves.append(CopyMove(shard_id, source, node))
    return moves


def plan_placement(
    current: Placement,
    nodes: Sequence[NodeView],
    num_shards: int,
    replication_factor: int = 1,
    *,
    in_sync: Mapping[int, Collection[str]] | None = None,
    max_handoffs: int | None = None,
) -> Placement:
    """The target placement for `current` given the nodes; see the module rules.

    `in_sync` (shard -> its in-sync copies; a shard not in it: any copy may lead)
    restricts which copies may take a primary over; `max_handoffs` bounds the
    primaries changed for balance alone (rule 11; None: no bound).
    """
    if replication_factor < 1 or num_shards < 0:
        raise ValueError("replication_factor must be >= 1 and num_shards >= 0")
    if max_handoffs is not None and max_handoffs < 1:
        raise ValueError("max_handoffs must be >= 1 (or None)")
    return _Planner(current, nodes, num_shards, replication_factor, in_sync, max_handoffs).plan()


class _Planner:
    """Mutable working state for one plan; private so the API stays a pure function."""

    def __init__(
        self,
        current: Placement,
        nodes: Sequence[NodeView],
        num_shards: int,
        rf: int,
        in_sync: Mapping[int, Collection[str]] | None = None,
        max_handoffs: int | None = None,
    ) -> None:
        self.in_sync = {s: frozenset(copies) for s, copies in (in_sync or {}).items()}
        self.max_handoffs = max_handoffs
        self.view: dict[str, NodeView] = {}
        for node in nodes:
            self.view.setdefault(node.id, node)
        self.rf = rf
        self.shard_ids = range(num_shards)
        # Known copies as they are now (before any rule), to tell kept copies from new ones.
        self.before = {s: [n for n in dict.fromkeys(current.get(s, ())) if n in self.view] for s in self.shard_ids}
        self.shards = {s: self._kept(list(self.before[s])) for s in self.shard_ids}
        self.held: dict[str, set[int]] = {n: set() for n in self.view}
        for s, copies in self.shards.items():
            for n in copies:
                self.held[n].add(s)
        self.active = sorted(n for n in self.view if self._is_active(n))
        # Nodes that give and take copies for balance; maintenance and above-low nodes keep theirs.
        self.balanced = [n for n in self.active if takes_new_copies(self.view[n])]

    # ---------------------------------------------------------------- node predicates

    def _pinned(self, n: str) -> bool:
        return self.view[n].gone or self.view[n].status != HEALTHY

    def _is_active(self, n: str) -> bool:
        return is_active(self.view[n])

    def _room(self, n: str) -> bool:
        cap = self.view[n].max_shards
        return takes_new_copies(self.view[n]) and (cap is None or len(self.held[n]) < cap)

    def _leaving(self, n: str) -> bool:
        """Everything here should move off: draining, or the disk is over the high mark."""
        v = self.view[n]
        return v.draining or v.disk == DISK_ABOVE_HIGH

    def _must_leave(self, n: str) -> bool:
        """Copies here should move if they can: leaving, or above the cap."""
        v = self.view[n]
        if self._pinned(n):
            return False
        return self._leaving(n) or (v.max_shards is not None and len(self.held[n]) > v.max_shards)

    # ---------------------------------------------------------------- phases

    def _kept(self, copies: list[str]) -> list[str]:
        """Rules 2-4 on one shard: drop gone copies that have a live sibling, trim to rf."""
        if any(not self.view[n].gone for n in copies):
            copies = [n for n in copies if not self.view[n].gone]
        while len(copies) > self.rf:
            removable = [n for n in copies if not self._pinned(n)]
            if not removable:
                break  # pinned copies are never dropped, even above rf
            copies.remove(max(removable, key=lambda n: (self._leaving(n), copies.index(n))))
        return copies

    def _target_for(self, s: int) -> str | None:
        """Least loaded eligible node not holding shard s.

        Among equally loaded nodes, prefer the one sharing fewest shards with s's
        other copies, so a failed node's replicas (and the work to rebuild
        them) spread over many nodes instead of one partner.
        """
        options = [n for n in self.active if self._room(n) and s not in self.held[n]]
        if not options:
            return None
        least = min(len(self.held[n]) for n in options)
        others = self.shards[s]
        return min(
            (n for n in options if len(self.held[n]) == least),
            key=lambda n: (sum(len(self.held[n] & self.held[m]) for m in others), n),
        )

    def _move_order(self, n: str) -> list[int]:
        """Shards on n, cheapest to move first: new copies, then replicas, then by id."""
        return sorted(self.held[n], key=lambda s: (n in self.before[s], self.shards[s][0] == n, s))

    def _move(self, s: int, src: str, dst: str) -> None:
        copies = self.shards[s]
        copies[copies.index(src)] = dst
        self.held[src].discard(s)
        self.held[dst].add(s)

    def _fill(self) -> bool:
        """Add missing copies, every shard's first copy before any shard's second."""
        changed = False
        for level in range(1, self.rf + 1):
            for s in self.shard_ids:
                copies = self.shards[s]
                if len(copies) >= level or (copies and all(self.view[n].gone for n in copies)):
                    continue
                dst = self._target_for(s)
                if dst is not None:
                    copies.append(dst)
                    self.held[dst].add(s)
                    changed = True
        return changed

    def _relocate(self) -> bool:
        """Move copies off draining and over-cap nodes while there is room elsewhere."""
        changed = False
        for n in sorted(self.view):
            if not self._must_leave(n):
                continue
            for s in self._move_order(n):
                if not self._must_leave(n):
                    break
                dst = self._target_for(s)
                if dst is not None:
                    self._move(s, n, dst)
                    changed = True
        return changed

    def _balance(self) -> bool:
        """Move copies from the most to the least loaded node taking new copies until within 1."""
        changed = False
        while self.balanced:
            src = min(self.balanced, key=lambda n: (-len(self.held[n]), n))
            roomy = [n for n in self.balanced if self._room(n)]
            dst = min(roomy, key=lambda n: (len(self.held[n]), n), default=None)
            if dst is None or len(self.held[src]) - len(self.held[dst]) <= 1:
                return changed
            # src holds at least two more shards than dst, so one of them is not on dst.
            s = next(s for s in self._move_order(src) if s not in self.held[dst])
            self._move(s, src, dst)
            changed = True
        return changed

    def _may_take_over(self, s: int, n: str, was: str | None) -> bool:
        """May n lead shard s: it leads it now, or it has every acknowledged write (rule 6)."""
        return n == was or s not in self.in_sync or n in self.in_sync[s]

    def _choose_primaries(self) -> dict[int, str]:
        """Keep primaries that may stay, give fresh/orphaned shards the least-loaded one, then balance."""
        primary: dict[int, str] = {}
        count: Counter[str] = Counter()
        candidates: dict[int, list[str]] = {}
        kept: dict[int, str] = {}  # primaries that could stay: changing one is a hand-off for balance
        for s in self.shard_ids:
            copies = self.shards[s]
            if not copies:
                continue
            was = self.before[s][0] if self.before[s] else None
            healthy = [n for n in copies if self.view[n].status == HEALTHY and not self.view[n].gone]
            active = [n for n in copies if self._is_active(n)]
            ready = [n for n in active if self._may_take_over(s, n, was)]
            # With no ready copy the primary must still leave a leaving node: to a copy
            # that is filling, which the executor promotes only once it is in sync.
            candidates[s] = ready or active or healthy or [copies[0]]
            if was in candidates[s]:
                primary[s] = kept[s] = was
                count[was] += 1
        for s, cands in candidates.items():
            if s not in primary:
                primary[s] = min(cands, key=lambda n: (count[n], n))
                count[primary[s]] += 1
        while (chain := self._shift_chain(primary, count, candidates)) is not None:
            if self.max_handoffs is not None:
                used = sum(primary[s] != p for s, p in kept.items())
                after = dict(primary) | dict(chain)
                if used and sum(after[s] != p for s, p in kept.items()) > self.max_handoffs:
                    break  # the rest waits for the next plan
            count[primary[chain[0][0]]] -= 1
            count[chain[-1][1]] += 1
            primary.update(chain)
        return primary

    def _shift_chain(self, primary: dict[int, str], count: Counter[str], candidates: dict[int, list[str]]) -> list[tuple[int, str]] | None:
        """A chain of (shard, new primary) steps taking one primary from the most loaded
        node that can give one to the least loaded node it reaches, leading at least two
        fewer (shortest chain, then node id); each step moves a shard's primary to one
        of its candidates. None if there is no such chain."""
        by_node: dict[str, list[int]] = {}
        for s in sorted(primary):
            if self._is_active(primary[s]) and len(candidates[s]) > 1:
                by_node.setdefault(primary[s], []).append(s)
        holders = [n for n in self.active if self.held[n]]
        for start in sorted(holders, key=lambda n: (-count[n], n)):
            parent: dict[str, tuple[str, int]] = {}
            depth = {start: 0}
            queue = deque([start])
            while queue:
                x = queue.popleft()
                for s in by_node.get(x, []):
                    for y in sorted(candidates[s]):
                        if y not in depth:
                            parent[y] = (x, s)
                            depth[y] = depth[x] + 1
                            queue.append(y)
            ends = [y for y in depth if count[y] <= count[start] - 2]
            if not ends:
                continue
            x = min(ends, key=lambda y: (count[y], depth[y], y))
            chain = []
            while x != start:  # walk back: each shard's primary moves one step
                prev, s = parent[x]
                chain.append((s, x))
                x = prev
            return chain[::-1]
        return None

    def plan(self) -> Placement:
        while self._fill() | self._relocate() | self._balance():
            pass
        primary = self._choose_primaries()
        return {
            s: (primary[s], *[n for n in self.shards[s] if n != primary[s]]) if self.shards[s] else ()
            for s in self.shard_ids
        }
