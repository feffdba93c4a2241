import pytest

from torua.coordinator.replica_plan import catching_up, plan_replica_changes
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
        pytest.param(ShardEntry(0, "a", ["b"], ["a", "b"]), ("b", "a"), H, 2, {}, {}, {}, id="primary-balance-swaps-are-ignored"),
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
