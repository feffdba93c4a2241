"""A node's check of drops, freezes and assignments against the stored map (torua.node.command_checks): tables."""

from __future__ import annotations

import pytest

from torua.node.command_checks import assignment_refusal, destructive_refusal
from torua.protocol.messages import AssignedShard, Assignment, ShardEntry, ShardMap

STORED = ShardMap(9, 3, 2, [
    ShardEntry(0, "n1", ["n2"], ["n1", "n2"]),          # n1 primary, n2 replica
    ShardEntry(1, "n2", ["n3"], ["n2"], target="n1"),   # moving from n2 to n1
    ShardEntry(2, None, [], []),                        # unassigned
])


@pytest.mark.parametrize(
    "call,node,shard,stored,refused",
    [
        ("shard.drop", "n1", 0, STORED, "has n1 as the primary of shard 0"),
        ("shard.drop", "n2", 0, STORED, "has n2 as a replica of shard 0"),
        ("shard.drop", "n3", 0, STORED, None),               # a retired copy
        ("shard.drop", "n1", 1, STORED, None),               # the target's partial copy (an abort)
        ("shard.drop", "n2", 1, STORED, "has n2 as the primary of shard 1"),
        ("shard.drop", "n3", 1, STORED, "has n3 as a replica of shard 1"),
        ("shard.drop", "n1", 2, STORED, None),
        ("shard.drop", "n1", 3, STORED, "has no shard 3"),
        ("shard.drop", "n1", 0, None, "no shard map is stored"),
        ("shard.freeze", "n2", 1, STORED, None),             # the move's source
        ("shard.freeze", "n1", 1, STORED, "records no move of shard 1 from n1"),  # its target
        ("shard.freeze", "n3", 1, STORED, "records no move of shard 1 from n3"),
        ("shard.freeze", "n1", 0, STORED, "records no move of shard 0 from n1"),  # a primary no move needs
        ("shard.freeze", "n1", 2, STORED, "records no move of shard 2 from n1"),
        ("shard.freeze", "n1", 0, None, "no shard map is stored"),
        ("shard.unfreeze", "n1", 0, None, None),             # lets writes in again: not checked
        ("shard.copy", "n1", 0, STORED, None),               # refused by the copy's role (torua.node.roles)
    ],
)
def test_destructive_commands_follow_the_stored_map(call, node, shard, stored, refused):
    why = destructive_refusal(call, node, shard, stored)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why

MAP = ShardMap(9, 3, 2, [
    ShardEntry(0, "n1", ["n2"], ["n1", "n2"], created=True),
    ShardEntry(1, "n2", ["n1"], ["n2", "n1"], created=True),
    ShardEntry(2, "n3", [], ["n3"], created=False),     # not created yet
])
N1 = [AssignedShard(0, "primary", primary="n1"), AssignedShard(1, "replica", primary="n2")]


@pytest.mark.parametrize(
    "assignment,stored,refused",
    [
        (Assignment(9, "n1", N1), MAP, None),
        (Assignment(8, "n1", N1), MAP, None),                                   # older, but what the store says
        (Assignment(9, "n1", [AssignedShard(0, "primary")] + N1[1:]), MAP, None),  # an older coordinator names no primary
        (Assignment(9, "n3", [AssignedShard(2, "primary", create=True, primary="n3")]), MAP, None),
        (Assignment(10, "n1", N1), MAP, ("conflict", "never stored")),
        (Assignment(9, "n1", []), MAP, ("conflict", "gives n1 shards [0, '1 (replica)'], not []")),
        (Assignment(8, "n1", N1[:1]), MAP, ("stale_epoch", "gives n1 shards")),
        (Assignment(9, "n1", [AssignedShard(0, "replica", primary="n1"), N1[1]]), MAP, ("conflict", "gives n1 shards")),
        (Assignment(9, "n1", [N1[0], AssignedShard(1, "replica", primary="n3")]), MAP, ("conflict", "names n2 primary of shard 1, not n3")),
        (Assignment(9, "n1", [AssignedShard(0, "primary", create=True, primary="n1"), N1[1]]), MAP, ("conflict", "asks to create shard 0 empty")),
        (Assignment(9, "n1", N1), None, ("unavailable", "no shard map is stored")),
    ],
)
def test_an_assignment_must_be_what_the_stored_map_gives_the_node(assignment, stored, refused):
    got = assignment_refusal(assignment, stored)
    if refused is None:
        assert got is None
    else:
        assert got is not None and got[0] == refused[0] and refused[1] in got[1], got
