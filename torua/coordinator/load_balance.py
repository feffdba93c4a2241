"""Load-based rebalancing of hot shards: a pure decision over plain data.

Count-based placement (`torua.coordinator.placement`) keeps copies and
primaries per node within 1 of each other; it knows nothing of traffic. This
module moves *load* without ever breaking those counts, so the two never undo
each other's work:

- one copy per shard (`how="copy"`): a hot shard's copy goes from the busiest
  node to a cooler one, either one way when the busiest node holds at least one
  copy more than the cooler one (the spread of counts does not widen), or as a **swap**
  with a colder shard of the cooler node (two moves, counts unchanged);
- replicas (`how="primary"`): no data moves. An in-sync replica of the hot shard
  on a cooler node becomes its primary (a planned hand-off), one way when the
  busiest node leads at least one shard more, or swapped with a colder shard that
  the cooler node leads and of which the busiest node holds an in-sync replica.
  Placement hands primaries off only while primaries per node differ by more
  than 1, and a one-way hand-off only trades the two nodes' counts, so a node
  leads at most one more or one fewer for load and placement hands nothing back.
  (The coordinator decides on load only once count balancing has nothing left
  to do: `hold_reason`.)

A node's load is the sum of the rates of the shards it leads (with one copy, the
ones it holds): reads and writes both go to the primary. The rate of a shard is
what its copies report (`ShardReport.ops_rate`).

Hysteresis, so a steady load never makes shards go back and forth:

1. act only when the busiest node's load exceeds ``mean * (1 + tolerance)``
   (and `min_rate`, below which the cluster is idle);
2. an action must lower the highest load in the cluster by at least
   ``max(min_rate, tolerance * mean / 2)``: so the maximum strictly falls with
   every action and a steady load settles after a few of them. Two equally
   hot nodes, or one shard hotter than the mean on its own, give nothing to do:
   moving it would only move the hotspot;
3. a shard moved within `cooldown` seconds is moved by neither side of a swap.

`decide` returns at most one action; `plan` applies actions to the data and
decides again, up to `max_actions`, so an operator's request can go all the way
in one call while the automatic mode takes one step per round.

>>> view = LoadView(placement={0: ("a",), 1: ("a",), 2: ("b",), 3: ("b",)},
...                 rates={0: 50.0, 1: 50.0, 2: 1.0, 3: 0.0}, nodes={"a": None, "b": None})
>>> decide(view, Policy(), {}, now=0.0).actions      # a: 100 ops/s, b: 1
(Action(shard_id=0, source='a', target='b', swap_with=2, how='copy'),)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Mapping

COPY = "copy"
PRIMARY = "primary"

# a comparison margin for sums of floats
_EPS = 1e-9


@dataclass(frozen=True)
class Policy:
    tolerance: float = 0.25  # ClusterSettings.rebalance_tolerance
    cooldown: float = 60.0  # seconds a moved shard stays where it is
    min_rate: float = 1.0  # ops/s: loads below this are noise, not imbalance


@dataclass(frozen=True)
class LoadView:
    """What the decision sees: plain data the coordinator copies out of its state.

    `placement`: shard -> (primary, *replicas); `rates`: shard -> ops/s;
    `nodes`: the nodes that may give and take load -> their max_shards (None: no
    limit), healthy and in no special state; `replicated`: shards have replicas
    (load moves by primary hand-off); `in_sync`: shard -> its in-sync copies.
    """

    placement: Mapping[int, tuple[str, ...]]
    rates: Mapping[int, float]
    nodes: Mapping[str, int | None]
    replicated: bool = False
    in_sync: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """Take hot `shard_id` off `source` onto `target`; with `swap_with`, that
    (colder) shard of `target` goes to `source` in return."""

    shard_id: int
    source: str
    target: str
    swap_with: int | None = None
    how: str = COPY  # copy: the copy moves with its data; primary: a replica takes over

    @property
    def kind(self) -> str:
        return "move" if self.swap_with is None else "swap"

    def steps(self) -> list[tuple[int, str, str]]:
        """(shard, from, to) for each copy move or primary hand-off the action needs."""
        out = [(self.shard_id, self.source, self.target)]
        if self.swap_with is not None:
            out.append((self.swap_with, self.target, self.source))
        return out


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    reason: str
    loads: dict[str, float]  # per node, as seen
    mean: float
    threshold: float  # the busiest node's load must exceed this for anything to happen
    expected: dict[str, float]  # per node, once the actions are done


def node_loads(view: LoadView) -> dict[str, float]:
    """Ops/s each node of `view.nodes` serves: the rates of the shards it leads."""
    loads = {n: 0.0 for n in sorted(view.nodes)}
    for s, copies in view.placement.items():
        if copies and copies[0] in loads:
            loads[copies[0]] += max(0.0, view.rates.get(s, 0.0))
    return loads


def _counts(view: LoadView) -> Counter[str]:
    """What placement keeps within 1 per node: copies, or with replicas primaries."""
    if view.replicated:
        return Counter(c[0] for c in view.placement.values() if c)
    return Counter(n for c in view.placement.values() for n in c)


def hold_reason(moves: int, handoffs: int, catching_up: int, unsettled_shards: list[int], placement_due: bool, quiet_for: float, settle: float) -> str:
    """Why no load decision may be taken now ("" when one may): other work
    changes the placement, or rates have not caught up with the last change."""
    if moves:
        return f"busy: {moves} shard move(s) in progress or queued"
    if handoffs:
        return f"busy: {handoffs} primary hand-off(s) in progress"
    if catching_up:
        return f"busy: {catching_up} replica(s) catching up"
    if unsettled_shards:
        return f"busy: shard(s) {', '.join(map(str, unsettled_shards[:5]))} not active"
    if placement_due:
        return "busy: count-based placement has work to do first"
    if quiet_for < settle:
        return f"settling: rates catch up with the last change for {settle - quiet_for:.1f} more seconds"
    return ""


def decide(view: LoadView, policy: Policy, recent: Mapping[int, float], now: float) -> Decision:
    """At most one action that lowers the busiest node's load (see the module doc)."""
    loads = node_loads(view)
    if len(loads) < 2:
        return Decision((), "nothing to do: fewer than two nodes may share load", loads, 0.0, 0.0, loads)
    mean = sum(loads.values()) / len(loads)
    threshold = mean * (1 + policy.tolerance)
    hot = min(loads, key=lambda n: (-loads[n], n))
    top = loads[hot]

    def nothing(why: str) -> Decision:
        return Decision((), why, loads, mean, threshold, loads)

    if top < policy.min_rate:
        return nothing(f"idle: the busiest node ({hot}) serves {top:.1f} ops/s, below {policy.min_rate:g}")
    if top <= threshold + _EPS:
        return nothing(f"balanced: the busiest node ({hot}, {top:.1f} ops/s) is within {policy.tolerance:.0%} of the mean {mean:.1f}")
    gain = max(policy.min_rate, policy.tolerance * mean / 2)
    best: tuple[tuple, Action, dict[str, float]] | None = None
    for action in _candidates(view, hot, recent, now, policy.cooldown):
        after = _loads_after(loads, view.rates, action)
        new_max = max(after.values())
        if new_max > top - gain + _EPS:
            continue
        key = (round(new_max, 9), len(action.steps()), action.shard_id, action.target, -1 if action.swap_with is None else action.swap_with)
        if best is None or key < best[0]:
            best = (key, action, after)
    if best is None:
        return nothing(f"nothing to do: no move or swap lowers the busiest node ({hot}, {top:.1f} ops/s) by {gain:.1f} ops/s or more")
    _, action, after = best
    why = f"{hot} serves {top:.1f} ops/s, over {threshold:.1f} ({policy.tolerance:.0%} above the mean {mean:.1f})"
    return Decision((action,), why, loads, mean, threshold, after)


def plan(view: LoadView, policy: Policy, recent: Mapping[int, float], now: float, max_actions: int) -> Decision:
    """Up to `max_actions` actions, each decided on the data as the previous ones leave it."""
    first = decide(view, policy, recent, now)
    actions: list[Action] = []
    moved = dict(recent)
    decision = first
    while decision.actions and len(actions) < max_actions:
        action = decision.actions[0]
        actions.append(action)
        view = apply(view, action)
        for shard_id, _, _ in action.steps():
            moved[shard_id] = now
        decision = decide(view, policy, moved, now)
    return replace(first, actions=tuple(actions), expected=node_loads(view))


def apply(view: LoadView, action: Action) -> LoadView:
    """The view as it is once `action` is done (rates follow their shards)."""
    placement = dict(view.placement)
    in_sync = dict(view.in_sync)
    for shard_id, source, target in action.steps():
        copies = placement[shard_id]
        if action.how == PRIMARY:
            # as ReplicaKeeper.promote: the new primary first, the old one a replica out of sync
            placement[shard_id] = (target, source) + tuple(n for n in copies if n not in (target, source))
            in_sync[shard_id] = (target,) + tuple(n for n in in_sync.get(shard_id, ()) if n not in (target, source))
        else:
            placement[shard_id] = tuple(target if n == source else n for n in copies)
    return replace(view, placement=placement, in_sync=in_sync)


# ---------------------------------------------------------------- internals


def _movable(shard_id: int, recent: Mapping[int, float], now: float, cooldown: float) -> bool:
    moved = recent.get(shard_id)
    return moved is None or now - moved >= cooldown


def _candidates(view: LoadView, hot: str, recent: Mapping[int, float], now: float, cooldown: float) -> list[Action]:
    """Every action that takes a hot shard off `hot` and keeps the per-node counts
    placement balances: a one-way move where the two nodes trade counts, or a swap."""
    rate = lambda s: max(0.0, view.rates.get(s, 0.0))  # noqa: E731
    led: dict[str, list[int]] = {n: [] for n in view.nodes}
    for s in sorted(view.placement):
        copies = view.placement[s]
        if copies and copies[0] in led and _movable(s, recent, now, cooldown):
            led[copies[0]].append(s)
    counts = _counts(view)
    how = PRIMARY if view.replicated else COPY
    out: list[Action] = []
    for s in led[hot]:
        if rate(s) <= 0:
            continue
        for d in sorted(view.nodes):
            if d == hot or not _may_take(view, s, d):
                continue
            cap = view.nodes[d]
            # one way when it does not widen the spread of counts: the two nodes trade
            # counts (hot leads or holds at least one more than d before, so d at most
            # one more than hot after); max_shards caps copies, not primaries
            if counts[hot] >= counts[d] + 1 and (view.replicated or cap is None or counts[d] + 1 <= cap):
                out.append(Action(s, hot, d, None, how))
            for t in led[d]:
                if rate(t) < rate(s) and _may_take(view, t, hot):
                    out.append(Action(s, hot, d, t, how))
    return out


def _may_take(view: LoadView, shard_id: int, node: str) -> bool:
    """Can `node` take shard `shard_id`'s load: a new copy (none there yet), or
    with replicas the primary role (an in-sync replica there)."""
    copies = view.placement[shard_id]
    if view.replicated:
        return node in copies and node in view.in_sync.get(shard_id, ())
    return node not in copies


def _loads_after(loads: dict[str, float], rates: Mapping[int, float], action: Action) -> dict[str, float]:
    after = dict(loads)
    for shard_id, source, target in action.steps():
        r = max(0.0, rates.get(shard_id, 0.0))
        after[source] -= r
        after[target] += r
    return after
