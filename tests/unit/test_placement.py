"""Table and property tests for the pure placement planner."""

from __future__ import annotations

import random

import pytest

from torua.coordinator.placement import (
    CopyMove,
    NodeView,
    Placement,
    copies_per_node,
    moves_between,
    plan_placement,
    primaries_per_node,
)

IDS = "abcdefgh"


def healthy(n: int, **overrides: dict) -> list[NodeView]:
    """n healthy nodes a, b, c...; overrides maps a node id to NodeView fields."""
    return [NodeView(i, "healthy", **overrides.get(i, {})) for i in IDS[:n]]


def active(nodes: list[NodeView]) -> list[str]:
    return [n.id for n in nodes if n.status == "healthy" and not n.draining and not n.stopping and not n.gone and n.disk != "above_high"]


def accepting(nodes: list[NodeView]) -> list[str]:
    """Active nodes that take new copies: not in maintenance, disk below the low watermark."""
    return [n.id for n in nodes if n.id in active(nodes) and not n.maintenance and n.disk == "ok"]


def spread(counts: dict[str, int], ids: list[str]) -> int:
    values = [counts.get(i, 0) for i in ids]
    return max(values) - min(values) if values else 0


def min_moves(loads: dict[str, int], ids: list[str]) -> int:
    """Fewest copies that must move for balance when the total stays fixed."""
    ordered = sorted((loads.get(i, 0) for i in ids), reverse=True)
    q, r = divmod(sum(ordered), len(ids))
    return sum(max(0, load - (q + 1 if k < r else q)) for k, load in enumerate(ordered))


def check_invariants(
    current: Placement, nodes: list[NodeView], num_shards: int, rf: int, target: Placement, in_sync: dict[int, tuple[str, ...]] | None = None
) -> None:
    """Every rule of the planner; with `in_sync`, primaries balance only over in-sync copies."""
    view = {n.id: n for n in nodes}
    act = active(nodes)
    acc = accepting(nodes)
    load = copies_per_node(target)

    def roomy(i: str) -> bool:
        cap = view[i].max_shards
        return i in acc and (cap is None or load.get(i, 0) < cap)

    assert sorted(target) == list(range(num_shards))
    for s, copies in target.items():
        assert len(set(copies)) == len(copies), f"shard {s} repeats a node: {copies}"
        assert set(copies) <= set(view), f"shard {s} on unknown node"
        before = [i for i in current.get(s, ()) if i in view]
        pinned = [i for i in before if view[i].status != "healthy" and not view[i].gone]
        assert set(pinned) <= set(copies), f"shard {s} lost a copy on a down node"
        if before and all(view[i].gone for i in before):
            assert set(copies) == set(before), f"shard {s}: only copies are gone, they must stay alone"
        for i in set(copies) - set(before):
            assert i in acc, f"new copy of {s} on ineligible {i}"
            cap = view[i].max_shards
            assert cap is None or load[i] <= cap, f"new copy of {s} pushes {i} over its cap"
        stuck = [i for i in copies if view[i].status == "healthy" and not view[i].gone
                 and (view[i].draining or view[i].disk == "above_high"
                      or (view[i].max_shards is not None and load[i] > view[i].max_shards))]
        for i in stuck:
            assert not any(roomy(j) and j not in copies for j in act), f"{s} on {i} could have moved"
        gone_only = bool(copies) and all(view[i].gone for i in copies)
        kept_down = sum(view[i].status != "healthy" or view[i].gone for i in copies)
        assert len(copies) <= max(rf, kept_down)
        if len(copies) < rf and not gone_only:
            assert not any(roomy(j) and j not in copies for j in act), f"{s} under-replicated with room"
        if any(i in act for i in copies):
            assert copies[0] in act, f"shard {s} primary {copies[0]} not on an active node"
    for a in acc:
        for b in acc:
            if roomy(b):
                assert load.get(a, 0) - load.get(b, 0) <= 1, f"unbalanced {a}={load.get(a, 0)} {b}={load.get(b, 0)}"
    prim = primaries_per_node(target)
    for s, copies in target.items():
        for b in copies[1:]:
            if copies and copies[0] in act and b in act and (in_sync is None or b in in_sync.get(s, ())):
                assert prim[copies[0]] - prim.get(b, 0) <= 1, f"shard {s}: swapping its primary to {b} would balance"
    if all(n.max_shards is None for n in nodes) and acc == act and in_sync is None:  # frozen copies may pin primaries
        assert spread(prim, [i for i in act if load.get(i)]) <= 1, f"primaries unbalanced: {prim}"


# ---------------------------------------------------------------- formation


@pytest.mark.parametrize("rf", [1, 2, 3], ids=lambda rf: f"rf{rf}")
@pytest.mark.parametrize("n", [1, 2, 3, 5], ids=lambda n: f"{n}nodes")
def test_formation_spreads_copies_and_primaries(n: int, rf: int) -> None:
    nodes = healthy(n)
    target = plan_placement({}, nodes, 16, rf)
    check_invariants({}, nodes, 16, rf, target)
    ids = active(nodes)
    assert all(len(c) == min(rf, n) for c in target.values())
    assert spread(copies_per_node(target), ids) <= 1
    assert spread(primaries_per_node(target), ids) <= 1
    assert sum(copies_per_node(target).values()) == 16 * min(rf, n)


def test_formation_three_nodes_is_six_five_five() -> None:
    target = plan_placement({}, healthy(3), 16, 1)
    assert sorted(copies_per_node(target).values(), reverse=True) == [6, 5, 5]


# ---------------------------------------------------------------- join


@pytest.mark.parametrize(
    "before, after, rf, expected_moves",
    [
        (3, 4, 1, 4),
        (3, 4, 2, 8),
        (3, 4, 3, 12),
        (1, 2, 1, 8),
        (4, 5, 2, None),
        (2, 5, 3, None),
    ],
    ids=["3to4-rf1", "3to4-rf2", "3to4-rf3", "1to2-rf1", "4to5-rf2", "2to5-rf3"],
)
def test_join_moves_only_what_balance_needs(before: int, after: int, rf: int, expected_moves: int | None) -> None:
    current = plan_placement({}, healthy(before), 16, rf)
    nodes = healthy(after)
    target = plan_placement(current, nodes, 16, rf)
    check_invariants(current, nodes, 16, rf, target)
    ids = active(nodes)
    assert spread(copies_per_node(target), ids) <= 1
    assert spread(primaries_per_node(target), ids) <= 1
    moves = moves_between(current, target)
    wanted = min_moves(copies_per_node(current), ids) if rf <= before else None
    if expected_moves is not None:
        assert len(moves) == expected_moves
    if wanted is not None:
        assert len(moves) == wanted
    assert all(m.target in IDS[before:after] or rf > before for m in moves)


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("status", ["unhealthy", "unknown"])
def test_down_node_keeps_its_only_copies(status: str) -> None:
    current = plan_placement({}, healthy(3), 16, 1)
    nodes = healthy(2) + [NodeView("c", status)]
    target = plan_placement(current, nodes, 16, 1)
    assert target == current
    assert moves_between(current, target) == []


def test_down_node_with_replicas_keeps_copies_and_fails_over_primaries() -> None:
    current = plan_placement({}, healthy(3), 16, 2)
    nodes = healthy(2) + [NodeView("c", "unhealthy")]
    target = plan_placement(current, nodes, 16, 2)
    check_invariants(current, nodes, 16, 2, target)
    assert {s: set(c) for s, c in target.items()} == {s: set(c) for s, c in current.items()}
    assert "c" not in primaries_per_node(target)
    assert moves_between(current, target) == []


@pytest.mark.parametrize("rf", [1, 2], ids=lambda rf: f"rf{rf}")
def test_lone_copy_on_down_node_is_not_reopened_empty(rf: int) -> None:
    nodes = [NodeView("a", "healthy"), NodeView("b", "unhealthy")]
    target = plan_placement({0: ("b",)}, nodes, 1, rf)
    assert target == {0: ("b",)} if rf == 1 else target == {0: ("a", "b")}


def test_gone_node_with_rf1_keeps_its_only_copies() -> None:
    current = plan_placement({}, healthy(3), 16, 1)
    nodes = healthy(2) + [NodeView("c", "unhealthy", gone=True)]
    target = plan_placement(current, nodes, 16, 1)
    assert target == current


def test_gone_node_with_rf2_has_its_copies_rebuilt_elsewhere() -> None:
    current = plan_placement({}, healthy(4), 16, 2)
    nodes = healthy(3) + [NodeView("d", "unhealthy", gone=True)]
    target = plan_placement(current, nodes, 16, 2)
    check_invariants(current, nodes, 16, 2, target)
    assert "d" not in copies_per_node(target)
    assert all(len(c) == 2 for c in target.values())
    assert spread(copies_per_node(target), ["a", "b", "c"]) <= 1
    lost = sum("d" in c for c in current.values())
    assert len(moves_between(current, target)) == lost


def test_replicas_of_one_node_spread_over_all_others() -> None:
    target = plan_placement({}, healthy(4), 16, 2)
    partners = {i for c in target.values() if "d" in c for i in c if i != "d"}
    assert partners == {"a", "b", "c"}  # so losing d spreads the rebuild over every survivor


def test_all_copies_gone_waits_without_new_copies() -> None:
    nodes = [NodeView("a", "healthy"), NodeView("g", "unhealthy", gone=True), NodeView("h", "unhealthy", gone=True)]
    current = {0: ("g", "h"), 1: ("g",)}
    assert plan_placement(current, nodes, 2, 3) == current


# ---------------------------------------------------------------- draining and caps


@pytest.mark.parametrize("rf", [1, 2], ids=lambda rf: f"rf{rf}")
def test_draining_node_is_emptied(rf: int) -> None:
    current = plan_placement({}, healthy(3), 16, rf)
    nodes = healthy(3, c={"draining": True})
    target = plan_placement(current, nodes, 16, rf)
    check_invariants(current, nodes, 16, rf, target)
    assert "c" not in copies_per_node(target)
    assert len(moves_between(current, target)) == copies_per_node(current)["c"]


@pytest.mark.parametrize(
    "caps, expected_on_c",
    [({"a": 6, "b": 5}, 5), ({"a": 7, "b": 6}, 3), ({"a": 0, "b": 0}, 5)],
    ids=["no-room", "partial-room", "zero-caps"],
)
def test_draining_without_room_keeps_copies(caps: dict[str, int], expected_on_c: int) -> None:
    current = plan_placement({}, healthy(3), 16, 1)
    overrides = {i: {"max_shards": cap} for i, cap in caps.items()} | {"c": {"draining": True}}
    nodes = healthy(3, **overrides)
    target = plan_placement(current, nodes, 16, 1)
    check_invariants(current, nodes, 16, 1, target)
    assert copies_per_node(target).get("c", 0) == expected_on_c


@pytest.mark.parametrize(
    "caps, rf, placed_copies",
    [
        ({"a": 4, "b": 4, "c": 4}, 1, 12),
        ({"a": 2, "b": 10, "c": 10}, 1, 16),
        ({"a": 8, "b": 8, "c": 8}, 2, 24),
        ({"a": 3}, 1, 16),
        ({"a": 0, "b": 0, "c": 0}, 1, 0),
    ],
    ids=["short-capacity", "one-small-node", "rf2-short", "one-capped", "no-capacity"],
)
def test_max_shards_is_never_exceeded(caps: dict[str, int], rf: int, placed_copies: int) -> None:
    nodes = healthy(3, **{i: {"max_shards": cap} for i, cap in caps.items()})
    target = plan_placement({}, nodes, 16, rf)
    check_invariants({}, nodes, 16, rf, target)
    load = copies_per_node(target)
    assert all(load.get(i, 0) <= cap for i, cap in caps.items())
    assert sum(load.values()) == placed_copies
    assert sum(1 for c in target.values() if c) == min(16, placed_copies)  # first copies before second ones


def test_copies_over_a_lowered_cap_move_off() -> None:
    current = plan_placement({}, healthy(3), 16, 1)
    nodes = healthy(3, a={"max_shards": 2})
    target = plan_placement(current, nodes, 16, 1)
    check_invariants(current, nodes, 16, 1, target)
    assert copies_per_node(target) == {"a": 2, "b": 7, "c": 7}


# ---------------------------------------------------------------- disk watermarks and maintenance

LOW, HIGH = {"disk": "above_low"}, {"disk": "above_high"}
MAINT = {"maintenance": True}


@pytest.mark.parametrize("rf", [1, 2], ids=lambda rf: f"rf{rf}")
@pytest.mark.parametrize("flags", [LOW, MAINT, LOW | MAINT], ids=["above-low", "maintenance", "both"])
def test_node_that_takes_nothing_new_gets_no_copy_when_joining(flags: dict, rf: int) -> None:
    current = plan_placement({}, healthy(2), 16, rf)
    nodes = healthy(3, c=flags)
    target = plan_placement(current, nodes, 16, rf)
    check_invariants(current, nodes, 16, rf, target)
    assert "c" not in copies_per_node(target)
    assert target == current


@pytest.mark.parametrize("flags", [LOW, MAINT], ids=["above-low", "maintenance"])
def test_node_that_takes_nothing_new_keeps_and_serves_its_copies(flags: dict) -> None:
    current = {s: ("a",) for s in range(10)} | {s: ("b",) for s in range(10, 12)}
    nodes = [NodeView("a", "healthy", **flags), NodeView("b", "healthy"), NodeView("c", "healthy")]
    target = plan_placement(current, nodes, 12, 1)
    check_invariants(current, nodes, 12, 1, target)
    assert copies_per_node(target) == {"a": 10, "b": 1, "c": 1}  # a keeps all 10, not moved for balance
    assert primaries_per_node(target)["a"] == 10


def test_formation_skips_nodes_above_low_watermark_or_in_maintenance() -> None:
    nodes = healthy(4, a=LOW, b=MAINT)
    target = plan_placement({}, nodes, 16, 1)
    check_invariants({}, nodes, 16, 1, target)
    assert copies_per_node(target) == {"c": 8, "d": 8}


@pytest.mark.parametrize("rf", [1, 2], ids=lambda rf: f"rf{rf}")
def test_node_above_high_watermark_is_emptied_when_there_is_room(rf: int) -> None:
    current = plan_placement({}, healthy(3), 16, rf)
    nodes = healthy(3, c=HIGH)
    target = plan_placement(current, nodes, 16, rf)
    check_invariants(current, nodes, 16, rf, target)
    assert "c" not in copies_per_node(target)
    assert len(moves_between(current, target)) == copies_per_node(current)["c"]
    assert all(len(c) == min(rf, 2) for c in target.values())


@pytest.mark.parametrize(
    "others, rf",
    [
        ({"a": HIGH, "b": HIGH}, 1),
        ({"a": LOW, "b": MAINT}, 1),
        ({"a": {"max_shards": 6}, "b": {"max_shards": 5}}, 1),
        ({}, 3),
    ],
    ids=["all-above-high", "others-take-nothing", "others-full", "rf3-needs-every-node"],
)
def test_nothing_moves_off_a_node_above_high_watermark_without_room(others: dict, rf: int) -> None:
    current = plan_placement({}, healthy(3), 16, rf)
    nodes = healthy(3, c=HIGH, **others)
    target = plan_placement(current, nodes, 16, rf)
    check_invariants(current, nodes, 16, rf, target)
    assert {s: set(c) for s, c in target.items()} == {s: set(c) for s, c in current.items()}
    assert moves_between(current, target) == []


def test_node_above_high_watermark_moves_only_what_fits() -> None:
    current = plan_placement({}, healthy(3), 16, 1)  # a 6, b 5, c 5
    nodes = healthy(3, a={"max_shards": 7}, b={"max_shards": 6}, c=HIGH)
    target = plan_placement(current, nodes, 16, 1)
    check_invariants(current, nodes, 16, 1, target)
    assert copies_per_node(target) == {"a": 7, "b": 6, "c": 3}


def test_replicated_shard_primary_leaves_a_node_above_high_watermark_even_without_room() -> None:
    current = {s: ("c", "a") for s in range(4)}
    nodes = [NodeView("a", "healthy"), NodeView("c", "healthy", disk="above_high")]
    target = plan_placement(current, nodes, 4, 2)
    assert target == {s: ("a", "c") for s in range(4)}  # the copy stays, the primary moves by hand-off


@pytest.mark.parametrize(
    "overrides, rf",
    [
        ({"a": {"max_shards": 2}}, 1),
        ({"a": {"max_shards": 2, "maintenance": True}, "b": {"max_shards": 3}}, 2),
        ({"a": {"max_shards": 1}, "b": {"max_shards": 4, "disk": "above_low"}, "c": {"max_shards": 9}}, 2),
        ({"a": {"max_shards": 3}, "b": {"max_shards": 3}, "c": {"max_shards": 3, "disk": "above_high"}}, 1),
    ],
    ids=["one-capped", "capped-maintenance", "caps-and-low", "caps-and-high"],
)
def test_max_shards_is_never_exceeded_with_watermarks_and_maintenance(overrides: dict, rf: int) -> None:
    nodes = healthy(4, **overrides)
    for current in ({}, plan_placement({}, healthy(4), 16, rf)):
        target = plan_placement(current, nodes, 16, rf)
        check_invariants(current, nodes, 16, rf, target)
        load = copies_per_node(target)
        for node in nodes:
            if node.max_shards is not None and load.get(node.id, 0) > node.max_shards:
                # only copies it already held may stay above the cap, when they cannot move
                assert load[node.id] <= copies_per_node(current).get(node.id, 0)
        assert plan_placement(target, nodes, 16, rf) == target


@pytest.mark.parametrize("seed", range(6))
def test_random_inputs_with_watermarks_and_maintenance_hold_invariants(seed: int) -> None:
    rng = random.Random(2000 + seed)
    for _ in range(150):
        current, nodes, num_shards, rf = random_case(rng)
        nodes = [
            NodeView(n.id, n.status, n.draining, n.gone, n.max_shards,
                     maintenance=rng.random() < 0.2, disk=rng.choice(["ok"] * 4 + ["above_low", "above_high"]),
                     stopping=rng.random() < 0.1)
            for n in nodes
        ]
        target = plan_placement(current, nodes, num_shards, rf)
        check_invariants(current, nodes, num_shards, rf, target)
        assert plan_placement(target, nodes, num_shards, rf) == target, "plan(plan(x)) != plan(x)"
        assert plan_placement(current, list(reversed(nodes)), num_shards, rf) == target, "depends on node order"


# ---------------------------------------------------------------- shapes and edge cases


@pytest.mark.parametrize("n, rf", [(1, 3), (2, 3), (3, 3)], ids=["1node-rf3", "2nodes-rf3", "3nodes-rf3"])
def test_copies_are_on_distinct_nodes(n: int, rf: int) -> None:
    target = plan_placement({}, healthy(n), 16, rf)
    assert all(len(c) == len(set(c)) == min(n, rf) for c in target.values())


@pytest.mark.parametrize(
    "current",
    [{}, {0: ("a",), 1: ("a", "b")}],
    ids=["empty", "stale-copies"],
)
def test_no_nodes_leaves_everything_unassigned(current: Placement) -> None:
    assert plan_placement(current, [], 4, 2) == {0: (), 1: (), 2: (), 3: ()}


def test_unknown_node_ids_are_dropped_and_replaced() -> None:
    current = {0: ("x", "a"), 1: ("x",), 2: ("y", "z"), 7: ("a",)}
    target = plan_placement(current, healthy(2), 3, 2)
    check_invariants(current, healthy(2), 3, 2, target)
    assert set(copies_per_node(target)) == {"a", "b"}
    assert target[0][0] == "a"  # the surviving copy becomes the primary
    assert 7 not in target


def test_lowered_rf_trims_extra_copies() -> None:
    current = plan_placement({}, healthy(3), 6, 3)
    target = plan_placement(current, healthy(3), 6, 1)
    check_invariants(current, healthy(3), 6, 1, target)
    assert all(len(c) == 1 for c in target.values())
    assert spread(copies_per_node(target), ["a", "b", "c"]) <= 1


def test_a_stopping_node_keeps_its_copies_and_leads_nothing() -> None:
    current = plan_placement({}, healthy(3), 16, 2)
    nodes = healthy(3, c={"stopping": True})
    target = plan_placement(current, nodes, 16, 2)
    check_invariants(current, nodes, 16, 2, target)
    assert {s: set(c) for s, c in target.items()} == {s: set(c) for s, c in current.items()}
    assert "c" not in primaries_per_node(target)
    assert spread(primaries_per_node(target), ["a", "b"]) <= 1


def test_primaries_are_rebalanced_by_swapping_not_moving() -> None:
    current = {s: ("a", "b") for s in range(8)}
    target = plan_placement(current, healthy(2), 8, 2)
    assert primaries_per_node(target) == {"a": 4, "b": 4}
    assert moves_between(current, target) == []


def test_fresh_shard_primary_goes_to_node_with_fewest_primaries() -> None:
    current = {0: ("a", "b"), 1: ("a", "b"), 2: ()}
    target = plan_placement(current, healthy(2), 3, 2)
    assert target[2][0] == "b"
    assert primaries_per_node(target) == {"a": 1, "b": 2} or primaries_per_node(target) == {"a": 2, "b": 1}


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError):
        plan_placement({}, healthy(1), 4, 0)


# ---------------------------------------------------------------- moves_between


@pytest.mark.parametrize(
    "current, target, expected",
    [
        ({0: ("a",)}, {0: ("a",)}, []),
        ({0: ("a",)}, {0: ("b",)}, [CopyMove(0, "a", "b")]),
        ({0: ()}, {0: ("b", "a")}, [CopyMove(0, None, "a"), CopyMove(0, None, "b")]),
        ({}, {1: ("c",), 0: ("b",)}, [CopyMove(0, None, "b"), CopyMove(1, None, "c")]),
        ({0: ("a", "b")}, {0: ("b", "c")}, [CopyMove(0, "a", "c")]),
        ({0: ("a", "b")}, {0: ("b", "a")}, []),
        ({0: ("a",), 1: ("b",)}, {0: ("a", "d", "c"), 1: ("c",)},
         [CopyMove(0, "a", "c"), CopyMove(0, "a", "d"), CopyMove(1, "b", "c")]),
    ],
    ids=["unchanged", "move", "fresh", "fresh-missing-shard", "replace-replica", "primary-swap", "sorted"],
)
def test_moves_between(current: Placement, target: Placement, expected: list[CopyMove]) -> None:
    assert moves_between(current, target) == expected


# ---------------------------------------------------------------- properties over random inputs


def random_case(rng: random.Random) -> tuple[Placement, list[NodeView], int, int]:
    nodes = []
    for i in IDS[: rng.randint(0, 7)]:
        status = rng.choice(["healthy"] * 4 + ["unhealthy", "unknown"])
        nodes.append(NodeView(
            i,
            status,
            draining=rng.random() < 0.15,
            gone=status != "healthy" and rng.random() < 0.4,
            max_shards=rng.choice([None, None, None, 0, 1, 3, 5, 8]),
        ))
    rng.shuffle(nodes)
    num_shards, rf = rng.randint(0, 24), rng.randint(1, 3)
    pool = [n.id for n in nodes] + ["x", "y"]
    current = {
        s: tuple(rng.sample(pool, rng.randint(0, min(len(pool), rf + 1))))
        for s in range(num_shards + 2) if rng.random() < 0.8
    }
    return current, nodes, num_shards, rf


@pytest.mark.parametrize("seed", range(8))
def test_random_inputs_hold_invariants_and_are_stable(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        current, nodes, num_shards, rf = random_case(rng)
        target = plan_placement(current, nodes, num_shards, rf)
        check_invariants(current, nodes, num_shards, rf, target)
        assert plan_placement(target, nodes, num_shards, rf) == target, "plan(plan(x)) != plan(x)"
        assert plan_placement(current, list(reversed(nodes)), num_shards, rf) == target, "depends on node order"


@pytest.mark.parametrize("seed", range(4))
def test_random_healthy_clusters_balance_primaries(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(100):
        nodes = healthy(rng.randint(1, 7))
        num_shards, rf = rng.randint(1, 32), rng.randint(1, 3)
        pool = [n.id for n in nodes]
        current = {s: tuple(rng.sample(pool, rng.randint(0, min(len(pool), rf)))) for s in range(num_shards)}
        target = plan_placement(current, nodes, num_shards, rf)
        check_invariants(current, nodes, num_shards, rf, target)
        holders = [i for i in pool if copies_per_node(target).get(i)]
        assert spread(primaries_per_node(target), holders) <= 1


# ---------------------------------------------------------------- primaries and the in-sync set


def after_failovers() -> tuple[Placement, dict[int, tuple[str, ...]]]:
    """16 shards, rf 2, copies 11/11/10: a leads 11, b 5, c none; every copy in sync."""
    current = {s: ("a", "b" if s < 6 else "c") for s in range(11)} | {s: ("b", "c") for s in range(11, 16)}
    return current, dict(current)


def test_after_failovers_the_target_balances_primaries_over_in_sync_copies() -> None:
    current, in_sync = after_failovers()
    target = plan_placement(current, healthy(3), 16, 2, in_sync=in_sync)
    assert primaries_per_node(current) == {"a": 11, "b": 5}
    assert primaries_per_node(target) == {"a": 6, "b": 5, "c": 5}
    assert moves_between(current, target) == []
    changed = [s for s in target if target[s][0] != current[s][0]]
    assert len(changed) == 5 and all(target[s][0] == "c" for s in changed)  # a gives c 5: the fewest hand-offs


@pytest.mark.parametrize(
    "current, in_sync, expected",
    [
        ({0: ("a", "b"), 1: ("a", "b")}, {0: ("a", "b"), 1: ("a", "b")}, {"a": 1, "b": 1}),
        ({0: ("a", "b"), 1: ("a", "b")}, {0: ("a",), 1: ("a",)}, {"a": 2}),
        ({0: ("a", "b"), 1: ("a", "b")}, {0: ("a",), 1: ("a", "b")}, {"a": 1, "b": 1}),
        ({0: ("a", "b"), 1: ("a", "b")}, {}, {"a": 1, "b": 1}),
        ({s: ("a", "b") for s in range(4)}, {s: ("a",) for s in range(4)}, {"a": 4}),
        ({s: ("a", "b") for s in range(4)}, {0: ("a", "b"), 1: ("a",), 2: ("a", "b"), 3: ("a",)}, {"a": 2, "b": 2}),
    ],
    ids=["all-in-sync", "replica-behind", "one-in-sync", "not-given-any-copy", "none-in-sync", "half-in-sync"],
)
def test_a_primary_changes_only_to_an_in_sync_copy(current: Placement, in_sync: dict, expected: dict) -> None:
    nodes = healthy(2)
    target = plan_placement(current, nodes, len(current), 2, in_sync=in_sync)
    assert primaries_per_node(target) == expected
    for s, copies in target.items():
        if copies[0] != current[s][0] and s in in_sync:
            assert copies[0] in in_sync[s]


def test_a_leaving_primary_goes_to_an_in_sync_copy_when_there_is_one() -> None:
    current = {0: ("a", "b", "c")}
    nodes = healthy(3, a={"draining": True})
    assert plan_placement(current, nodes, 1, 3)[0][0] == "b"
    target = plan_placement(current, healthy(4, a={"draining": True}), 1, 3, in_sync={0: ("a", "c")})
    assert target[0][0] == "c"  # b is behind; and a's copy goes to d, which is empty yet


@pytest.mark.parametrize("max_handoffs", [1, 2, 3, 5, 8])
def test_max_handoffs_bounds_the_primaries_changed_for_balance(max_handoffs: int) -> None:
    current, in_sync = after_failovers()
    target = plan_placement(current, healthy(3), 16, 2, in_sync=in_sync, max_handoffs=max_handoffs)
    changed = [s for s in target if target[s][0] != current[s][0]]
    assert len(changed) == min(max_handoffs, 5)


def test_a_chain_longer_than_max_handoffs_still_goes() -> None:
    """a leads 3, b 2, c 0; c's only in-sync copies are of b's shards: the only way
    is a chain a -> b -> c (two hand-offs). With max_handoffs 1 it still goes, or the
    balance would never progress."""
    current = {0: ("a", "b"), 1: ("a", "b"), 2: ("a", "b"), 3: ("b", "c"), 4: ("b", "c")}
    target = plan_placement(current, healthy(3), 5, 2, in_sync=current, max_handoffs=1)
    assert primaries_per_node(target) == {"a": 2, "b": 2, "c": 1}
    assert sum(target[s][0] != current[s][0] for s in current) == 2


def test_primaries_that_must_leave_do_not_use_up_max_handoffs() -> None:
    current = {0: ("c", "a"), 1: ("c", "b"), 2: ("a", "b"), 3: ("a", "b"), 4: ("a", "b")}
    nodes = healthy(3, c={"stopping": True})
    target = plan_placement(current, nodes, 5, 2, in_sync=current, max_handoffs=1)
    assert target[0][0] == "a" and target[1][0] == "b"  # forced, not counted
    assert primaries_per_node(target) == {"a": 3, "b": 2}  # and one hand-off a -> b for balance


def random_replicated(rng: random.Random) -> tuple[Placement, list[NodeView], int, int, dict[int, tuple[str, ...]]]:
    """Copies as the planner would leave them, random primaries among them (crowding the
    first nodes), random in-sync sets (the primary always in), random node states."""
    states = [{}] * 6 + [{"maintenance": True}, {"disk": "above_low"}, {"stopping": True}, {"draining": True}, {"disk": "above_high"}]
    ids = IDS[: rng.randint(2, 7)]
    nodes = [NodeView(i, "healthy" if rng.random() < 0.9 else "unhealthy", **rng.choice(states)) for i in ids]
    num_shards, rf = rng.randint(1, 32), rng.randint(2, 3)
    copies = plan_placement({}, healthy(len(ids)), num_shards, rf)
    current, in_sync = {}, {}
    for s, c in copies.items():
        c = list(c)
        first = min(c) if rng.random() < 0.6 else rng.choice(c)
        current[s] = (first, *[n for n in c if n != first])
        in_sync[s] = (first, *[n for n in c if n != first and rng.random() < 0.7])
    return current, nodes, num_shards, rf, in_sync


@pytest.mark.parametrize("seed", range(6))
def test_random_in_sync_sets_hold_invariants(seed: int) -> None:
    rng = random.Random(3000 + seed)
    for _ in range(120):
        current, nodes, num_shards, rf, in_sync = random_replicated(rng)
        act = active(nodes)
        target = plan_placement(current, nodes, num_shards, rf, in_sync=in_sync)
        check_invariants(current, nodes, num_shards, rf, target, in_sync)
        assert plan_placement(target, nodes, num_shards, rf, in_sync=in_sync) == target, "plan(plan(x)) != plan(x)"
        prim = primaries_per_node(target)
        for s, copies in target.items():
            if copies[0] != current[s][0] and current[s][0] in act and set(copies) == set(current[s]):
                assert copies[0] in in_sync[s], f"shard {s}: primary handed to {copies[0]}, not in sync"
            if copies[0] in act:
                for b in copies[1:]:
                    if b in act and b in in_sync[s]:
                        assert prim[copies[0]] - prim.get(b, 0) <= 1, f"shard {s}: handing it to {b} would balance"
        for k in (1, 2, 3):
            bounded = plan_placement(current, nodes, num_shards, rf, in_sync=in_sync, max_handoffs=k)
            assert {s: set(c) for s, c in bounded.items()} == {s: set(c) for s, c in target.items()}
            kept = [s for s in current if current[s][0] in act and current[s][0] in bounded[s]]
            changed = sum(bounded[s][0] != current[s][0] for s in kept)
            assert changed <= max(k, len(act) - 1), (k, changed)


def test_primary_rounds_converge_to_the_unbounded_target_counts() -> None:
    """Planning with max_handoffs over and over (every copy in sync, the target taken
    at once) ends as balanced as one unbounded plan; every round that only changes
    primaries lowers the sum of squared primaries per active node."""
    rng = random.Random(77)
    for _ in range(60):
        current, nodes, num_shards, rf, _ = random_replicated(rng)
        act = active(nodes)
        full = plan_placement(current, nodes, num_shards, rf, in_sync=current)

        def squares(p: Placement) -> int:
            return sum(v * v for n, v in primaries_per_node(p).items() if n in act)

        placement = current
        for _ in range(40):
            nxt = plan_placement(placement, nodes, num_shards, rf, in_sync=placement, max_handoffs=2)
            if nxt == placement:
                break
            same_copies = {s: set(c) for s, c in nxt.items()} == {s: set(c) for s, c in placement.items()}
            if same_copies and all(c[0] in act for c in placement.values()):
                assert squares(nxt) < squares(placement)
            placement = nxt
        else:
            raise AssertionError("no steady state")
        assert sorted(primaries_per_node(placement).values()) == sorted(primaries_per_node(full).values())
