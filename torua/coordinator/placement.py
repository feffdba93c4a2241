"""Shard placement: a pure function from (current placement, node views) to a target.

Pure (no I/O, no clock) so the coordinator can re-plan on every membership
change and tests can check it exhaustively; the executor turns the difference
into copy moves (`moves_between`) and promotes a new primary only once it is
in sync.

A node is *active* when healthy, not draining, not gone and its disk is not
above the high watermark; it *takes new copies* when active, not in
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
   one, as far as there is room elsewhere.
6. Copies per node that takes new copies differ by at most 1 unless
   max_shards prevents it;
   primaries per active node holding copies likewise, balanced by choosing
   another copy of a shard as primary, not by moving data. A shard's primary is
   on an active copy whenever it has one.
7. max_shards is never exceeded by new copies; copies already above it move
   off when they can.
8. Minimal movement: keep every copy the rules allow, move only what balance
   needs, most loaded to least loaded; ties break by node id, then shard id.
   Planning the result again returns it unchanged.
9. Fresh placement spreads shards evenly (16 shards on 3 nodes: 6/5/5).
10. A fresh shard's primary is the copy whose node has the fewest primaries.
Pinned copies (rule 3/4) are never trimmed, even when above rf.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Sequence

HEALTHY = "healthy"
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


def is_active(v: NodeView) -> bool:
    """May hold primaries and keep its copies: healthy, not leaving, disk not over the high mark."""
    return v.status == HEALTHY and not v.draining and not v.gone and v.disk != DISK_ABOVE_HIGH


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
    current: Placement, nodes: Sequence[NodeView], num_shards: int, replication_factor: int = 1
) -> Placement:
    """The target placement for `current` given the nodes; see the module rules."""
    if replication_factor < 1 or num_shards < 0:
        raise ValueError("replication_factor must be >= 1 and num_shards >= 0")
    return _Planner(current, nodes, num_shards, replication_factor).plan()


class _Planner:
    """Mutable working state for one plan; private so the API stays a pure function."""

    def __init__(self, current: Placement, nodes: Sequence[NodeView], num_shards: int, rf: int) -> None:
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

    def _choose_primaries(self) -> dict[int, str]:
        """Keep primaries that may stay, give fresh/orphaned shards the least-loaded one, then balance."""
        primary: dict[int, str] = {}
        count: Counter[str] = Counter()
        candidates: dict[int, list[str]] = {}
        for s in self.shard_ids:
            copies = self.shards[s]
            if not copies:
                continue
            healthy = [n for n in copies if self.view[n].status == HEALTHY and not self.view[n].gone]
            candidates[s] = [n for n in copies if self._is_active(n)] or healthy or [copies[0]]
            was = self.before[s][0] if self.before[s] else None
            if was in candidates[s]:
                primary[s] = was
                count[was] += 1
        for s, cands in candidates.items():
            if s not in primary:
                primary[s] = min(cands, key=lambda n: (count[n], n))
                count[primary[s]] += 1
        while self._shift_primaries(primary, count, candidates):
            pass
        return primary

    def _shift_primaries(self, primary: dict[int, str], count: Counter[str], candidates: dict[int, list[str]]) -> bool:
        """One augmenting path from a node to one with >= 2 fewer primaries; False if none."""
        by_node: dict[str, list[int]] = {}
        for s in sorted(primary):
            if self._is_active(primary[s]) and len(candidates[s]) > 1:
                by_node.setdefault(primary[s], []).append(s)
        holders = [n for n in self.active if self.held[n]]
        for start in sorted(holders, key=lambda n: (-count[n], n)):
            parent: dict[str, tuple[str, int]] = {}
            queue = deque([start])
            while queue:
                x = queue.popleft()
                if count[x] <= count[start] - 2:
                    count[start] -= 1
                    count[x] += 1
                    while x != start:  # walk back, shifting each shard's primary one step
                        prev, s = parent[x]
                        primary[s] = x
                        x = prev
                    return True
                for s in by_node.get(x, []):
                    for y in sorted(candidates[s]):
                        if y != start and y not in parent:
                            parent[y] = (x, s)
                            queue.append(y)
        return False

    def plan(self) -> Placement:
        while self._fill() | self._relocate() | self._balance():
            pass
        primary = self._choose_primaries()
        return {
            s: (primary[s], *[n for n in self.shards[s] if n != primary[s]]) if self.shards[s] else ()
            for s in self.shard_ids
        }
