"""Graph requests to the nodes of a cluster, routed as a gateway routes them (the
vertex's shard, its primary, retried on `moved`): what the node tests need, short of
the gateway's graph endpoints. And a scan of every shard's graph rows, to check the
edge invariant of BRIEF section 8."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from torua.graph.catalog import GraphSettings, new_entry
from torua.graph.rows import ATTACHED, EdgeRow, GraphRows, read_rows
from torua.graph.rules import vertex_shard
from torua.protocol.errors import ToruaError
from torua.protocol.messages import (
    EdgeData,
    GraphRef,
    GraphReply,
    GraphRequest,
    VertexData,
)
from torua.protocol.subjects import GRAPH_BUCKET
from torua.protocol.vocabulary import GraphOp
from torua.routing import ShardRouter
from torua.storage.shard_store import ShardStore


class GraphClient:
    def __init__(self, router: ShardRouter, graph: GraphRef, timeout: float = 5.0) -> None:
        self.router, self.graph, self.timeout = router, graph, timeout

    def shard(self, id: str) -> int:
        return vertex_shard(self.graph.name, id, self.router.shard_map().num_shards)

    async def call(self, shard_id: int, op: GraphOp, **fields: Any) -> GraphReply:
        """The reply; `ToruaError` for a refusal (as the gateway raises it)."""
        reply: GraphReply = await self.router.call(
            shard_id, lambda epoch: GraphRequest(op, shard_id, epoch, self.graph, **fields), self.timeout, kind="graph", reply_type=GraphReply
        )
        if not reply.ok:
            raise ToruaError(reply.error_code, reply.error_message)
        return reply

    async def put_vertex(self, id: str, label: str = "V", properties: dict[str, Any] | None = None, embedding: list[float] | None = None) -> GraphReply:
        return await self.call(self.shard(id), GraphOp.VERTEX_PUT, vertex=VertexData(id, label, properties or {}, embedding))

    async def get_vertex(self, id: str, **fields: Any) -> VertexData:
        reply = await self.call(self.shard(id), GraphOp.VERTEX_GET, id=id, **fields)
        assert reply.vertex is not None
        return reply.vertex

    async def delete_vertex(self, id: str) -> GraphReply:
        return await self.call(self.shard(id), GraphOp.VERTEX_DELETE, id=id)

    async def put_edge(self, src: str, type: str, dst: str, properties: dict[str, Any] | None = None, weight: float = 1.0) -> GraphReply:
        return await self.call(self.shard(src), GraphOp.EDGE_PUT, edge=EdgeData(src, type, dst, properties or {}, weight))

    async def delete_edge(self, src: str, type: str, dst: str) -> GraphReply:
        return await self.call(self.shard(src), GraphOp.EDGE_DELETE, edge=EdgeData(src, type, dst))

    async def edges(self, id: str, direction: str = "out", **fields: Any) -> list[EdgeData]:
        found: list[EdgeData] = []
        cursor = ""
        while True:
            reply = await self.call(self.shard(id), GraphOp.EDGES, id=id, direction=direction, cursor=cursor, **fields)
            found += reply.edges
            cursor = reply.next_cursor
            if not cursor:
                return found

    async def import_batch(self, vertices: Iterable[VertexData], edges: Iterable[EdgeData]) -> tuple[dict[str, int], list[Any]]:
        """As the gateway splits an import: every shard's vertices first, then to each
        shard the edges whose src is there (an edge to a vertex of the same batch finds it)."""
        by_shard: dict[int, list[VertexData]] = {}
        for v in vertices:
            by_shard.setdefault(self.shard(v.id), []).append(v)
        edges_by_shard: dict[int, list[EdgeData]] = {}
        for e in edges:
            edges_by_shard.setdefault(self.shard(e.src), []).append(e)
        counts = {"vertices": 0, "edges": 0}
        problems = []
        for round_ in (by_shard, edges_by_shard):
            for shard_id, lines in sorted(round_.items()):
                fields = {"vertices": lines} if round_ is by_shard else {"edges": lines}
                reply = await self.call(shard_id, GraphOp.IMPORT, **fields)
                counts["vertices"] += reply.counts["vertices"]
                counts["edges"] += reply.counts["edges"]
                problems += [(shard_id, p) for p in reply.problems]
        return counts, problems


# ------------------------------------------------------------------ scans


@dataclass
class GraphScan:
    """Every shard's graph rows of one graph, as its primary holds them."""

    vertices: dict[str, int] = field(default_factory=dict)  # id -> the shard holding it
    rows: dict[int, list[EdgeRow]] = field(default_factory=dict)  # shard -> its edge rows
    outbox: dict[int, int] = field(default_factory=dict)  # shard -> outbox tasks left

    def unsettled(self) -> list[str]:
        """Halves and tasks repair has yet to settle."""
        out = [f"shard {s}: outbox holds {n} tasks" for s, n in self.outbox.items() if n]
        for shard, rows in self.rows.items():
            for r in rows:
                if r.out_state in ("pending", "removing") or r.in_state == ATTACHED:
                    out.append(f"shard {shard}: {r.key} out={r.out_state} in={r.in_state}")
        return out

    def edges(self) -> set[tuple[str, str, str]]:
        """Edges whose out-half is committed."""
        return {r.key for rows in self.rows.values() for r in rows if r.out_state == "committed"}

    def problems(self, name: str, num_shards: int) -> list[str]:
        """Half-edges and edges to a missing vertex: the invariant of BRIEF section 8."""
        outs: dict[tuple[str, str, str], EdgeRow] = {}
        ins: dict[tuple[str, str, str], EdgeRow] = {}
        found: list[str] = []
        for shard, rows in self.rows.items():
            for r in rows:
                if r.out_state is not None:
                    outs[r.key] = r
                    if vertex_shard(name, r.src, num_shards) != shard:
                        found.append(f"out-half {r.key} on shard {shard}, not its src's")
                if r.in_state is not None:
                    ins[r.key] = r
                    if vertex_shard(name, r.dst, num_shards) != shard:
                        found.append(f"in-half {r.key} on shard {shard}, not its dst's")
        for key in sorted(set(outs) | set(ins)):
            out, in_ = outs.get(key), ins.get(key)
            if out is None or in_ is None:
                found.append(f"half-edge {key}: out={out and out.out_state} in={in_ and in_.in_state}")
            elif out.out_state != "committed":
                found.append(f"edge {key}: out-half {out.out_state}")
            elif out.out_token != in_.in_token and out.in_state is None:
                found.append(f"edge {key}: out-half of incarnation {out.out_token}, in-half of {in_.in_token}")
            for end in (key[0], key[2]):
                if end not in self.vertices:
                    found.append(f"edge {key} to missing vertex {end!r}")
        return found


def scan_rows(stores: dict[int, ShardStore], uid: str) -> GraphScan:
    """`stores`: shard -> its primary's copy."""
    scan = GraphScan()
    for shard, store in stores.items():
        with read_rows(store.writer.reader()) as rows:
            scan.vertices.update({v.id: shard for v in rows.vertex_rows(uid, with_embedding=False)})
            scan.rows[shard] = list(rows.edge_rows(uid))
        graph = store.engine("graph")
        assert isinstance(graph, GraphRows)
        scan.outbox[shard] = graph.graph_stats(uid)["outbox"]
    return scan


def with_uid(graph: GraphRef, uid: str) -> GraphRef:
    return replace(graph, uid=uid)


def graph_copies_differ(cluster: Any) -> list[str] | None:
    """Shards whose replicas' graph rows are not their primary's at the same seq (a
    SimCluster, green and caught up); None when some replica is at another seq than its
    primary (a write came in between: compare again)."""
    from tests.support.graph_row_ops import graph_rows_at

    problems = []
    for e in cluster.map.shards:
        seq, expected = graph_rows_at(cluster.nodes[e.primary].holdings[e.shard_id].store.directory)
        for replica in e.replicas:
            at, got = graph_rows_at(cluster.nodes[replica].holdings[e.shard_id].store.directory)
            if at != seq:
                return None
            if got != expected:
                differ = {t: (sorted(set(got[t]) - set(expected[t]), key=repr), sorted(set(expected[t]) - set(got[t]), key=repr)) for t in got if got[t] != expected[t]}
                problems.append(f"DIVERGED at seq {seq}: shard {e.shard_id} graph rows on {replica} differ from primary {e.primary} (only on the replica, only on the primary): {differ}")
    return problems


async def graph_copies_compared(cluster: Any, timeout: float = 10.0) -> list[str]:
    """`graph_copies_differ` once every replica is at its primary's seq (polled)."""
    from tests.support.sim_cluster import wait_for

    found: list[list[str]] = []

    def compared() -> bool:
        problems = graph_copies_differ(cluster)
        if problems is not None:
            found.append(problems)
        return problems is not None

    await wait_for(compared, timeout, "every replica at its primary's seq")
    return found[-1]


def primaries(cluster: Any) -> dict[int, object]:
    """Each shard's primary store in a `SimCluster`."""
    out = {}
    for e in cluster.map.shards:
        assert e.primary is not None
        store = cluster.nodes[e.primary].holdings[e.shard_id].store
        assert store is not None
        out[e.shard_id] = store
    return out


async def in_catalog(cluster: Any, graph: GraphRef) -> None:
    """Put `graph` into the catalog of a `SimCluster` (what `PUT /graphs/{g}` does), so
    that its primaries keep its rows: every `SWEEP_SECONDS` (30 s) each drops the
    graphs the catalog does not hold (torua.node.graph_catalog), and a scenario that
    runs that long on a slow machine would lose its graph halfway."""
    settings = GraphSettings.checked(graph.vector_dim, str(graph.metric), list(graph.text_properties))
    kv = await cluster.gateway.nc.jetstream().key_value(GRAPH_BUCKET)
    await kv.put(graph.name, new_entry(graph.name, settings, graph.uid, time.time()).to_json())


def logged_for(cluster: Any, names: Iterable[tuple[str, ...]]) -> list[str]:
    """Every op in every copy's log (each node of a `SimCluster`) naming one of `names`
    (an edge key, or a vertex as `(id,)`), in log order: what a failed check of those
    edges or vertices prints, to tell which write left them as they are."""
    wanted = {tuple(n) for n in names}
    out: list[str] = []
    for node_id, node in sorted(cluster.nodes.items()):
        for shard_id, holding in sorted(node.holdings.items()):
            store = holding.store
            if store is None or store.closed:
                continue
            after = store.base_seq()
            out.append(f"{node_id} shard {shard_id} ({holding.role}, epoch {holding.shard_epoch}, log from {after + 1} to {store.last_seq()}):")
            while True:
                page = store.read_log(after, max_ops=5000)
                if not page:
                    break
                for seq, op in page:
                    key = (getattr(op, "src", None), getattr(op, "type", None), getattr(op, "dst", None))
                    if key in wanted or (getattr(op, "id", None),) in wanted:
                        out.append(f"  {seq}: {op}")
                after = page[-1][0]
    return out
