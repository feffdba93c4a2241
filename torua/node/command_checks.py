"""Whether a node carries out a destructive command, against the shard map the
coordinator stored (JetStream), not against the message alone.

A `shard.drop` deletes a copy and a `shard.freeze` stops a primary taking
writes. The coordinator sends them only for what its stored map records: a copy
the map no longer counts on (after a move, an abort, a retired copy), and a move
of a primary to another node. So a node refuses either when the stored map says
otherwise, whoever sent it: a forged command, even with the coordinator's NATS
login, cannot delete a copy the cluster counts on or stop a primary no move
needs (docs/design/security.md). The coordinator stores every map before it
sends the commands that follow from it.
"""

from __future__ import annotations

from torua.protocol.messages import Assignment, ShardMap


def destructive_refusal(call: str, node_id: str, shard_id: int, stored: ShardMap | None) -> str | None:
    """Why `node_id` must not carry out `call` for `shard_id` under the `stored`
    map (None: it may). Calls other than drop and freeze are not checked here.

    >>> from torua.protocol.messages import ShardEntry
    >>> stored = ShardMap(7, 2, shards=[ShardEntry(0, "n1", ["n2"], ["n1", "n2"]), ShardEntry(1, "n2", [], ["n2"], target="n3")])
    >>> destructive_refusal("shard.drop", "n2", 0, stored)
    'the stored shard map (epoch 7) has n2 as a replica of shard 0'
    >>> destructive_refusal("shard.drop", "n3", 1, stored) is None  # a move's target: its partial copy may go
    True
    >>> destructive_refusal("shard.freeze", "n1", 0, stored)
    'the stored shard map (epoch 7) records no move of shard 0 from n1'
    >>> destructive_refusal("shard.freeze", "n2", 1, stored) is None
    True
    """
    if call not in ("shard.drop", "shard.freeze"):
        return None
    if stored is None:
        return "no shard map is stored to check it against"
    if not 0 <= shard_id < len(stored.shards):
        return f"the stored shard map (epoch {stored.epoch}) has no shard {shard_id}"
    entry = stored.shards[shard_id]
    if call == "shard.drop":
        if entry.primary == node_id:
            return f"the stored shard map (epoch {stored.epoch}) has {node_id} as the primary of shard {shard_id}"
        if node_id in entry.replicas:
            return f"the stored shard map (epoch {stored.epoch}) has {node_id} as a replica of shard {shard_id}"
        return None
    if entry.target is None or entry.primary != node_id or entry.target == node_id:
        return f"the stored shard map (epoch {stored.epoch}) records no move of shard {shard_id} from {node_id}"
    return None


def assignment_refusal(assignment: Assignment, stored: ShardMap | None) -> tuple[str, str] | None:
    """(error code, why) when an assignment does not follow the `stored` map (None: it
    does). What a node serves follows it: which shards, as primary or replica, and
    who is primary must be what the stored map gives this node, and a shard may be
    created empty only while the stored map says no node has created it. Fields an
    older coordinator fills otherwise (in-sync sets, promotions) are not compared.

    >>> from torua.protocol.messages import AssignedShard, ShardEntry
    >>> stored = ShardMap(7, 2, shards=[ShardEntry(0, "n1", ["n2"], ["n1", "n2"], created=True), ShardEntry(1, "n2", [], ["n2"], created=True)])
    >>> assignment_refusal(Assignment(7, "n1", [AssignedShard(0, "primary", primary="n1")]), stored) is None
    True
    >>> assignment_refusal(Assignment(8, "n1", []), stored)
    ('conflict', 'the assignment is at epoch 8 and the stored shard map at 7: that map was never stored')
    >>> assignment_refusal(Assignment(7, "n1", []), stored)
    ('conflict', 'the stored shard map (epoch 7) gives n1 shards [0], not []')
    """
    if stored is None:
        return "unavailable", "no shard map is stored to check the assignment against"
    if assignment.epoch > stored.epoch:
        return "conflict", f"the assignment is at epoch {assignment.epoch} and the stored shard map at {stored.epoch}: that map was never stored"
    node_id = assignment.node_id
    wanted = {e.shard_id: ("primary" if e.primary == node_id else "replica", e.primary) for e in stored.shards if node_id in e.copies}
    given = {a.shard_id: (str(a.role), a.primary) for a in assignment.shards}
    code = "stale_epoch" if assignment.epoch < stored.epoch else "conflict"
    if {s: r for s, (r, _) in given.items()} != {s: r for s, (r, _) in wanted.items()}:
        return code, f"the stored shard map (epoch {stored.epoch}) gives {node_id} shards {_roles(wanted)}, not {_roles(given)}"
    for shard_id, (_, primary) in given.items():
        if primary and primary != wanted[shard_id][1]:
            return code, f"the stored shard map (epoch {stored.epoch}) names {wanted[shard_id][1]} primary of shard {shard_id}, not {primary}"
    for a in assignment.shards:
        if a.create and stored.shards[a.shard_id].created:
            return "conflict", f"the assignment asks to create shard {a.shard_id} empty, which the stored shard map (epoch {stored.epoch}) says exists"
    return None


def _roles(roles: dict[int, tuple[str, str | None]]) -> str:
    return str([s if r == "primary" else f"{s} (replica)" for s, (r, _) in sorted(roles.items())])
