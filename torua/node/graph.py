"""The node's graph service: `GraphRequest`s on ``torua.node.<id>.graph``, answered
from the graph rows of the shard copies this node holds (torua.graph.rows).

Every request names its shard, and is held to the graph rules (torua.graph.rules)
whatever sent it: ids of vertices this shard holds, printable labels and edge types,
properties within ``--graph-max-properties-bytes``, embeddings of the graph's
``vector_dim``, bounds on limits. Writes take the node's one write path
(`Node.write`: fenced, logged, replicated, answered once every in-sync replica has
them); a shard logs ``graph.ensure`` before the first write of a graph to it. Reads
come from SQLite; with ``eventual`` an in-sync replica may answer.

What must not interleave on a primary is ordered by `KeyLocks`: every write that
reads rows of a vertex to decide (a put, a delete and its cascade, an edge's half)
holds ``("v", uid, id)`` while it reads and logs, and an edge's protocol
(torua.node.graph_edges) holds ``("e", uid, src, type, dst)`` for all its steps, taken
before any vertex lock and never while one is held.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from torua.graph import rules
from torua.graph.edges import cascade, local_put_ops
from torua.graph.index import ENGINE_NAME, GraphIndex, IndexBehind, QueryRefused, run_together
from torua.graph.search import merge_hits
from torua.graph.rows import ENGINE, EdgeRow, GraphRows, VertexRow, pack_vector
from torua.kv_rules import validate_shard
from torua.node import graph_checks as checks
from torua.node.answered import Answered
from torua.node.graph_edges import EdgeSpec, EdgeWork, ensure_ops, vertex_lock
from torua.node.graph_support import SupportWork
from torua.node.key_locks import KeyLocks
from torua.node.peer_lanes import BATCH
from torua.node.replies import reply
from torua.protocol.codec import decode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import (
    EdgeData,
    EdgeHalf,
    GraphHit,
    GraphReply,
    GraphRequest,
    ImportProblem,
    ShardHits,
    VertexData,
)
from torua.protocol.vocabulary import Direction, GraphOp, HalfState
from torua.storage.operations import GraphDrop, Operation, VertexPut
from torua.storage.shard_store import ShardClosed, ShardStore

if TYPE_CHECKING:
    from torua.node.service import Node

log = logging.getLogger("torua.node.graph")


# requests that write (run as tasks, so that they group-commit); the rest read
WRITES = frozenset(
    {GraphOp.VERTEX_PUT, GraphOp.VERTEX_DELETE, GraphOp.EDGE_PUT, GraphOp.EDGE_DELETE, GraphOp.IMPORT, GraphOp.DROP,
     GraphOp.EDGE_ATTACH, GraphOp.EDGE_DETACH, GraphOp.EDGE_DROP, GraphOp.EDGE_CONFIRM, GraphOp.SUPPORT}
)
INDEX_ENGINE = ENGINE_NAME  # the Kuzu index's engine (torua.graph.index)
INDEX_QUERY_SECONDS = 4.0  # an index query, its catching up included, when the request gives no timeout
INDEX_ANSWER_MARGIN = 0.2  # of a request's timeout, left for the answer to reach the sender
MAX_INDEX_QUERY_SECONDS = 300.0
# Writes whose answer says what they did (`created`): a retry of one (same `request_id`)
# is answered as the first attempt was.
REMEMBERED = frozenset({GraphOp.VERTEX_PUT, GraphOp.EDGE_PUT})
MAX_REQUEST_ID = 128
INDEX_QUERIES = frozenset({GraphOp.VECTOR_SEARCH, GraphOp.TEXT_STATS, GraphOp.TEXT_SEARCH, GraphOp.CYPHER})
MAX_SHARDS_AT_ONCE = 4096
SEARCHES = frozenset({GraphOp.VECTOR_SEARCH, GraphOp.TEXT_SEARCH, GraphOp.TEXT_STATS})  # may name several shards of the node (`shards`)
ID_READS = frozenset({GraphOp.VERTICES, GraphOp.NEIGHBOURS})  # so may these: the ids of those shards
# The edge protocol's messages between primaries, which may name several shards of the
# node too (torua.node.node_mux): the end of each half whose shard answers it.
EDGE_ENDS = {GraphOp.EDGE_ATTACH: "dst", GraphOp.EDGE_CONFIRM: "dst", GraphOp.EDGE_DETACH: "dst", GraphOp.EDGE_DROP: "src", GraphOp.EDGE_CHECK: "src"}


def vertex_data(row: VertexRow) -> VertexData:
    return VertexData(row.id, row.label, json.loads(row.properties), row.vector())


def edge_data(row: EdgeRow) -> EdgeData:
    return EdgeData(row.src, row.type, row.dst, json.loads(row.properties), row.weight)


class GraphService:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.locks = KeyLocks()
        self.edges = EdgeWork(node, self.locks)
        self.supports = SupportWork(self)
        self.edges.on_sweep = self.supports.repair
        self.answered: Answered[GraphReply] = Answered()
        self.served: collections.Counter[tuple[str, str]] = collections.Counter()  # (op, ok | error code), for /metrics

    # ------------------------------------------------------------- serving

    async def on_message(self, msg: Any, app: bool = False) -> None:
        """Reads answer inline; writes run as tasks so they group-commit. With `app`,
        torua.Client's request: its API key is checked first."""
        try:
            request = decode(GraphRequest, msg.data)
            if app:
                await self.node.admit_app("graph", request.op, {"graph": request.graph.name}, request.api_key, msg)
        except ToruaError as exc:
            (log.info if exc.code in ("unauthorized", "forbidden") else log.warning)("refused graph request on %s: %s", msg.subject, exc.message)
            await reply(msg, GraphReply(False, self.node.epoch, exc.code, exc.message))
            return
        except Exception:
            log.exception("unreadable graph request on %s", msg.subject)
            return
        if request.op in WRITES:
            self.node.tasks.spawn(self._answer(msg, request))
        else:
            await self._answer(msg, request)

    async def _answer(self, msg: Any, request: GraphRequest) -> None:
        try:
            answer = await self.handle(request)
        except ToruaError as exc:
            answer = GraphReply(False, self.node.epoch, exc.code, exc.message)
        except ShardClosed as exc:  # the copy was closed under the request: ask the map again
            answer = GraphReply(False, self.node.epoch, "moved", f"node {self.node.config.id} no longer serves shard {request.shard_id} ({exc})")
        except Exception as exc:
            log.exception("graph %s on shard %s failed", request.op, request.shard_id)
            answer = GraphReply(False, self.node.epoch, "internal", str(exc))
        op = request.op if request.op in GraphOp.values() else "other"
        self.served[(op, "ok" if answer.ok else answer.error_code or "internal")] += 1
        await reply(msg, answer)

    async def handle(self, request: GraphRequest) -> GraphReply:
        validate_shard(request.shard_id, self.node.num_shards)
        checks.graph_ref(request.graph)
        handler = self._handlers.get(request.op)
        if handler is None:
            raise ToruaError("bad_request", f"unknown graph operation {request.op!r}")
        checks.fence(request.not_after, time.time(), request.op in WRITES)
        if request.shards:
            return await self._each_shard(request)
        if not request.request_id or request.op not in REMEMBERED:
            return await handler(request)
        if len(request.request_id) > MAX_REQUEST_ID:
            raise ToruaError("bad_request", f"request_id is over {MAX_REQUEST_ID} characters")
        key = (request.shard_id, request.graph.uid, request.request_id)
        # A retry waits for the attempt still running, then answers as it did.
        async with self.locks.hold(("request", key)):
            earlier = self.answered.get(key)
            if earlier is not None:
                return replace(earlier, epoch=self.node.epoch)
            answer = await handler(request)
            self.answered.put(key, answer)
            return answer

    @functools.cached_property
    def _handlers(self) -> dict[str, Callable[[GraphRequest], Awaitable[GraphReply]]]:
        return {
            GraphOp.VERTEX_PUT: self.vertex_put,
            GraphOp.VERTEX_GET: self.vertex_get,
            GraphOp.VERTEX_DELETE: self.vertex_delete,
            GraphOp.EDGE_PUT: self.edge_put,
            GraphOp.EDGE_DELETE: self.edge_delete,
            GraphOp.EDGES: self.list_edges,
            GraphOp.IMPORT: self.import_batch,
            GraphOp.VERTICES: self.vertices,
            GraphOp.NEIGHBOURS: self.neighbours,
            GraphOp.STATS: self.stats,
            GraphOp.DROP: self.drop,
            GraphOp.EDGE_ATTACH: self.edges.attach,
            GraphOp.EDGE_DETACH: self.edges.detach,
            GraphOp.EDGE_DROP: self.edges.drop,
            GraphOp.EDGE_CHECK: self.edges.check,
            GraphOp.EDGE_CONFIRM: self.edges.confirm,
            GraphOp.SUPPORT: self.support,
            **{op: self.index_query for op in INDEX_QUERIES},
        }

    async def _each_shard(self, request: GraphRequest) -> GraphReply:
        """A search (or text statistics) for several shards of this node at once (one
        request per node instead of one per shard), checked once: each shard searched as
        on its own and answered in a part of its own, its refusal included; the shards
        whose index is current one after the other in one thread hop (each shard's hop of
        its own was most of a small shard's search), the others each once its index has
        caught up. The
        edge protocol's messages (`_edge_parts`) and reads of ids (`_id_parts`) for
        several shards go their own ways."""
        if request.op not in SEARCHES and request.op not in EDGE_ENDS and request.op not in ID_READS:
            raise ToruaError("bad_request", f"only {', '.join(sorted(SEARCHES | set(EDGE_ENDS) | ID_READS))} take several shards")
        if len(set(request.shards)) != len(request.shards) or len(request.shards) > MAX_SHARDS_AT_ONCE:
            raise ToruaError("bad_request", f"shards names a shard twice, or more than {MAX_SHARDS_AT_ONCE}")
        for shard in request.shards:
            validate_shard(shard, self.node.num_shards)
        if request.op in EDGE_ENDS:
            return await self._edge_parts(request)
        if request.op in ID_READS:
            return await self._id_parts(request)
        uid, timeout = request.graph.uid, index_query_seconds(request.timeout)
        try:
            search = self._search(request)
        except ToruaError as exc:  # the request's own fault: every shard's answer, as each shard's own request would say
            parts = [ShardHits(s, [], exc.code, exc.message) for s in request.shards]
        else:
            # The shards whose index is current are searched one after the other in one
            # thread hop (`run_together`), each one whose index must catch up first on its own.
            found: dict[int, ShardHits] = {}
            ready: list[tuple[int, GraphIndex]] = []
            behind: list[tuple[int, GraphIndex]] = []
            for shard in request.shards:
                try:
                    index = self._index_of(shard, request)
                except ToruaError as exc:
                    found[shard] = ShardHits(shard, [], exc.code, exc.message)
                    continue
                except ShardClosed as exc:
                    found[shard] = ShardHits(shard, [], "moved", self._gone(shard, exc))
                    continue
                (ready if index.current_for(uid) else behind).append((shard, index))

            async def alone(shard: int, index: GraphIndex) -> ShardHits:
                try:
                    result = await index.query(search.fn(index), search.empty, timeout, uid)
                except Exception as exc:
                    result = exc
                return self._search_part(shard, request, result)

            deadline = time.monotonic() + timeout
            together = run_together([functools.partial(index.query_now, search.fn(index), search.empty, deadline, uid) for _, index in ready])
            results, late = await asyncio.gather(together, asyncio.gather(*(alone(shard, index) for shard, index in behind)))
            found.update((shard, self._search_part(shard, request, result)) for (shard, _), result in zip(ready, results))
            found.update((part.shard, part) for part in late)
            parts = [found[s] for s in request.shards]
        # Only this node's k best can be among the k best of all: the rest stay home.
        best = {h.id for h in merge_hits({p.shard: p.hits for p in parts}, request.k)}
        return GraphReply(True, self.node.epoch, parts=[replace(p, hits=[h for h in p.hits if h.id in best]) for p in parts])

    async def _edge_parts(self, request: GraphRequest) -> GraphReply:
        """Edge protocol halves for several shards of this node (torua.node.node_mux):
        each shard's halves handled as a message of its own, concurrently; an answer
        per half, in order, and a part naming each shard that could not serve its own
        (its halves' answers are placeholders the sender does not read)."""
        if len(request.halves) > BATCH:
            raise ToruaError("bad_request", f"at most {BATCH} halves at once")
        end = EDGE_ENDS[request.op]
        by_shard: dict[int, list[int]] = {}
        for i, half in enumerate(request.halves):
            rules.validate_vertex_id(getattr(half, end), end)
            by_shard.setdefault(rules.vertex_shard(request.graph.name, getattr(half, end), self.node.num_shards), []).append(i)
        strays = sorted(set(by_shard) - set(request.shards))
        if strays:
            raise ToruaError("bad_request", f"halves whose {end} is on shard {strays[0]}, which shards does not name")
        answers: list[EdgeHalf] = [EdgeHalf(h.src, h.type, h.dst, h.token, HalfState.ABSENT) for h in request.halves]

        async def one(shard: int, indexes: list[int]) -> ShardHits:
            try:
                reply = await self.handle(replace(request, shard_id=shard, shards=[], halves=[request.halves[i] for i in indexes]))
            except ToruaError as exc:
                return ShardHits(shard, [], exc.code, exc.message)
            except ShardClosed as exc:
                return ShardHits(shard, [], "moved", self._gone(shard, exc))
            for i, half in zip(indexes, reply.halves):
                answers[i] = half
            return ShardHits(shard)

        parts = await asyncio.gather(*(one(shard, indexes) for shard, indexes in by_shard.items()))
        return GraphReply(True, self.node.epoch, halves=answers, parts=[p for p in parts if p.error_code])

    async def _id_parts(self, request: GraphRequest) -> GraphReply:
        """A read of ids of several shards of this node (`vertices`, or `neighbours`: one
        traversal hop; a client's `Graph.get_vertices` and `Graph.edges_of`): each
        shard's ids read as a request of its own for that shard would be (a hop's with
        its `limit`), concurrently; one answer of their rows (and edges), shard after
        shard (`truncated` if any shard's was), and a part naming each shard that could
        not serve its own (the sender asks those on their own)."""
        by_shard: dict[int, list[str]] = {}
        for id in request.ids:
            by_shard.setdefault(rules.vertex_shard(request.graph.name, rules.validate_vertex_id(id), self.node.num_shards), []).append(id)
        strays = sorted(set(by_shard) - set(request.shards))
        if strays:
            raise ToruaError("bad_request", f"ids on shard {strays[0]}, which shards does not name")

        async def one(shard: int, ids: list[str]) -> GraphReply | ShardHits:
            try:
                return await self.handle(replace(request, shard_id=shard, shards=[], ids=ids))
            except ToruaError as exc:
                return ShardHits(shard, [], exc.code, exc.message)
            except ShardClosed as exc:
                return ShardHits(shard, [], "moved", self._gone(shard, exc))

        answers = await asyncio.gather(*(one(shard, ids) for shard, ids in sorted(by_shard.items())))
        read = [a for a in answers if isinstance(a, GraphReply)]
        return GraphReply(
            True, self.node.epoch, vertices=[v for a in read for v in a.vertices], missing=[i for a in read for i in a.missing],
            edges=[e for a in read for e in a.edges], truncated=any(a.truncated for a in read), parts=[a for a in answers if isinstance(a, ShardHits)],
        )

    # ------------------------------------------------------------- helpers

    def _reading(self, request: GraphRequest, check: bool = True) -> GraphRows:
        """The rows of a copy that may serve this read; `not_found` for a graph deleted
        here (unless the caller checks that itself: `check` False)."""
        rows = rows_of(self.node.admit(request.shard_id, f"graph {request.op}", writes=False, eventual=request.eventual))
        if check and (settings := rows.graph(request.graph.uid)) is not None and settings.dropped:
            raise _deleted(request)
        return rows

    def _vertex_id(self, request: GraphRequest, id: object, what: str = "id") -> str:
        return checks.vertex_in_shard(request.graph.name, id, request.shard_id, self.node.num_shards, what)

    def _max_properties(self) -> int:
        return self.node.config.graph_max_properties_bytes

    # --------------------------------------------------------------- vertices

    async def vertex_put(self, request: GraphRequest) -> GraphReply:
        if request.vertex is None:
            raise ToruaError("bad_request", "vertex.put needs a vertex")
        op = self.vertex_op(request, request.vertex)
        store, rows = writing(self.node, request)
        async with self.locks.hold(vertex_lock(op.uid, op.id)):
            created = rows.vertex(op.uid, op.id) is None
            seq = await self.node.write(request.shard_id, [*ensure_ops(rows, request.graph), op], "graph vertex.put")
        return GraphReply(True, self.node.epoch, created=created, seq=seq)

    def vertex_op(self, request: GraphRequest, vertex: VertexData) -> VertexPut:
        id = self._vertex_id(request, vertex.id)
        label = rules.validate_label(vertex.label)
        properties = checks.canonical_properties(vertex.properties, self._max_properties())
        embedding = rules.validate_embedding(vertex.embedding, request.graph.vector_dim, repr(id))
        return VertexPut(request.graph.uid, id, label, properties, embedding)

    async def vertex_get(self, request: GraphRequest) -> GraphReply:
        id = self._vertex_id(request, request.id)
        dropped, row = self._reading(request, check=False).live_vertex(request.graph.uid, id, request.with_embedding)
        if dropped:
            raise _deleted(request)
        if row is None:
            raise ToruaError("not_found", f"vertex {id!r} is not in graph {request.graph.name!r}")
        return GraphReply(True, self.node.epoch, vertex=vertex_data(row))

    async def vertex_delete(self, request: GraphRequest) -> GraphReply:
        """Idempotent: the vertex, every half this shard holds for it, and an outbox task
        for each half held elsewhere (sent at once, and by repair until acknowledged)."""
        id = self._vertex_id(request, request.id)
        store, rows = writing(self.node, request)
        uid = request.graph.uid
        async with self.locks.hold(vertex_lock(uid, id)):
            ops = cascade(uid, id, rows.edges_of(uid, id))
            if len(ops) == 1 and rows.vertex(uid, id) is None:
                return GraphReply(True, self.node.epoch, seq=store.last_seq())
            seq = await self.node.write(request.shard_id, ops, "graph vertex.delete")
        if len(ops) > 1:
            self.edges.kick()  # its outbox
        return GraphReply(True, self.node.epoch, seq=seq)

    async def vertices(self, request: GraphRequest) -> GraphReply:
        ids = checks.ids_in_shard(request.graph.name, request.ids, request.shard_id, self.node.num_shards)
        found = self._reading(request).vertices(request.graph.uid, ids, request.with_embedding)
        return GraphReply(
            True, self.node.epoch, vertices=[vertex_data(found[i]) for i in dict.fromkeys(ids) if i in found], missing=[i for i in dict.fromkeys(ids) if i not in found]
        )

    # ------------------------------------------------------------------ edges

    def edge_spec(self, request: GraphRequest, edge: EdgeData | None) -> EdgeSpec:
        if edge is None:
            raise ToruaError("bad_request", f"{request.op} needs an edge")
        src = self._vertex_id(request, edge.src, "src")
        dst = rules.validate_vertex_id(edge.dst, "dst")
        return EdgeSpec(
            src, rules.validate_type(edge.type), dst,
            checks.canonical_properties(edge.properties, self._max_properties()), rules.validate_weight(edge.weight),
        )

    async def edge_put(self, request: GraphRequest) -> GraphReply:
        """`created`: the edge did not exist before (its out-half was not committed)."""
        spec = self.edge_spec(request, request.edge)
        store, rows = writing(self.node, request)
        if self.dst_shard(request, spec.dst) == request.shard_id:
            outcomes, created, seq = await self.local_edge_puts(request, rows, [spec], "graph edge.put")
            if outcomes[0] is not None:
                raise outcomes[0]
            return GraphReply(True, self.node.epoch, created=created[0], seq=seq)
        before = rows.edge(request.graph.uid, *spec.key)
        outcome = (await self.edges.put_many(request.shard_id, request.graph, rows, [spec]))[0]
        if outcome is not None:
            raise outcome
        return GraphReply(True, self.node.epoch, created=before is None or before.out_state != "committed", seq=store.last_seq())

    async def local_edge_puts(
        self, request: GraphRequest, rows: GraphRows, specs: Sequence[EdgeSpec], what: str = "graph import"
    ) -> tuple[list[ToruaError | None], list[bool], int]:
        """Edges whose ends are both on this shard, in one write: each one's outcome
        (None: done), whether it is new (its out-half was not committed), and the
        shard's seq after them. A batch naming an edge twice: the last one wins."""
        uid = request.graph.uid
        last = {spec.key: i for i, spec in enumerate(specs)}
        outcomes: list[ToruaError | None] = [None] * len(specs)
        ends = [id for spec in specs for id in (spec.src, spec.dst)]
        async with self.locks.hold(*{vertex_lock(uid, id) for id in ends}):
            found = rows.existing(uid, ends)
            stored = rows.edges_by_key(uid, last)
            ops: list[Operation] = []
            for i, spec in enumerate(specs):
                missing = [(end, id) for end, id in (("src", spec.src), ("dst", spec.dst)) if id not in found]
                if missing:
                    outcomes[i] = ToruaError("not_found", f"vertex {missing[0][1]!r} ({missing[0][0]}) is not in graph {request.graph.name!r}")
                elif last[spec.key] == i:
                    ops.extend(local_put_ops(uid, spec.src, spec.type, spec.dst, spec.properties, spec.weight, stored.get(spec.key)))
            created = [(row := stored.get(spec.key)) is None or row.out_state != "committed" for spec in specs]
            if ops:
                seq = await self.node.write(request.shard_id, [*ensure_ops(rows, request.graph), *ops], what)
            else:
                seq = self.node.holdings[request.shard_id].store.last_seq()  # type: ignore[union-attr]
        return outcomes, created, seq

    async def edge_delete(self, request: GraphRequest) -> GraphReply:
        spec = self.edge_spec(request, request.edge)
        store, rows = writing(self.node, request)
        await self.edges.delete(request.shard_id, request.graph, rows, spec)
        return GraphReply(True, self.node.epoch, seq=store.last_seq())

    def dst_shard(self, request: GraphRequest, dst: str) -> int:
        if not self.node.num_shards:
            raise ToruaError("unavailable", f"node {self.node.config.id} does not know the cluster's shard count yet")
        return rules.vertex_shard(request.graph.name, dst, self.node.num_shards)

    async def list_edges(self, request: GraphRequest) -> GraphReply:
        id = self._vertex_id(request, request.id)
        types = rules.validate_types(list(request.types))
        limit = checks.limit_in(request.limit, rules.MAX_EDGES_PAGE)
        rows = self._reading(request)
        if rows.vertex(request.graph.uid, id) is None:
            raise ToruaError("not_found", f"vertex {id!r} is not in graph {request.graph.name!r}")
        try:
            page, cursor = rows.edges(request.graph.uid, id, Direction(request.direction), types, limit, request.cursor)
        except ValueError as exc:
            raise ToruaError("bad_request", str(exc)) from None
        return GraphReply(True, self.node.epoch, edges=[edge_data(e) for e in page], next_cursor=cursor)

    async def neighbours(self, request: GraphRequest) -> GraphReply:
        """One traversal hop: the rows of the frontier ids held here (and those missing),
        and their visible edges (at most `limit`; `truncated` if there were more)."""
        ids = checks.ids_in_shard(request.graph.name, request.ids, request.shard_id, self.node.num_shards)
        types = rules.validate_types(list(request.types))
        limit = checks.limit_in(request.limit, checks.MAX_HOP_EDGES)
        if not isinstance(request.each, int) or not 0 <= request.each <= checks.MAX_HOP_EDGES:
            raise ToruaError("bad_request", f"each must be 0 (no bound) to {checks.MAX_HOP_EDGES}")
        rows = self._reading(request)
        uid = request.graph.uid
        found = rows.vertices(uid, ids, request.with_embedding)
        present = [i for i in dict.fromkeys(ids) if i in found]
        edges, truncated = rows.neighbours(uid, present, Direction(request.direction), types, limit, request.each)
        return GraphReply(
            True, self.node.epoch, vertices=[vertex_data(found[i]) for i in present], missing=[i for i in dict.fromkeys(ids) if i not in found],
            edges=[edge_data(e) for e in edges], truncated=truncated,
        )

    # ------------------------------------------------------------------ import

    async def import_batch(self, request: GraphRequest) -> GraphReply:
        """The batch's vertices (of this shard), then its edges (whose src is here): good
        lines applied, bad ones named (`ImportProblem`). A line already stored as it is
        writes nothing, so importing the same batch again changes nothing."""
        if len(request.vertices) > checks.MAX_IMPORT_LINES or len(request.edges) > checks.MAX_IMPORT_LINES:
            raise ToruaError("value_too_large", f"an import batch holds at most {checks.MAX_IMPORT_LINES} vertices and {checks.MAX_IMPORT_LINES} edges")
        store, rows = writing(self.node, request)
        uid = request.graph.uid
        problems: list[ImportProblem] = []
        vertex_ops: list[VertexPut] = []
        for index, vertex in enumerate(request.vertices):
            try:
                vertex_ops.append(self.vertex_op(request, vertex))
            except ToruaError as exc:
                problems.append(ImportProblem("vertex", index, exc.code, exc.message))
        if vertex_ops:
            async with self.locks.hold(*(vertex_lock(uid, op.id) for op in vertex_ops)):
                stored = rows.vertices(uid, [op.id for op in vertex_ops], with_embedding=True)
                changed = [op for op in vertex_ops if not same_vertex(stored.get(op.id), op)]
                if changed:
                    await self.node.write(request.shard_id, [*ensure_ops(rows, request.graph), *changed], "graph import")
        specs: list[tuple[int, EdgeSpec]] = []
        for index, edge in enumerate(request.edges):
            try:
                specs.append((index, self.edge_spec(request, edge)))
            except ToruaError as exc:
                problems.append(ImportProblem("edge", index, exc.code, exc.message))
        local = [(i, s) for i, s in specs if self.dst_shard(request, s.dst) == request.shard_id]
        remote = [(i, s) for i, s in specs if self.dst_shard(request, s.dst) != request.shard_id]
        edges_ok = 0
        outcomes = (await self.local_edge_puts(request, rows, [s for _, s in local]))[0] if local else []
        if remote:
            outcomes += await self.edges.put_many(request.shard_id, request.graph, rows, [s for _, s in remote])
        for (index, _), outcome in zip([*local, *remote], outcomes):
            if outcome is None:
                edges_ok += 1
            else:
                problems.append(ImportProblem("edge", index, outcome.code, outcome.message))
        problems.sort(key=lambda p: (p.kind != "vertex", p.index))
        return GraphReply(
            True, self.node.epoch, counts={"vertices": len(vertex_ops), "edges": edges_ok}, problems=problems, seq=store.last_seq()
        )

    async def support(self, request: GraphRequest) -> GraphReply:
        """GraphRAG's evidence for vertices and edges whose src is here (torua.node.graph_support)."""
        store, rows = writing(self.node, request)
        return await self.supports.handle(request, store, rows)

    # ---------------------------------------------------------------- graphs

    async def stats(self, request: GraphRequest) -> GraphReply:
        return GraphReply(True, self.node.epoch, counts=self._reading(request).graph_stats(request.graph.uid))

    async def drop(self, request: GraphRequest) -> GraphReply:
        """Every row of the graph goes from this shard (a tombstone of its uid stays, so a
        late request for it is refused); idempotent."""
        store, rows = writing(self.node, request)
        settings = rows.graph(request.graph.uid)
        if settings is not None and settings.dropped:
            return GraphReply(True, self.node.epoch, seq=store.last_seq())
        seq = await self.node.write(request.shard_id, [GraphDrop(request.graph.uid)], "graph drop")
        return GraphReply(True, self.node.epoch, seq=seq)

    async def index_query(self, request: GraphRequest) -> GraphReply:
        """Vector, text and Cypher queries: the Kuzu index's (torua.graph.index), which
        first catches up with every write acknowledged before the query came."""
        index = self._index_of(request.shard_id, request)
        uid, timeout = request.graph.uid, index_query_seconds(request.timeout)
        try:
            if request.op in SEARCHES:
                search = self._search(request)
                return self._search_reply(request, await index.query(search.fn(index), search.empty, timeout, uid))
            query = self._query_text(request.query)
            columns, rows, truncated = await index.cypher(uid, query, dict(request.params), timeout=timeout)
            return GraphReply(True, self.node.epoch, columns=columns, rows=rows, truncated=truncated)
        except QueryRefused as exc:
            raise ToruaError("bad_request", str(exc)) from None
        except IndexBehind as exc:
            raise ToruaError("unavailable", str(exc), retry_after=1.0) from None

    def _index_of(self, shard_id: int, request: GraphRequest) -> GraphIndex:
        """The index of the copy of `shard_id` that may serve `request` (an index query):
        the copy's fence (`moved`, `stale_epoch`), `unavailable` for a copy without an
        index, `not_found` for a graph deleted here."""
        store = self.node.admit(shard_id, f"graph {request.op}", writes=False, eventual=request.eventual)
        index = next((e for e in store.writer.engines if e.name == INDEX_ENGINE), None)
        if not isinstance(index, GraphIndex):
            raise ToruaError("unavailable", f"node {self.node.config.id} has no graph index (vector, text and Cypher queries) for shard {shard_id}")
        settings = rows_of(store).graph(request.graph.uid)
        if settings is not None and settings.dropped:
            raise _deleted(request)
        return index

    def _search(self, request: GraphRequest) -> "_Search":
        """A vector search, text statistics or text search as the request asks it, checked
        (the same for every shard it names): what each shard's index runs."""
        uid, label = request.graph.uid, rules.validate_label(request.label, "label")
        if request.op == GraphOp.VECTOR_SEARCH:
            vector = rules.validate_vector(request.vector, request.graph.vector_dim, "vector")
            k = checks.limit_in(request.k, rules.MAX_K, "k")
            return _Search(lambda index: index.vector_query(uid, vector, k, label, request.properties), [])
        query = self._query_text(request.query)
        if request.op == GraphOp.TEXT_STATS:
            return _Search(lambda index: index.text_stats_query(uid, query), (0, {}))
        k = checks.limit_in(request.k, rules.MAX_K, "k")
        term_docs = dict(request.term_docs)
        return _Search(lambda index: index.text_search_query(uid, query, k, label, request.docs, term_docs, request.properties), [])

    def _search_reply(self, request: GraphRequest, result: Any) -> GraphReply:
        if request.op == GraphOp.TEXT_STATS:
            docs, term_docs = result
            return GraphReply(True, self.node.epoch, docs=docs, term_docs=term_docs)
        return GraphReply(True, self.node.epoch, hits=_hits(result, request.properties))

    def _search_part(self, shard: int, request: GraphRequest, result: Any) -> ShardHits:
        """One shard's part of a search of several (`run_together`'s result, or what it raised)."""
        if isinstance(result, IndexBehind):
            return ShardHits(shard, [], "unavailable", str(result))
        if isinstance(result, ToruaError):
            return ShardHits(shard, [], result.code, result.message)
        if isinstance(result, ShardClosed):
            return ShardHits(shard, [], "moved", self._gone(shard, result))
        if isinstance(result, BaseException):
            raise result
        reply = self._search_reply(request, result)
        return ShardHits(shard, reply.hits, docs=reply.docs, term_docs=reply.term_docs)

    def _gone(self, shard: int, exc: ShardClosed) -> str:
        return f"node {self.node.config.id} no longer serves shard {shard} ({exc})"

    @staticmethod
    def _query_text(query: object) -> str:
        if not isinstance(query, str) or not query.strip():
            raise ToruaError("bad_request", "query must not be empty")
        if len(query) > rules.MAX_QUERY_CHARS:
            raise ToruaError("bad_request", f"query is longer than {rules.MAX_QUERY_CHARS} characters")
        return query


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class _Search:
    """A checked search: the query each shard's index runs (`fn(index)`), and its answer
    where the shard holds no index file (nothing to search)."""

    fn: Callable[[GraphIndex], Callable[[Any], Any]]
    empty: Any


def _hits(hits: list[tuple[str, str, float, str]], properties: bool) -> list[GraphHit]:
    """A search's hits as sent: with their properties parsed, or none (a caller that
    wants only ids and scores: a chunk's whole text is most of a hit)."""
    if not properties:
        return [GraphHit(i, l, s) for i, l, s, _ in hits]
    return [GraphHit(i, l, s, json.loads(p)) for i, l, s, p in hits]


def index_query_seconds(sent: float) -> float:
    """How long an index query (its index catching up included) may take on the node:
    the sender's timeout less the time its answer needs to get back, so that the sender
    gets an answer (`unavailable` when the index is still behind) rather than none.

    >>> index_query_seconds(0), index_query_seconds(5.0), index_query_seconds(0.1)
    (4.0, 4.8, 0.05)
    """
    if not sent or sent <= 0:
        return INDEX_QUERY_SECONDS
    return min(MAX_INDEX_QUERY_SECONDS, max(sent / 2, sent - INDEX_ANSWER_MARGIN))


def rows_of(store: ShardStore) -> GraphRows:
    engine = store.engine(ENGINE)
    assert isinstance(engine, GraphRows)
    return engine


def writing(node: "Node", request: GraphRequest) -> tuple[ShardStore, GraphRows]:
    """The store of a primary that may write now (fenced as `Node.write` is: `moved`,
    `stale_epoch`), and its rows; `not_found` for a graph deleted here."""
    store = node.admit(request.shard_id, f"graph {request.op}", writes=True, meter=False)
    rows = rows_of(store)
    settings = rows.graph(request.graph.uid)
    if settings is not None and settings.dropped:
        raise _deleted(request)
    return store, rows


def _deleted(request: GraphRequest) -> ToruaError:
    return ToruaError("not_found", f"graph {request.graph.name!r} was deleted")


def same_vertex(row: VertexRow | None, op: VertexPut) -> bool:
    if row is None:
        return False
    embedding = None if op.embedding is None else pack_vector(op.embedding)
    return (row.label, row.properties, row.embedding) == (op.label, op.properties, embedding)

