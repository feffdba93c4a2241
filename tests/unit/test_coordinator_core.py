"""Tables for the coordinator's pure decisions: health, shard states, moves, assignments."""

import pytest

from torua.coordinator import shardmap
from torua.coordinator.health import cut_off, missed_heartbeats, node_health
from torua.coordinator.moves import IllegalMoveStep, Move, next_phase
from torua.protocol.messages import ShardEntry, ShardMap


@pytest.mark.parametrize(
    "last_seen,now,expected,missed",
    [
        (None, 100.0, "unknown", 0),
        (100.0, 100.0, "healthy", 0),
        (100.0, 102.9, "healthy", 2),
        (100.0, 103.0, "unhealthy", 3),
        (100.0, 160.0, "unhealthy", 60),
    ],
)
def test_node_health(last_seen, now, expected, missed):
    assert node_health(last_seen, now, interval=1.0, threshold=3) == expected
    assert missed_heartbeats(last_seen, now, 1.0) == missed


# (id, last heartbeat of each node heard from, now, cut off?) with interval 1, threshold 3
CUT_OFF = [
    ("all-silent", [100.0, 100.5, 100.2], 104.0, True),
    ("one-still-beats", [100.0, 100.5, 103.5], 104.0, False),
    ("all-beating", [103.0, 103.5, 103.9], 104.0, False),
    ("a-single-node-may-really-be-down", [100.0], 104.0, False),
    ("never-heard-ones-do-not-count", [None, None, 100.0], 104.0, False),
    ("two-heard-both-silent", [None, 100.0, 100.1], 104.0, True),
    ("no-nodes", [], 104.0, False),
]


@pytest.mark.parametrize("last_seen,now,expected", [c[1:] for c in CUT_OFF], ids=[c[0] for c in CUT_OFF])
def test_cut_off(last_seen, now, expected):
    assert cut_off(last_seen, now, interval=1.0, threshold=3) is expected


@pytest.mark.parametrize(
    "entry,health,state",
    [
        (ShardEntry(0), {}, "unassigned"),
        (ShardEntry(0, "n1"), {"n1": "healthy"}, "active"),
        (ShardEntry(0, "n1"), {"n1": "unhealthy"}, "unavailable"),
        (ShardEntry(0, "n1"), {"n1": "unknown"}, "unavailable"),
        (ShardEntry(0, "n1", target="n2"), {"n1": "healthy"}, "moving"),
        (ShardEntry(0, "n1", target="n2"), {"n1": "unhealthy"}, "unavailable"),
    ],
)
def test_shard_state(entry, health, state):
    assert shardmap.shard_state(entry, health) == state


def test_a_primary_whose_node_lacks_the_shard_makes_it_unavailable():
    m = shardmap.with_states(ShardMap(3, 2, 1, [ShardEntry(0, "n1"), ShardEntry(1, "n1")]), {"n1": "healthy"}, {1})
    assert [e.state for e in m.shards] == ["active", "unavailable"]
    assert shardmap.with_states(m, {"n1": "healthy"}, {1}) is m  # nothing changed: the same map


def test_formation_assigns_every_shard_and_marks_none_created():
    empty = shardmap.empty_map(4, 1, "c")
    formed = shardmap.assign_unplaced(empty, {0: ("n1",), 1: ("n2",), 2: ("n1",), 3: ("n2",)}, {"n1": "healthy", "n2": "healthy"})
    assert [e.primary for e in formed.shards] == ["n1", "n2", "n1", "n2"]
    assert all(e.state == "active" and not e.created for e in formed.shards)
    a = shardmap.assignment_for(formed, "n1")
    assert [(s.shard_id, s.create) for s in a.shards] == [(0, True), (2, True)]
    assert a.num_shards == 4  # so the node can refuse a key sent to a shard it does not belong to
    created = shardmap.set_entry(formed, 0, created=True)
    assert [(s.shard_id, s.create) for s in shardmap.assignment_for(created, "n1").shards] == [(0, False), (2, True)]


def test_with_states_returns_the_same_map_when_nothing_changed():
    m = shardmap.assign_unplaced(shardmap.empty_map(2, 1, "c"), {0: ("n1",), 1: ("n1",)}, {"n1": "healthy"})
    assert shardmap.with_states(m, {"n1": "healthy"}) is m
    assert [e.state for e in shardmap.with_states(m, {"n1": "unhealthy"}).shards] == ["unavailable"] * 2


def test_assign_unplaced_never_moves_a_placed_shard():
    m = shardmap.assign_unplaced(shardmap.empty_map(2, 1, "c"), {0: ("n1",)}, {"n1": "healthy"})
    again = shardmap.assign_unplaced(m, {0: ("n2",), 1: ("n2",)}, {"n1": "healthy", "n2": "healthy"})
    assert [e.primary for e in again.shards] == ["n1", "n2"]


@pytest.mark.parametrize(
    "phase,outcome,expected",
    [
        ("copying", "ok", "freezing"),
        ("freezing", "ok", "catching_up"),
        ("catching_up", "ok", "switching"),
        ("switching", "ok", "dropping"),
        ("dropping", "ok", "done"),
        ("dropping", "failed", "done"),
        ("copying", "failed", "aborting"),
        ("catching_up", "failed", "aborting"),
        ("aborting", "failed", "aborted"),
    ],
)
def test_move_phases(phase, outcome, expected):
    assert next_phase(phase, outcome) == expected


@pytest.mark.parametrize("phase,outcome", [("done", "ok"), ("aborted", "ok"), ("copying", "maybe")])
def test_illegal_move_step_changes_nothing(phase, outcome):
    move = Move(1, "a", "b", 0.0, phase=phase)
    with pytest.raises(IllegalMoveStep):
        move.advance(outcome)
    assert move.phase == phase


def _two_shards():
    return shardmap.assign_unplaced(shardmap.empty_map(2, 1, "c"), {0: ("n1",), 1: ("n2",)}, {"n1": "healthy", "n2": "healthy"})


@pytest.mark.parametrize(
    "shard_id,node_id,health,moving,expected",
    [
        (0, "n2", {"n1": "healthy", "n2": "healthy"}, set(), "moving"),
        (0, "n1", {"n1": "healthy", "n2": "healthy"}, set(), "already_there"),
        (5, "n2", {"n1": "healthy", "n2": "healthy"}, set(), "unknown_shard"),
        (-1, "n2", {"n1": "healthy", "n2": "healthy"}, set(), "unknown_shard"),
        (0, "ghost", {"n1": "healthy", "n2": "healthy"}, set(), "unknown_node"),
        (0, "n2", {"n1": "healthy", "n2": "unhealthy"}, set(), "conflict"),
        (0, "n2", {"n1": "unhealthy", "n2": "healthy"}, set(), "conflict"),
        (0, "n2", {"n1": "healthy", "n2": "healthy"}, {0}, "conflict"),
    ],
)
def test_check_manual_move(shard_id, node_id, health, moving, expected):
    from torua.protocol.errors import ToruaError

    try:
        verdict = shardmap.check_manual_move(_two_shards(), health, moving, shard_id, node_id)
    except ToruaError as exc:
        verdict = exc.code
    assert verdict == expected


def test_check_manual_move_before_formation():
    from torua.protocol.errors import ToruaError

    with pytest.raises(ToruaError) as err:
        shardmap.check_manual_move(None, {"n1": "healthy"}, set(), 0, "n1")
    assert err.value.code == "unavailable"
