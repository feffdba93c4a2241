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

from torua.protocol.messages import ShardMap


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
