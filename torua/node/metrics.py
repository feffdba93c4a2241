"""A node's own Prometheus collector: what it holds, from a read-only snapshot.

`Node.snapshot()` copies plain data out of the node (its copies with their
sizes and replica acknowledgements, the KV requests it served); `node_families`
turns one into metric families when Prometheus scrapes. Nothing here reads the
node itself; the shared machinery (registry, server, `gauge`) is `torua.metrics`.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from torua.metrics import build_info, gauge
from torua.protocol.vocabulary import CopyRole

# Every role a node reports is shown, zeros included, so a series never vanishes.
NODE_ROLES = tuple(role.value for role in CopyRole if role is not CopyRole.ABSENT)


@dataclass(frozen=True)
class CopySnapshot:
    """One shard copy a node holds. `measured` is False when its store could not be
    read right now (closing under a move or drop): the copy counts, its sizes not."""

    shard_id: int
    role: str
    measured: bool = False
    keys: int = 0
    bytes: int = 0
    last_seq: int = 0
    replicas: tuple[str, ...] = ()  # the shard's replicas, as this copy knows them
    acked: dict[str, int] = field(default_factory=dict)  # replica -> the seq it asked to fetch after


@dataclass(frozen=True)
class NodeSnapshot:
    node_id: str
    epoch: int  # the newest shard map epoch the node was assigned at
    copies: list[CopySnapshot] = field(default_factory=list)
    kv_served: dict[tuple[str, str], int] = field(default_factory=dict)  # (op, ok | error code) -> count
    graph_served: dict[tuple[str, str], int] = field(default_factory=dict)  # (graph op, ok | error code) -> count


def node_families(snapshot: NodeSnapshot) -> Iterable[Metric]:
    """What a node holds, as metric families."""
    node = snapshot.node_id
    me = {"node": node}
    roles: Tally[str] = Tally()
    keys = nbytes = 0
    lag: list[tuple[dict[str, str], float]] = []
    for copy in snapshot.copies:
        roles[copy.role] += 1
        if not copy.measured:
            continue
        keys += copy.keys
        nbytes += copy.bytes
        if copy.role in (CopyRole.PRIMARY, CopyRole.FROZEN):
            # A replica's ack is the seq it asked to fetch after: everything up to it is applied.
            for replica in copy.replicas:
                if replica != node:
                    lag.append(({"shard": str(copy.shard_id), "replica": replica}, max(0, copy.last_seq - max(0, copy.acked.get(replica, 0)))))
    yield build_info("node")
    yield gauge("torua_node_map_epoch", "newest shard map epoch this node was assigned at", me, [({}, snapshot.epoch)])
    yield gauge("torua_node_shards", "shard copies held, by role", me, [({"role": r}, roles[r]) for r in NODE_ROLES])
    yield gauge("torua_node_keys", "keys in every shard copy this node holds", me, [({}, keys)])
    yield gauge("torua_node_bytes", "bytes of values in every shard copy this node holds", me, [({}, nbytes)])
    yield gauge(
        "torua_node_replica_lag_ops",
        "operations a replica has yet to fetch, as its primary (this node) sees it, by shard and replica",
        me, lag,
    )
    served = CounterMetricFamily("torua_node_kv_requests", "KV requests served, by operation and outcome (ok or the error code)", labels=["node", "op", "outcome"])
    for (op, outcome), count in sorted(snapshot.kv_served.items()):
        served.add_metric([node, op, outcome], count)
    yield served
    graph = CounterMetricFamily("torua_node_graph_requests", "graph requests served, by operation and outcome (ok or the error code)", labels=["node", "op", "outcome"])
    for (op, outcome), count in sorted(snapshot.graph_served.items()):
        graph.add_metric([node, op, outcome], count)
    yield graph
