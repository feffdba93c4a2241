"""The `support` request on a shard's primary: GraphRAG's evidence for vertices and
edges whose src is on this shard (docs/design/graphrag.md section 3; the decisions:
torua.graph.support).

For a vertex (an entity), under its vertex lock and in one write: the support
change, then the vertex put when its first chunk came and it is not there, or its
delete with every edge of it (cascade) when its last chunk went. For an edge (a
relation), under a support lock of its own (``("s", uid, src, type, dst)``, taken
before the edge protocol's locks and never while one is held): the support change
is logged under src's vertex lock, then the edge is put with the weight and
properties its support gives (the edge protocol; nothing is sent when it is there as
is... but for the check with dst's shard that a re-put of a committed edge makes), or
deleted when no chunk supports it. The second step runs whether or not the change
changed anything, so a change sent again after a failure in between (a timeout of
dst's shard) puts the edge right.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from torua.graph import rules
from torua.graph import support as decide
from torua.graph.edges import cascade
from torua.graph.rows import GraphRows
from torua.node import graph_checks as checks
from torua.node.graph_edges import EdgeSpec, ensure_ops, ref_of, vertex_lock
from torua.protocol.errors import ToruaError
from torua.protocol.messages import GraphReply, GraphRequest, SupportItem, VertexData
from torua.protocol.vocabulary import GraphOp
from torua.storage.operations import Operation, VertexPut
from torua.storage.shard_store import ShardStore

if TYPE_CHECKING:
    from torua.node.graph import GraphService

log = logging.getLogger("torua.node.graph")

MAX_ITEMS = 1000  # targets one support request changes
REPAIR_EDGES = 200  # supported edges one sweep of a shard puts right at most
MAX_CHUNKS = 1000  # chunks one item adds or removes
MAX_NOTE_BYTES = 4096


def support_lock(uid: str, key: tuple[str, str, str]) -> tuple[str, ...]:
    return ("s", uid, *key)


def _chunk(chunk: object) -> str:
    if not isinstance(chunk, str) or not chunk or len(chunk.encode("utf-8", "surrogatepass")) > 1024 or not chunk.isprintable():
        raise ToruaError("bad_request", "a chunk id must be 1-1024 bytes of printable text")
    return chunk


def _note(note: object) -> str:
    if not isinstance(note, str) or len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise ToruaError("bad_request", f"a support note must be text of at most {MAX_NOTE_BYTES} bytes")
    try:
        value = json.loads(note)
    except ValueError:
        raise ToruaError("bad_request", "a support note must be a JSON object") from None
    if not isinstance(value, dict):
        raise ToruaError("bad_request", "a support note must be a JSON object")
    return note


class SupportWork:
    def __init__(self, service: "GraphService") -> None:
        self.service = service
        self.node = service.node
        self.locks = service.locks

    def _item(self, request: GraphRequest, item: SupportItem) -> tuple[tuple[str, str, str], dict[str, str], list[str]]:
        src = checks.vertex_in_shard(request.graph.name, item.src, request.shard_id, self.node.num_shards, "src")
        if item.type:
            key = (src, rules.validate_type(item.type), rules.validate_vertex_id(item.dst, "dst"))
        elif item.dst:
            raise ToruaError("bad_request", "a vertex's support names no dst (an edge's names its type)")
        else:
            key = (src, "", "")
        if len(item.added) + len(item.removed) > MAX_CHUNKS:
            raise ToruaError("bad_request", f"an item adds and removes at most {MAX_CHUNKS} chunks")
        added = {_chunk(c): _note(n) for c, n in item.added.items()}
        removed = [_chunk(c) for c in item.removed]
        both = set(added) & set(removed)
        if both:
            raise ToruaError("bad_request", f"chunk {sorted(both)[0]!r} is both added and removed")
        return key, added, removed

    async def handle(self, request: GraphRequest, store: ShardStore, rows: GraphRows) -> GraphReply:
        """`store` and `rows`: the primary's copy, admitted for writes (`writing`)."""
        if not request.supports:
            raise ToruaError("bad_request", "support needs at least one item")
        if len(request.supports) > MAX_ITEMS:
            raise ToruaError("bad_request", f"at most {MAX_ITEMS} support items at once")
        items = [self._item(request, item) for item in request.supports]
        keys = [key for key, _, _ in items]
        if len(set(keys)) != len(keys):
            raise ToruaError("bad_request", "a support request names each vertex or edge once")
        vertices = [(i, item) for i, item in enumerate(request.supports) if not item.type]
        puts = {i: self.service.vertex_op(request, VertexData(item.src, item.label, item.properties, item.embedding)) for i, item in vertices}
        sizes = [0] * len(items)
        if vertices:
            await self._vertices(request, rows, [(i, items[i]) for i, _ in vertices], puts, sizes)
        edges = [(i, items[i]) for i, item in enumerate(request.supports) if item.type]
        if edges:
            await self._edges(request, rows, edges, sizes)
        return GraphReply(True, self.node.epoch, support=sizes, seq=store.last_seq())

    async def _vertices(
        self, request: GraphRequest, rows: GraphRows, items: list[tuple[int, Any]], puts: dict[int, VertexPut], sizes: list[int],
    ) -> None:
        uid = request.graph.uid
        cascaded = False
        async with self.locks.hold(*(vertex_lock(uid, key[0]) for _, (key, _, _) in items)):
            # only the chunks the change names, and a count: an entity's support can hold a chunk of every document
            current = rows.support_held(uid, {key: [*added, *removed] for _, (key, added, removed) in items})
            present = rows.existing(uid, [key[0] for _, (key, _, _) in items])
            ops: list[Operation] = []
            for i, (key, added, removed) in items:
                count, held = current.get(key, (0, {}))
                change = decide.change(uid, key, held, added, removed)
                now = sizes[i] = decide.size_after(count, held, added, removed)
                if change is not None:
                    ops.append(change)
                if now and key[0] not in present:
                    ops.append(puts[i])
                elif not now and count and key[0] in present:  # its last chunk went now (a vertex nothing ever supported stays)
                    ops.extend(cascade(uid, key[0], rows.edges_of(uid, key[0])))
                    cascaded = True
            if ops:
                await self.node.write(request.shard_id, [*ensure_ops(rows, request.graph), *ops], "graph support")
        if cascaded:
            self.service.edges.kick()  # the deleted vertices' outbox

    async def _edges(self, request: GraphRequest, rows: GraphRows, items: list[tuple[int, Any]], sizes: list[int]) -> None:
        uid = request.graph.uid
        async with self.locks.hold(*(support_lock(uid, key) for _, (key, _, _) in items)):
            async with self.locks.hold(*{vertex_lock(uid, key[0]) for _, (key, _, _) in items}):
                present = rows.existing(uid, [key[0] for _, (key, _, _) in items])
                # a change that only removes chunks of an edge whose src is gone is logged (its edge went
                # with src): chunks of one document removed at once may delete an entity before one of
                # them removes its share of a relation of it
                missing = next((key[0] for _, (key, added, _) in items if added and key[0] not in present), None)
                if missing is not None:
                    raise ToruaError("not_found", f"vertex {missing!r} (src) is not in graph {request.graph.name!r}")
                current = rows.supports(uid, [key for _, (key, _, _) in items])
                ops = [op for _, (key, added, removed) in items if (op := decide.change(uid, key, current.get(key, {}), added, removed)) is not None]
                if ops:
                    await self.node.write(request.shard_id, [*ensure_ops(rows, request.graph), *ops], "graph support")
                now = rows.supports(uid, [key for _, (key, _, _) in items])
            wanted: list[EdgeSpec] = []
            for i, (key, _, _) in items:
                support = now.get(key, {})
                sizes[i] = len(support)
                if key[0] not in present:
                    continue  # src and its edges are gone: nothing to put or delete
                if support:
                    properties, weight = decide.relation(support)
                    wanted.append(EdgeSpec(*key, checks.canonical_properties(properties, self.service._max_properties()), weight))
                else:
                    await self.service.edges.delete(request.shard_id, request.graph, rows, EdgeSpec(*key))
            if wanted:
                local = [s for s in wanted if self.service.dst_shard(request, s.dst) == request.shard_id]
                remote = [s for s in wanted if self.service.dst_shard(request, s.dst) != request.shard_id]
                outcomes = (await self.service.local_edge_puts(request, rows, local, "graph support"))[0] if local else []
                if remote:
                    outcomes += await self.service.edges.put_many(request.shard_id, request.graph, rows, remote)
                failed = next((o for o in outcomes if o is not None), None)
                if failed is not None:
                    raise failed  # the support is logged: the same request again puts the edge right

    async def repair(self, shard_id: int, rows: GraphRows) -> None:
        """Put right the supported edges whose weight is behind their support (a change
        whose edge step failed and was never sent again: a job given up), from the
        support as it is, one edge at a time (one whose dst is gone must not hold up the
        others; it is tried again at the next sweep). Called by the edge repair's sweep
        on each primary (`EdgeWork.on_sweep`)."""
        stale = rows.stale_supports(limit=REPAIR_EDGES)
        if not stale:
            return
        graphs = {g.uid: g for g in rows.graphs() if not g.dropped}
        by_graph: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for uid, key in stale:
            if uid in graphs:
                by_graph[uid].append(key)
        for uid, keys in by_graph.items():
            for key in keys:
                request = GraphRequest(GraphOp.SUPPORT, shard_id, self.node.epoch, ref_of(graphs[uid]), supports=[SupportItem(*key)])
                try:
                    await self._edges(request, rows, [(0, (key, {}, []))], [0])
                except ToruaError as exc:
                    log.debug("shard %d: the supported edge %s could not be put right yet: %s", shard_id, key, exc.message)
