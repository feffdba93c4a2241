"""Table and property tests for the pure load-rebalancing decision."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from torua.coordinator.load_balance import (
    COPY,
    PRIMARY,
    Action,
    LoadView,
    Policy,
    apply,
    decide,
    hold_reason,
    node_loads,
    plan,
)
from torua.coordinator.placement import NodeView, plan_placement

POLICY = Policy(tolerance=0.25, cooldown=60.0, min_rate=1.0)


def one_copy(layout: dict[str, list[int]], rates: dict[int, float], caps: dict[str, int | None] | None = None, others: dict[str, list[int]] | None = None) -> LoadView:
    """One copy per shard: `layout` maps each eligible node to the shards it holds;
    `others` are shards on nodes that may not take part (draining, unhealthy...)."""
    placement = {s: (n,) for n, shards in {**layout, **(others or {})}.items() for s in shards}
    return LoadView(placement, rates, {n: (caps or {}).get(n) for n in layout})


def replicated(entries: dict[int, tuple[str, ...]], rates: dict[int, float], nodes: list[str], out_of_sync: dict[int, list[str]] | None = None) -> LoadView:
    """Replicated shards: `entries` maps shard -> (primary, *replicas); every copy is
    in sync except those in `out_of_sync`."""
    lagging = out_of_sync or {}
    in_sync = {s: tuple(n for n in copies if n not in lagging.get(s, [])) for s, copies in entries.items()}
    return LoadView(entries, rates, {n: None for n in nodes}, replicated=True, in_sync=in_sync)


def counts(view: LoadView) -> Counter:
    if view.replicated:
        return Counter({n: 0 for n in view.nodes} | Counter(c[0] for c in view.placement.values()))
    return Counter({n: 0 for n in view.nodes} | Counter(n for c in view.placement.values() for n in c if n in view.nodes))


def settle(view: LoadView, steps: int = 50) -> list[LoadView]:
    """decide + apply with no cooldown at all until nothing is left to do."""
    seen = [view]
    for _ in range(steps):
        d = decide(view, POLICY, {}, 0.0)
        if not d.actions:
            return seen
        view = apply(view, d.actions[0])
        seen.append(view)
    raise AssertionError("no steady state after %d actions" % steps)


# ------------------------------------------------------------- nothing to do

NOTHING = [
    (
        "balanced within tolerance",
        one_copy({"a": [0, 1], "b": [2, 3], "c": [4, 5]}, {0: 10, 1: 10, 2: 9, 3: 9, 4: 8, 5: 8}),
        "balanced",
    ),
    (
        "idle cluster: noise below min_rate",
        one_copy({"a": [0, 1], "b": [2, 3], "c": [4, 5]}, {0: 0.4, 1: 0.4}),
        "idle",
    ),
    (
        "two equal hot shards on two nodes: moving either only moves a hotspot",
        one_copy({"a": [0, 1], "b": [2, 3], "c": [4, 5]}, {0: 100, 2: 100}),
        "nothing to do",
    ),
    (
        "one shard hotter than the mean on its own",
        one_copy({"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}, {0: 100, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1}),
        "nothing to do",
    ),
    (
        "one overwhelmingly hot shard, the rest idle",
        one_copy({"a": [0, 1], "b": [2, 3], "c": [4, 5]}, {0: 500}),
        "nothing to do",
    ),
    (
        "a single node cannot share load",
        one_copy({"a": [0, 1, 2]}, {0: 100}),
        "fewer than two",
    ),
    (
        "the hot shard moved within the cooldown",
        one_copy({"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}, {0: 60, 1: 60}),
        None,  # checked with `recent` below
    ),
    (
        "replicas: the hot shard's replica is not in sync",
        replicated({0: ("a", "b"), 1: ("b", "a")}, {0: 100}, ["a", "b"], out_of_sync={0: ["b"]}),
        "nothing to do",
    ),
]


@pytest.mark.parametrize("name, view, reason", NOTHING, ids=[n for n, _, _ in NOTHING])
def test_nothing_to_do(name, view, reason):
    recent = {0: 100.0, 1: 100.0} if reason is None else {}
    d = decide(view, POLICY, recent, now=130.0)
    assert d.actions == ()
    assert d.expected == d.loads
    if reason:
        assert reason in d.reason, d.reason


# -------------------------------------------------------------- one action

ONE = [
    (
        "one copy, equal counts: swap the hot shard with a colder one of the coolest node",
        one_copy({"a": [0, 1], "b": [2, 3], "c": [4, 5]}, {0: 40, 1: 40, 2: 5, 3: 5, 4: 1, 5: 0}),
        Action(0, "a", "c", 4, COPY),
    ),
    (
        "one copy, the hot node holds one more: a one-way move, the nodes trade counts",
        one_copy({"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}, {0: 40, 1: 40, 2: 40}),
        Action(0, "a", "c", None, COPY),
    ),
    (
        "one copy: no one-way move onto a node at max_shards, a swap instead",
        one_copy({"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}, {0: 40, 1: 40, 2: 40}, caps={"c": 2}),
        Action(0, "a", "b", 3, COPY),
    ),
    (
        "one copy: shards on nodes outside the view are not counted nor taken",
        one_copy({"a": [0, 1], "b": [2, 3]}, {0: 50, 1: 50, 9: 1000}, others={"x": [9]}),
        Action(0, "a", "b", 2, COPY),
    ),
    (
        "replicas: swap primaries with in-sync replicas, no data moves",
        replicated(
            {0: ("a", "b"), 1: ("a", "c"), 2: ("b", "a"), 3: ("c", "b"), 4: ("b", "c"), 5: ("c", "a")}, {0: 50, 1: 50, 2: 1, 3: 1}, ["a", "b", "c"]
        ),
        Action(0, "a", "b", 2, PRIMARY),
    ),
    (
        "replicas: one-way hand-off when the hot node leads one more",
        replicated({0: ("a", "b"), 1: ("a", "c"), 2: ("b", "c"), 3: ("c", "a")}, {0: 50, 1: 50}, ["a", "b", "c"]),
        Action(0, "a", "b", None, PRIMARY),
    ),
]


@pytest.mark.parametrize("name, view, expected", ONE, ids=[n for n, _, _ in ONE])
def test_one_action(name, view, expected):
    d = decide(view, POLICY, {}, now=0.0)
    assert d.actions == (expected,), d.reason
    after = apply(view, expected)
    assert node_loads(after) == pytest.approx(d.expected)
    assert max(d.expected.values()) < max(d.loads.values())
    assert sorted(counts(after).values()) == sorted(counts(view).values())


def test_the_cooldown_protects_both_sides_of_a_swap():
    view = one_copy({"a": [0, 1], "b": [2, 3], "c": [4, 5]}, {0: 40, 1: 40, 2: 5, 3: 5, 4: 1, 5: 0})
    assert decide(view, POLICY, {}, now=20.0).actions == (Action(0, "a", "c", 4, COPY),)
    assert decide(view, POLICY, {4: 10.0}, now=20.0).actions == (Action(0, "a", "c", 5, COPY),)
    assert decide(view, POLICY, {4: 10.0, 5: 10.0}, now=20.0).actions == (Action(0, "a", "b", 2, COPY),)
    assert decide(view, POLICY, {0: 10.0}, now=20.0).actions == (Action(1, "a", "c", 4, COPY),)
    # once the cooldown is over, the shard may move again
    assert decide(view, POLICY, {4: 10.0}, now=70.0).actions == (Action(0, "a", "c", 4, COPY),)


def test_replicas_hand_off_only_to_in_sync_copies():
    entries = {0: ("a", "b", "c"), 1: ("a", "b", "c"), 2: ("b", "a", "c"), 3: ("c", "a", "b")}
    view = replicated(entries, {0: 60, 1: 60}, ["a", "b", "c"], out_of_sync={0: ["b", "c"], 1: ["b"]})
    assert decide(view, POLICY, {}, 0.0).actions == (Action(1, "a", "c", None, PRIMARY),)
    view = replicated(entries, {0: 60, 1: 60}, ["a", "b", "c"], out_of_sync={0: ["b", "c"], 1: ["b", "c"]})
    assert decide(view, POLICY, {}, 0.0).actions == ()


def test_a_primary_hand_off_leaves_the_old_primary_out_of_sync():
    view = replicated({0: ("a", "b", "c")}, {0: 60}, ["a", "b", "c"])
    after = apply(view, Action(0, "a", "b", None, PRIMARY))
    assert after.placement[0] == ("b", "a", "c")
    assert after.in_sync[0] == ("b", "c")


# --------------------------------------------------------- no oscillation

STEADY = [
    ("three hot shards on the node with most copies", one_copy({"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}, {0: 30, 1: 31, 2: 29})),
    ("two hot shards on one node", one_copy({"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}, {0: 30, 1: 30})),
    ("uneven heat over four nodes", one_copy({"a": [0, 1, 2, 3], "b": [4, 5, 6, 7], "c": [8, 9, 10, 11], "d": [12, 13, 14, 15]}, {0: 80, 1: 40, 2: 20, 3: 10, 4: 5, 9: 3})),
    (
        "replicas: hot primaries on one node",
        replicated({0: ("a", "b"), 1: ("a", "c"), 2: ("a", "b"), 3: ("b", "a"), 4: ("b", "c"), 5: ("c", "a"), 6: ("c", "b")}, {0: 30, 1: 30, 2: 30}, ["a", "b", "c"]),
    ),
]


@pytest.mark.parametrize("name, view", STEADY, ids=[n for n, _ in STEADY])
def test_a_plan_ends_where_the_next_decision_is_nothing(name, view):
    d = plan(view, POLICY, {}, now=0.0, max_actions=10)
    assert d.actions, d.reason
    after = view
    for action in d.actions:
        after = apply(after, action)
    assert node_loads(after) == pytest.approx(d.expected)
    again = decide(after, POLICY, {}, now=1.0)  # no cooldown to hide behind
    assert again.actions == (), again.reason
    assert sorted(counts(after).values()) == sorted(counts(view).values())
    moved = [s for a in d.actions for s, _, _ in a.steps()]
    assert len(moved) == len(set(moved)), "a plan moves each shard at most once"


def test_three_hot_shards_end_on_three_nodes():
    view = one_copy({"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}, {0: 30, 1: 31, 2: 29})
    d = plan(view, POLICY, {}, now=0.0, max_actions=4)
    after = view
    for action in d.actions:
        after = apply(after, action)
    assert sorted(after.placement[s][0] for s in (0, 1, 2)) == ["a", "b", "c"]
    assert max(d.expected.values()) == pytest.approx(31)


def test_plan_takes_at_most_max_actions():
    view = one_copy({"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}, {0: 30, 1: 31, 2: 29})
    assert len(plan(view, POLICY, {}, 0.0, max_actions=1).actions) == 1
    assert len(plan(view, POLICY, {}, 0.0, max_actions=4).actions) == 2


@pytest.mark.parametrize("seed", range(60))
def test_random_loads_settle_without_oscillation_and_placement_keeps_the_result(seed):
    """From a placement the count-based planner is happy with, every load action:
    lowers the highest load, keeps the planner happy (it would move nothing back),
    and a steady load reaches 'nothing to do' without revisiting a placement."""
    rng = random.Random(seed)
    ids = "abcde"[: rng.randint(2, 5)]
    num_shards = rng.randint(len(ids), 24)
    rf = rng.choice([1, 1, 2, 3]) if len(ids) >= 3 else 1
    views = [NodeView(n, "healthy") for n in ids]
    start = plan_placement({}, views, num_shards, rf)
    rates = {s: rng.choice([0.0, 0.5, 2.0, 10.0, 50.0, 200.0]) * rng.random() for s in range(num_shards)}
    view = LoadView(start, rates, {n: None for n in ids}, replicated=rf > 1, in_sync=dict(start))
    history = settle(view)
    maxima = [max(node_loads(v).values()) for v in history]
    assert all(b < a for a, b in zip(maxima, maxima[1:])), maxima
    placements = [tuple(sorted(v.placement.items())) for v in history]
    assert len(set(placements)) == len(placements)
    for v in history:
        assert plan_placement(dict(v.placement), views, num_shards, rf) == dict(v.placement)
        # as the coordinator plans it (only in-sync copies may take a primary over): the same
        assert plan_placement(dict(v.placement), views, num_shards, rf, in_sync=v.in_sync) == dict(v.placement)
        for s, copies in v.placement.items():
            assert set(copies) == set(start[s]) or rf == 1


# ------------------------------------------------------------- when to hold


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(moves=2), "busy: 2 shard move"),
        (dict(handoffs=1), "busy: 1 primary hand-off"),
        (dict(catching_up=3), "busy: 3 replica"),
        (dict(unsettled_shards=[4, 7]), "busy: shard(s) 4, 7"),
        (dict(placement_due=True), "busy: count-based"),
        (dict(quiet_for=1.0), "settling"),
        (dict(), ""),
    ],
)
def test_hold_reason(kwargs, expected):
    args = dict(moves=0, handoffs=0, catching_up=0, unsettled_shards=[], placement_due=False, quiet_for=10.0, settle=3.0) | kwargs
    reason = hold_reason(**args)
    assert reason.startswith(expected) if expected else reason == ""


def test_replicas_one_way_hand_off_to_a_replica_that_leads_fewer():
    """A one-way hand-off to a node leading fewer never widens the spread of
    primaries, so it is allowed even from a state count balancing would change
    (after failovers a and b lead every shard; in the coordinator count balancing
    goes first, as `hold_reason` says, but the rule holds either way)."""
    view = replicated(
        {0: ("a", "c"), 1: ("a", "d"), 2: ("a", "b"), 3: ("a", "b"), 4: ("b", "a"), 5: ("b", "c"), 6: ("b", "d"), 7: ("b", "a")},
        {0: 60, 1: 90, 2: 10, 3: 10, 4: 10, 5: 10, 6: 10, 7: 10},
        ["a", "b", "c", "d"],
    )
    d = decide(view, POLICY, {}, now=0.0)
    (action,) = d.actions
    assert action.source == "a" and action.swap_with is None and action.target in ("c", "d"), d.reason
    before, after = counts(view), counts(apply(view, action))
    assert max(after.values()) - min(after.values()) <= max(before.values()) - min(before.values())
    assert after[action.source] == before[action.source] - 1 and after[action.target] == before[action.target] + 1 <= before[action.source]
    assert max(d.expected.values()) < max(d.loads.values())
    views = [NodeView(n, "healthy") for n in "abcd"]
    balanced = plan_placement(dict(view.placement), views, 8, 2, in_sync=view.in_sync)
    assert sorted(Counter(c[0] for c in balanced.values()).values()) == [2, 2, 2, 2]  # what count balancing does first


def count_round(view: LoadView, views: list[NodeView], max_handoffs: int) -> LoadView | None:
    """The coordinator's count balancing, one round: the hand-offs the target asks
    for (applied as ReplicaKeeper.promote does), or None when it has nothing to do."""
    target = plan_placement(dict(view.placement), views, len(view.placement), len(next(iter(view.placement.values()))),
                            in_sync=view.in_sync, max_handoffs=max_handoffs)
    steps = [(s, view.placement[s][0], target[s][0]) for s in sorted(target) if target[s][0] != view.placement[s][0]]
    if not steps:
        return None
    for shard_id, source, new in steps:
        assert new in view.in_sync[shard_id], "count balancing hands off only to an in-sync copy"
        view = apply(view, Action(shard_id, source, new, None, PRIMARY))
    return view


@pytest.mark.parametrize("seed", range(40))
def test_count_balancing_and_load_balancing_do_not_fight(seed):
    """After failovers (primaries crowded on a few nodes, random loads): the
    coordinator's order, count balancing while it has work and load actions
    otherwise, ends with primaries within one per node, every load action lowering
    the highest load, and count balancing never finding work again once load has
    acted: load only moves primaries within the spread rule."""
    rng = random.Random(500 + seed)
    ids = "abcde"[: rng.randint(3, 5)]
    num_shards, rf = rng.randint(len(ids), 24), rng.choice([2, 3])
    views = [NodeView(n, "healthy") for n in ids]
    copies = plan_placement({}, views, num_shards, rf)
    crowded = {s: tuple(sorted(c)) for s, c in copies.items()}  # the lowest ids lead: as after failovers
    rates = {s: rng.choice([0.0, 0.5, 2.0, 10.0, 50.0, 200.0]) * rng.random() for s in range(num_shards)}
    view = LoadView(crowded, rates, {n: None for n in ids}, replicated=True, in_sync=dict(crowded))
    load_acted, maxima = False, []
    for _ in range(100):
        after = count_round(view, views, max_handoffs=2)
        if after is not None:
            assert not load_acted, "count balancing undoes a load action"
            view = replace(after, in_sync={s: tuple(c) for s, c in after.placement.items()})  # the old primaries catch up
            continue
        d = decide(view, POLICY, {}, 0.0)
        if not d.actions:
            break
        maxima.append(max(node_loads(view).values()))
        view = replace(apply(view, d.actions[0]), in_sync={s: tuple(c) for s, c in view.placement.items()})
        load_acted = True
    else:
        raise AssertionError("no steady state")
    assert max(counts(view).values()) - min(counts(view).values()) <= 1, counts(view)
    maxima.append(max(node_loads(view).values()))
    assert all(b < a for a, b in zip(maxima, maxima[1:])), maxima
    assert {s: set(c) for s, c in view.placement.items()} == {s: set(c) for s, c in copies.items()}
