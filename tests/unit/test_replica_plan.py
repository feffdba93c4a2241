"""Table and property tests for stepping replicated shards toward their target,
and for balancing primaries by planned hand-off."""

import random
from collections import Counter
from dataclasses import replace

import pytest

from torua.coordinator.placement import NodeView, plan_placement
from torua.coordinator.replica_plan import catching_up, plan_replica_changes, target_for
from torua.protocol.messages import ShardEntry, ShardMap

H = {"a": "healthy", "b": "healthy", "c": "healthy", "d": "healthy"}


def m(*entries: ShardEntry) -> ShardMap:
    return ShardMap(epoch=5, num_shards=len(entries), replication_factor=2, shards=list(entries))


@pytest.mark.parametrize(
    "entry,target,health,budget,adds,removes,handoffs",
    [
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("a", "b"), H, 2, {}, {}, {}, id="already-there"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("a", "c"), H, 2, {0: ["c"]}, {}, {}, id="add-new-copy-first"),
        pytest.param(ShardEntry(0, "a", ["b", "c"], ["a", "b"]), ("a", "c"), H, 2, {}, {}, {}, id="wait-until-new-copy-in-sync"),
        pytest.param(ShardEntry(0, "a", ["b", "c"], ["a", "b", "c"]), ("a", "c"), H, 2, {}, {0: ["b"]}, {}, id="remove-once-in-sync"),
        pytest.param(ShardEntry(0, "a", ["b", "c"], ["a", "b", "c"]), ("b", "c"), H, 2, {}, {}, {0: "b"}, id="hand-off-a-leaving-primary"),
        pytest.param(ShardEntry(0, "a", ["b", "c"], ["a", "b", "c"]), ("c", "b"), {**H, "b": "unhealthy"}, 2, {}, {}, {}, id="no-handoff-to-an-unhealthy-copy"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("a", "c"), H, 0, {}, {}, {}, id="no-budget-no-add"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("a", "b", "c"), H, 2, {0: ["c"]}, {}, {}, id="replication-factor-up"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("a",), H, 2, {}, {0: ["b"]}, {}, id="replication-factor-down"),
        pytest.param(ShardEntry(0, "a", ["b", "c"], ["a", "b", "c"]), ("c", "b"), H, 2, {}, {}, {0: "c"}, id="a-leaving-primary-goes-where-the-target-says"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("b", "a"), H, 2, {}, {}, {0: "b"}, id="hand-off-to-balance-primaries"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("b", "a"), H, 0, {}, {}, {0: "b"}, id="a-hand-off-copies-nothing-so-needs-no-copy-budget"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a"]), ("b", "a"), H, 2, {}, {}, {}, id="no-balance-hand-off-to-a-copy-not-in-sync"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("b", "a"), {**H, "b": "unhealthy"}, 2, {}, {}, {}, id="no-balance-hand-off-to-an-unhealthy-copy"),
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("b", "a"), {**H, "a": "unhealthy"}, 2, {}, {}, {}, id="an-unhealthy-primary-is-failover's-job"),
        pytest.param(ShardEntry(0, "a", ["b", "c"], ["a", "b", "c"]), ("b", "a", "d"), H, 2, {0: ["d"]}, {}, {}, id="copies-first-then-the-primary"),
        pytest.param(ShardEntry(0), ("a", "b"), H, 2, {}, {}, {}, id="unplaced-shards-are-formation's-job"),
        pytest.param(ShardEntry(0, "a", [], ["a"], "moving", target="c"), ("a", "c"), H, 2, {}, {}, {}, id="a-moving-shard's-target-is-not-added-as-a-replica"),
    ],
)
def test_plan_replica_changes(entry, target, health, budget, adds, removes, handoffs):
    changes = plan_replica_changes(m(entry), {0: target}, health, budget)
    assert (changes.adds, changes.removes, changes.handoffs) == (adds, removes, handoffs)


def test_budget_counts_copies_already_catching_up():
    shards = m(ShardEntry(0, "a", ["b", "c"], ["a", "b"]), ShardEntry(1, "a", ["b"], ["a", "b"]), ShardEntry(2, "b", ["a"], ["b", "a"]))
    assert catching_up(shards, H) == 1
    assert catching_up(shards, {**H, "c": "unhealthy"}) == 0
    changes = plan_replica_changes(shards, {0: ("a", "c"), 1: ("a", "d"), 2: ("b", "d")}, H, 2)
    assert changes.adds == {1: ["d"]}


def test_copies_on_dead_nodes_do_not_use_up_the_budget():
    shards = m(ShardEntry(0, "a", ["c"], ["a"]), ShardEntry(1, "b", ["c"], ["b"]), ShardEntry(2, "a", ["c"], ["a", "c"]))
    health = {**H, "c": "unhealthy"}
    changes = plan_replica_changes(shards, {0: ("a", "b"), 1: ("b", "a"), 2: ("a", "b")}, health, 2)
    assert changes.adds == {0: ["b"], 1: ["a"]}


# ------------------------------------------------- primaries balanced by hand-off
#
# The coordinator's loop in miniature: plan the target from the map (`target_for`),
# take the steps `plan_replica_changes` returns, and apply each hand-off as
# ReplicaKeeper.promote does (the new primary first; the old one stays a replica,
# out of sync until it has caught up).

def hand_off(shard_map: ShardMap, shard_id: int, new: str) -> ShardMap:
    e = shard_map.shards[shard_id]
    old = e.primary
    shards = list(shard_map.shards)
    shards[shard_id] = replace(
        e, primary=new, replicas=[old] + [r for r in e.replicas if r not in (new, old)], in_sync=[new] + [n for n in e.in_sync if n not in (new, old)]
    )
    return replace(shard_map, epoch=shard_map.epoch + 1, shards=shards)


def caught_up(shard_map: ShardMap, nodes: set[str]) -> ShardMap:
    """Every copy on `nodes` back in its shard's in-sync set."""
    shards = [replace(e, in_sync=e.in_sync + [n for n in e.replicas if n in nodes and n not in e.in_sync]) for e in shard_map.shards]
    return replace(shard_map, shards=shards)


def led(shard_map: ShardMap, ids) -> dict[str, int]:
    counts = Counter(e.primary for e in shard_map.shards)
    return {n: counts.get(n, 0) for n in ids}


def spread_of(counts: dict[str, int]) -> int:
    return max(counts.values()) - min(counts.values())


def change_copies(shard_map: ShardMap, adds: dict[int, list[str]], removes: dict[int, list[str]]) -> ShardMap:
    """Copies added (filled and in sync at once, for brevity) and removed."""
    shards = list(shard_map.shards)
    for shard_id, nodes in adds.items():
        e = shards[shard_id]
        shards[shard_id] = replace(e, replicas=e.replicas + nodes, in_sync=e.in_sync + nodes)
    for shard_id, nodes in removes.items():
        e = shards[shard_id]
        shards[shard_id] = replace(e, replicas=[n for n in e.replicas if n not in nodes], in_sync=[n for n in e.in_sync if n not in nodes])
    return replace(shard_map, shards=shards)


def rounds(
    shard_map: ShardMap, views: list[NodeView], max_handoffs: int, catch_up: bool = True, copies: bool = False, limit: int = 50
) -> tuple[ShardMap, list[dict[int, str]]]:
    """Plan and step until nothing is left to do; each round's hand-offs. Without
    `copies`, a copy to add or remove fails the test."""
    health = {v.id: v.status for v in views}
    done: list[dict[int, str]] = []
    for _ in range(limit):
        changes = plan_replica_changes(shard_map, target_for(shard_map, views, max_handoffs), health, max_handoffs)
        assert copies or not (changes.adds or changes.removes), f"only primaries change here: {changes}"
        if changes.empty():
            return shard_map, done
        shard_map = change_copies(shard_map, changes.adds, changes.removes)
        for shard_id, new in changes.handoffs.items():
            shard_map = hand_off(shard_map, shard_id, new)
        if catch_up:
            shard_map = caught_up(shard_map, {v.id for v in views})
        done.append(changes.handoffs)
    raise AssertionError(f"no steady state after {limit} rounds")


def after_failovers() -> ShardMap:
    """16 shards, rf 2, copies 11/11/10, after failovers: n1 leads 11, n2 5, n3 none,
    every copy in sync."""
    shards = [ShardEntry(s, "n1", ["n2" if s < 6 else "n3"], []) for s in range(11)]
    shards += [ShardEntry(s, "n2", ["n3"], []) for s in range(11, 16)]
    shards = [replace(e, in_sync=list(e.copies), state="active") for e in shards]
    return ShardMap(epoch=40, num_shards=16, replication_factor=2, shards=shards)


N3 = [NodeView("n1", "healthy"), NodeView("n2", "healthy"), NodeView("n3", "healthy")]


def test_after_failovers_primaries_are_handed_off_until_within_one():
    start = after_failovers()
    assert led(start, ["n1", "n2", "n3"]) == {"n1": 11, "n2": 5, "n3": 0}
    end, done = rounds(start, N3, max_handoffs=2)
    assert spread_of(led(end, ["n1", "n2", "n3"])) <= 1, led(end, ["n1", "n2", "n3"])
    assert all(len(r) <= 2 for r in done), done  # a bounded number at once
    assert sum(len(r) for r in done) == 5  # n1 gives 5 to n3 (11/5/0 -> 6/5/5), no more
    assert {e.shard_id: set(e.copies) for e in end.shards} == {e.shard_id: set(e.copies) for e in start.shards}  # no copy moved


@pytest.mark.parametrize("max_handoffs", [1, 2, 4, 16])
def test_the_number_of_hand_offs_at_once_is_bounded(max_handoffs):
    end, done = rounds(after_failovers(), N3, max_handoffs)
    assert all(len(r) <= max_handoffs for r in done), done
    assert len(done) == -(-5 // max_handoffs)  # ceil: each round takes as many as it may
    assert spread_of(led(end, ["n1", "n2", "n3"])) <= 1


def test_a_node_not_in_sync_yet_gets_no_primary_until_it_is():
    start = after_failovers()
    behind = replace(start, shards=[replace(e, in_sync=[n for n in e.in_sync if n != "n3"]) for e in start.shards])
    end, done = rounds(behind, N3, max_handoffs=2, catch_up=False)
    assert led(end, ["n1", "n2", "n3"]) == {"n1": 8, "n2": 8, "n3": 0}  # balanced as far as in-sync copies allow
    assert all(new != "n3" for r in done for new in r.values())
    end, _ = rounds(caught_up(end, {"n1", "n2", "n3"}), N3, max_handoffs=2)
    assert spread_of(led(end, ["n1", "n2", "n3"])) <= 1


# What each state of n3 means for the primaries (ARCHITECTURE.md, Placement):
# maintenance and disk above the low watermark keep their copies and take part in
# the balance of primaries; stopping keeps its copies and leads nothing; draining
# and disk above the high watermark lead nothing and their copies move off (n1 and
# n2 may hold both copies of every shard).
STATES = [
    ("healthy", {}, True, False),
    ("maintenance", {"maintenance": True}, True, False),
    ("disk-above-low", {"disk": "above_low"}, True, False),
    ("stopping", {"stopping": True}, False, False),
    ("disk-above-high", {"disk": "above_high"}, False, True),
    ("draining", {"draining": True}, False, True),
]


@pytest.mark.parametrize("flags, leads, copies_leave", [s[1:] for s in STATES], ids=[s[0] for s in STATES])
def test_node_states_and_primaries(flags, leads, copies_leave):
    views = [NodeView("n1", "healthy"), NodeView("n2", "healthy"), NodeView("n3", "healthy", **flags)]
    start = after_failovers()
    end, done = rounds(start, views, max_handoffs=2, copies=copies_leave)
    counts = led(end, ["n1", "n2", "n3"])
    if leads:
        assert spread_of(counts) <= 1, counts
    else:
        assert counts == {"n1": 8, "n2": 8, "n3": 0}, counts
    held_by_n3 = {e.shard_id for e in end.shards if "n3" in e.copies}
    if copies_leave:
        assert held_by_n3 == set()
        assert all(sorted(e.copies) == ["n1", "n2"] for e in end.shards)
    else:
        assert {e.shard_id: set(e.copies) for e in end.shards} == {e.shard_id: set(e.copies) for e in start.shards}


def test_an_unhealthy_node_gets_no_primary_and_its_own_fail_over_elsewhere():
    start = after_failovers()
    views = [NodeView("n1", "healthy"), NodeView("n2", "healthy"), NodeView("n3", "unhealthy")]
    end, done = rounds(start, views, max_handoffs=2)
    assert led(end, ["n1", "n2", "n3"]) == {"n1": 8, "n2": 8, "n3": 0}


def test_a_primary_handed_off_is_not_handed_back():
    """After a round the old primary is out of sync; once caught up the next plan
    still keeps the new primary: a chain only ever goes downhill."""
    shard_map = after_failovers()
    history: dict[int, list[str]] = {e.shard_id: [e.primary] for e in shard_map.shards}
    _, done = rounds(shard_map, N3, max_handoffs=1)
    for r in done:
        for shard_id, new in r.items():
            history[shard_id].append(new)
    assert all(len(h) == len(set(h)) for h in history.values()), history


@pytest.mark.parametrize("seed", range(20))
def test_random_primaries_converge_without_handing_back_and_forth(seed):
    """From balanced copies with random primaries and random in-sync sets: every round
    lowers the sum of squared primaries per node (so no state repeats and nothing
    goes back and forth), takes at most max_handoffs (or one chain) and ends
    within one, while no copy moves."""
    rng = random.Random(seed)
    ids = [f"n{i}" for i in range(1, rng.randint(2, 6) + 1)]
    views = [NodeView(n, "healthy") for n in ids]
    num_shards, rf = rng.randint(len(ids), 32), rng.randint(2, min(3, len(ids)))
    copies = plan_placement({}, views, num_shards, rf)
    shards = []
    for s, c in copies.items():
        c = list(c)
        rng.shuffle(c)
        primary = c[0] if rng.random() < 0.5 else ids[0] if ids[0] in c else c[0]  # crowd the first node
        in_sync = [primary] + [n for n in c if n != primary and rng.random() < 0.7]
        shards.append(ShardEntry(s, primary, [n for n in c if n != primary], in_sync, "active"))
    shard_map = ShardMap(epoch=1, num_shards=num_shards, replication_factor=rf, shards=shards)
    budget = rng.choice([1, 2, 3])
    health = {n: "healthy" for n in ids}
    potential = sum(v * v for v in led(shard_map, ids).values())
    for _ in range(100):
        target = target_for(shard_map, views, budget)
        changes = plan_replica_changes(shard_map, target, health, budget)
        assert not changes.adds and not changes.removes
        if not changes.handoffs:
            break
        assert len(changes.handoffs) <= max(budget, len(ids) - 1)
        for shard_id, new in changes.handoffs.items():
            assert new in shard_map.shards[shard_id].in_sync, "only to an in-sync copy"
            shard_map = hand_off(shard_map, shard_id, new)
        now = sum(v * v for v in led(shard_map, ids).values())
        assert now < potential, "a round that does not lower the imbalance"
        potential = now
        if rng.random() < 0.6:  # copies catch up now and then
            shard_map = caught_up(shard_map, set(rng.sample(ids, rng.randint(1, len(ids)))))
    else:
        raise AssertionError("no steady state")
    # with every copy in sync, the balance is complete
    end, _ = rounds(caught_up(shard_map, set(ids)), views, budget)
    assert spread_of(led(end, [n for n in ids])) <= 1, led(end, ids)
    assert {e.shard_id: set(e.copies) for e in end.shards} == {s: set(c) for s, c in copies.items()}
