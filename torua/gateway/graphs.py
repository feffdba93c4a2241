"""The gateway's graph operations (BRIEF section 8; docs/design/graph.md sections 5
and 6): the `Gateway` methods that `torua.gateway.endpoints` declares for
``/graphs/...`` and ``torua.api.graph.*``.

A thin driver: the catalog is `torua.graph.catalog_store`, what may be written
is `torua.graph.rules`, and every read that spans shards is planned by a pure
module (`torua.graph.traversal`, `torua.graph.search`, `torua.graph.imports`)
that this one feeds with the nodes' answers. Requests go to each shard's primary
over ``torua.node.<id>.graph`` (`GraphRequest` / `GraphReply`) through the
`ShardRouter`, which retries `moved` and `stale_epoch` within the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, TypeVar

from nats.errors import Error as NatsError, MaxPayloadError

from torua.graph import rules
from torua.graph.catalog import CatalogEntry, GraphSettings, conflict_message, on_create
from torua.graph.catalog_store import GraphCatalog
from torua.graph.imports import BATCH_BYTES, Batch, ImportOutcome, ImportParser, LineSplitter, batches, edge_shard, vertex_shard
from torua.graph.search import concat_rows, merge_hits, sum_counts, sum_text_stats
from torua.graph.traversal import PathSearch, ShardAnswer, ShardCall, Traversal
from torua.gateway.params import NdjsonBody
from torua.protocol.errors import HTTP_STATUS, ToruaError
from torua.protocol.messages import EdgeData, GraphHit, GraphReply, GraphRequest, ShardHits, VertexData
from torua.protocol.vocabulary import GraphOp
from torua.routing import RETRY_AFTER_SECONDS

if TYPE_CHECKING:
    from torua.config import GatewayConfig
    from torua.protocol.messages import ShardMap
    from torua.routing import ShardRouter

log = logging.getLogger("torua.gateway.graphs")

T = TypeVar("T")

# Left of a deadline for answering once a traversal stops expanding.
ANSWER_MARGIN = 0.05


def vertex_view(v: VertexData, with_embedding: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": v.id, "label": v.label, "properties": v.properties}
    if with_embedding and v.embedding is not None:
        out["embedding"] = v.embedding
    return out


def edge_view(e: EdgeData) -> dict[str, Any]:
    return {"src": e.src, "type": e.type, "dst": e.dst, "weight": e.weight, "properties": e.properties}


SEARCH_RETRY_S = 0.25  # the least time left for which a search asks a shard its node did not search again


def hit_view(h: GraphHit, properties: bool = True) -> dict[str, Any]:
    if not properties:  # what a node of a release before the request's `properties` sent is dropped here
        return {"id": h.id, "label": h.label, "score": h.score}
    return {"id": h.id, "label": h.label, "score": h.score, "properties": h.properties}


def first_error(errors: list[ToruaError]) -> ToruaError:
    """Of several shards' refusals, the one to answer: the caller's fault (4xx) before the cluster's."""
    return min(errors, key=lambda e: (HTTP_STATUS.get(e.code, 500) >= 500, errors.index(e)))


async def gather_or_raise(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Every result, in order; when some failed, after all are done, the error to answer (`first_error`)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for r in errors:
        if not isinstance(r, ToruaError):
            raise r
    if errors:
        raise first_error(errors)  # type: ignore[arg-type]
    return results  # type: ignore[return-value]


class GraphEndpoints:
    """The graph half of `torua.gateway.service.Gateway` (which it is mixed into). Its
    own helpers are named ``_graph_*``, so none is taken by a Gateway method of the
    same name; what it uses of the Gateway is declared below."""

    router: "ShardRouter"
    config: "GatewayConfig"
    graphs: GraphCatalog
    nc: Any

    async def _map(self) -> "ShardMap":  # the Gateway's
        raise NotImplementedError

    # ------------------------------------------------------------ plumbing

    async def _graph_entry(self, name: str) -> CatalogEntry:
        return await self.graphs.get(name)

    async def _graph_ask(self, shard: int, build: Callable[[int], GraphRequest], timeout: float, patient: bool = False) -> GraphReply:
        """One request to `shard`'s primary; a refusal comes back as `ToruaError`. `patient`:
        the node holds the request to its `timeout` (an index query), so one attempt
        waits for all of it (`ShardRouter.call`)."""
        try:
            reply = await self.router.call(shard, build, timeout, kind="graph", reply_type=GraphReply, patient=patient)
        except MaxPayloadError:
            raise ToruaError("value_too_large", "the request is larger than the NATS server's max_payload") from None
        except NatsError as exc:
            raise ToruaError("unavailable", f"NATS: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        if not reply.ok:
            from torua.gateway.service import peer_message

            code = reply.error_code or "internal"
            raise ToruaError(code, peer_message(code, reply.error_message, f"shard {shard}'s node") or "the node refused the request")
        return reply

    async def _graph_ask_vertex(self, entry: CatalogEntry, vertex_id: str, op: GraphOp, **fields: Any) -> GraphReply:
        """One request about `vertex_id` to its shard."""
        shard = rules.vertex_shard(entry.name, vertex_id, (await self._map()).num_shards)
        ref = entry.ref()
        return await self._graph_ask(shard, lambda epoch: GraphRequest(op, shard, epoch, ref, **fields), self.config.request_timeout)

    async def _graph_ask_all(self, build: Callable[[int, int], GraphRequest], timeout: float, shards: Any = None) -> dict[int, GraphReply]:
        """`build(shard, epoch)` to every shard (or those given) at once; every answer, by shard."""
        if shards is None:
            shards = range((await self._map()).num_shards)
        shards = list(shards)
        return dict(zip(shards, await gather_or_raise(self._graph_ask(s, lambda epoch, s=s: build(s, epoch), timeout) for s in shards)))

    async def _graph_query_all(self, build: Callable[[int, int, float], GraphRequest], deadline: float) -> dict[int, GraphReply]:
        """An index query (vector, text, Cypher) to every shard at once: `build(shard, epoch,
        seconds left)`. The node waits for its index to catch up within the seconds it is
        given, so each request carries what is left of the deadline and is not sent again
        before it (a retry would queue behind the first)."""
        loop = asyncio.get_running_loop()
        shards = list(range((await self._map()).num_shards))
        left = max(0.1, deadline - loop.time())

        def ask(shard: int) -> Awaitable[GraphReply]:
            return self._graph_ask(shard, lambda epoch: build(shard, epoch, max(0.05, deadline - loop.time())), left, patient=True)

        return dict(zip(shards, await gather_or_raise(ask(s) for s in shards)))

    async def _graph_search_all(self, build: Callable[[int, int, float], GraphRequest], deadline: float) -> dict[int, ShardHits]:
        """A vector or text search (or text statistics) on every shard, one request per
        node naming the shards it leads (`shards`): fewer messages, and the node
        searches them at once.
        A shard its node did not search (moved since the map was read, its index
        behind, a node of an older release that answers no parts) is asked on its own
        with what is left of the deadline, as `_graph_query_all` asks; its refusal then
        is the answer. With less than `SEARCH_RETRY_S` left, the first refusal is the
        answer (a retry could only time out, and would hide why). Every shard's
        answer, by shard."""
        loop = asyncio.get_running_loop()
        shard_map = await self._map()
        by_node: dict[str | None, list[int]] = {}
        for shard in range(shard_map.num_shards):
            by_node.setdefault(shard_map.entry(shard).primary, []).append(shard)
        parts: dict[int, ShardHits] = {}
        failed: dict[int, ToruaError] = {}

        def left() -> float:
            return max(0.05, deadline - loop.time())

        async def ask_node(shards: list[int]) -> None:
            try:
                reply = await self._graph_ask(shards[0], lambda epoch: replace(build(shards[0], epoch, left()), shards=shards), left(), patient=True)
            except ToruaError as exc:
                failed.update({shard: exc for shard in shards})
                return
            answered = {p.shard: p for p in reply.parts}
            for shard in shards:
                part = answered.get(shard)
                if part is None:
                    failed[shard] = ToruaError("unavailable", f"the node of shard {shard} did not search it", retry_after=RETRY_AFTER_SECONDS)
                elif part.error_code:
                    failed[shard] = ToruaError(part.error_code, part.error_message)
                else:
                    parts[shard] = part

        await asyncio.gather(*(ask_node(shards) for node, shards in by_node.items() if node is not None))
        again = sorted([*failed, *by_node.get(None, [])])
        if again and deadline - loop.time() < SEARCH_RETRY_S and failed:
            raise first_error([failed[s] for s in sorted(failed)])
        if again:
            replies = await gather_or_raise(self._graph_ask(s, lambda epoch, s=s: build(s, epoch, left()), left(), patient=True) for s in again)
            parts.update({s: ShardHits(s, r.hits, docs=r.docs, term_docs=r.term_docs) for s, r in zip(again, replies)})
        return parts

    async def _graph_drive(self, planner: Traversal | PathSearch, entry: CatalogEntry, deadline: float) -> bool:
        """Run a planner's hops, each hop's requests at once, until it is done (False)
        or the deadline stops it (True)."""
        ref = entry.ref()
        loop = asyncio.get_running_loop()

        def request(call: ShardCall, epoch: int) -> GraphRequest:
            return GraphRequest(call.op, call.shard, epoch, ref, ids=list(call.ids), direction=call.direction, types=list(call.types), limit=call.limit)

        async def ask(call: ShardCall, timeout: float) -> ShardAnswer:
            parts = call.split()  # a node takes at most MAX_IDS ids at once
            replies = await gather_or_raise(self._graph_ask(part.shard, lambda epoch, p=part: request(p, epoch), timeout) for part in parts)
            return ShardAnswer.merged(ShardAnswer.of(reply) for reply in replies)

        while not planner.done:
            calls = planner.calls()
            remaining = deadline - loop.time()
            if remaining <= 0:
                planner.stop()
                return True
            try:
                answers = await gather_or_raise(ask(call, remaining) for call in calls)
            except ToruaError as exc:
                if exc.code == "timeout":  # a shard did not answer within the deadline: what was read stands
                    planner.stop()
                    return True
                raise
            planner.take({call.shard: answer for call, answer in zip(calls, answers)})
        return False

    # ------------------------------------------------------------ the catalog

    async def graph_list(self) -> dict[str, Any]:
        return {"graphs": [entry.view() for entry in await self.graphs.all()]}

    async def graph_create(self, graph: str, vector_dim: int = 0, metric: str = "cosine", text_properties: list[str] | None = None) -> dict[str, Any]:
        """Create `graph` (201), or find it with the same settings (200); other settings: `conflict`."""
        rules.validate_graph_name(graph)
        wanted = GraphSettings.checked(vector_dim, metric, text_properties)
        entry, created = await self.graphs.create(graph, wanted, time.time())
        if not created and on_create(entry, wanted) == "conflict":
            raise ToruaError("conflict", conflict_message(entry, wanted))
        return {**entry.view(), "created": created}

    async def graph_get(self, graph: str) -> dict[str, Any]:
        """The graph's settings, and its counts summed over every shard."""
        entry = await self._graph_entry(graph)
        ref = entry.ref()
        replies = await self._graph_ask_all(lambda shard, epoch: GraphRequest(GraphOp.STATS, shard, epoch, ref), self.config.request_timeout)
        return {**entry.view(), "counts": sum_counts(r.counts for r in replies.values())}

    async def graph_delete(self, graph: str) -> None:
        """Idempotent. The catalog entry goes first (the graph is gone for every request
        from then on); then every shard's primary is asked to drop its rows. A shard
        that misses it drops them on its own, seeing the catalog no longer has the uid."""
        rules.validate_graph_name(graph)
        entry = await self.graphs.delete(graph)
        if entry is None:
            return
        ref = entry.ref()
        try:
            await self._graph_ask_all(lambda shard, epoch: GraphRequest(GraphOp.DROP, shard, epoch, ref), self.config.request_timeout)
        except ToruaError as exc:
            log.warning("graph %s (uid %s) deleted; dropping its rows: %s (its shards drop them on their own)", graph, entry.uid, exc.message)

    # ------------------------------------------------------------ vertices and edges

    async def vertex_put(
        self, graph: str, id: str, label: str = "", properties: dict[str, Any] | None = None, embedding: list[float] | None = None,
    ) -> dict[str, Any]:
        entry = await self._graph_entry(graph)
        vertex = rules.vertex(id, label, properties, embedding, entry.settings.vector_dim)
        reply = await self._graph_ask_vertex(entry, vertex.id, GraphOp.VERTEX_PUT, vertex=vertex, request_id=uuid.uuid4().hex)
        return {"id": vertex.id, "created": reply.created}

    async def vertex_get(self, graph: str, id: str, embedding: bool = False) -> dict[str, Any]:
        entry = await self._graph_entry(graph)
        rules.validate_vertex_id(id)
        reply = await self._graph_ask_vertex(entry, id, GraphOp.VERTEX_GET, id=id, with_embedding=embedding)
        if reply.vertex is None:
            raise ToruaError("not_found", f"vertex {id!r} of graph {graph} does not exist")
        return vertex_view(reply.vertex, embedding)

    async def vertex_delete(self, graph: str, id: str) -> None:
        """Idempotent; its edges go with it (on every shard that holds a half)."""
        entry = await self._graph_entry(graph)
        rules.validate_vertex_id(id)
        await self._graph_ask_vertex(entry, id, GraphOp.VERTEX_DELETE, id=id)

    async def edge_put(
        self, graph: str, src: str, type: str, dst: str, properties: dict[str, Any] | None = None, weight: float = 1.0,
    ) -> dict[str, Any]:
        """To src's shard, whose primary writes both halves (docs/design/graph.md section 4);
        `not_found` names a missing endpoint."""
        entry = await self._graph_entry(graph)
        e = rules.edge(src, type, dst, properties, weight)
        reply = await self._graph_ask_vertex(entry, e.src, GraphOp.EDGE_PUT, edge=e, request_id=uuid.uuid4().hex)
        return {"src": e.src, "type": e.type, "dst": e.dst, "created": reply.created}

    async def edge_delete(self, graph: str, src: str, type: str, dst: str) -> None:
        entry = await self._graph_entry(graph)
        e = rules.edge(src, type, dst)
        await self._graph_ask_vertex(entry, e.src, GraphOp.EDGE_DELETE, edge=e)

    async def graph_edges(
        self, graph: str, id: str, direction: str = "out", type: str | None = None, limit: int = 100, cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of a vertex's edges, from its shard (both halves live there)."""
        entry = await self._graph_entry(graph)
        rules.validate_vertex_id(id)
        types = [rules.validate_type(type)] if type else []
        reply = await self._graph_ask_vertex(
            entry, id, GraphOp.EDGES, id=id, direction=rules.validate_direction(direction), types=types, limit=limit, cursor=cursor or "",
        )
        return {"edges": [edge_view(e) for e in reply.edges], "next_cursor": reply.next_cursor or None}

    # ------------------------------------------------------------ import

    async def graph_import(self, graph: str, ndjson: NdjsonBody) -> dict[str, Any]:
        """Every line read and checked first (a body over max_import_bytes changes
        nothing), then the vertices, in batches to their shards, then the edges, to
        their src's shards; a batch's lines a shard refused are named with their numbers."""
        entry = await self._graph_entry(graph)  # an unknown graph is refused before the body is read
        limit = self.config.max_import_bytes
        parser, splitter, size = ImportParser(entry.settings.vector_dim), LineSplitter(), 0
        async for chunk in ndjson.chunks():
            size += len(chunk)
            if size > limit:
                raise ToruaError("value_too_large", f"the import is larger than the limit of {limit} bytes (max_import_bytes); send it in parts")
            for number, line in splitter.feed(chunk):
                parser.feed(number, line)
        for number, line in splitter.finish():
            parser.feed(number, line)
        num_shards = (await self._map()).num_shards
        room = min(BATCH_BYTES, max(64 << 10, (getattr(self.nc, "max_payload", 0) or (1 << 20)) // 2))
        outcome = ImportOutcome(errors=list(parser.errors))
        failures: list[ToruaError] = []
        for kind, cut in (
            ("vertex", batches(parser.vertices, vertex_shard(graph, num_shards), max_bytes=room)),
            ("edge", batches(parser.edges, edge_shard(graph, num_shards), max_bytes=room)),
        ):
            failures += await self._graph_send_batches(entry, kind, cut, outcome)
        if failures and outcome.vertices == 0 and outcome.edges == 0:
            raise first_error(failures)  # nothing could be applied: the cluster's answer, not 200
        return outcome.view()

    async def _graph_send_batches(self, entry: CatalogEntry, kind: str, cut: list[Batch[Any]], outcome: ImportOutcome) -> list[ToruaError]:
        """Each shard's batches one after another, the shards at once; the failures."""
        ref, failures = entry.ref(), []
        per_shard: dict[int, list[Batch[Any]]] = {}
        for batch in cut:
            per_shard.setdefault(batch.shard, []).append(batch)

        def request(batch: Batch[Any], epoch: int) -> GraphRequest:
            if kind == "vertex":
                return GraphRequest(GraphOp.IMPORT, batch.shard, epoch, ref, vertices=batch.payload)
            return GraphRequest(GraphOp.IMPORT, batch.shard, epoch, ref, edges=batch.payload)

        async def send(shard_batches: list[Batch[Any]]) -> None:
            for batch in shard_batches:
                try:
                    reply = await self._graph_ask(batch.shard, lambda epoch, b=batch: request(b, epoch), self.config.request_timeout)
                except ToruaError as exc:
                    failures.append(exc)
                    outcome.failed(batch, f"shard {batch.shard}: {exc.message}")
                    continue
                outcome.applied(batch, kind, reply.problems)

        await asyncio.gather(*(send(shard_batches) for shard_batches in per_shard.values()))
        return failures

    # ------------------------------------------------------------ reads across shards

    async def graph_traverse(
        self, graph: str, seeds: list[str], direction: str = "out", types: list[str] | None = None, max_hops: int = rules.DEFAULT_HOPS,
        limit: int = rules.DEFAULT_TRAVERSE_LIMIT, edges: bool = False,
    ) -> dict[str, Any]:
        entry = await self._graph_entry(graph)
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout - ANSWER_MARGIN
        num_shards = (await self._map()).num_shards
        planner = Traversal(
            [rules.validate_vertex_id(s, "each of from") for s in seeds], rules.validate_direction(direction), rules.validate_types(types),
            rules.validate_hops(max_hops), limit, lambda vid: rules.vertex_shard(graph, vid, num_shards), want_edges=edges,
        )
        await self._graph_drive(planner, entry, deadline)
        result = planner.result()
        out: dict[str, Any] = {"vertices": [{**vertex_view(v), "hops": hops} for v, hops in result.vertices]}
        if edges:
            out["edges"] = [edge_view(e) for e in result.edges]
        out["truncated"] = result.truncated
        return out

    async def graph_shortest_path(
        self, graph: str, source: str, target: str, direction: str = "out", types: list[str] | None = None, max_hops: int = rules.DEFAULT_HOPS,
    ) -> dict[str, Any]:
        entry = await self._graph_entry(graph)
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout - ANSWER_MARGIN
        num_shards = (await self._map()).num_shards
        planner = PathSearch(
            rules.validate_vertex_id(source, "from"), rules.validate_vertex_id(target, "to"), rules.validate_direction(direction),
            rules.validate_types(types), rules.validate_hops(max_hops), lambda vid: rules.vertex_shard(graph, vid, num_shards),
        )
        stopped = await self._graph_drive(planner, entry, deadline)
        result = planner.result()
        if result.found:
            return {"path": result.path, "edges": [edge_view(e) for e in result.edges]}
        if result.missing is not None:
            raise ToruaError("not_found", f"vertex {result.missing!r} of graph {graph} does not exist")
        if stopped:
            raise ToruaError("timeout", f"no path from {source!r} to {target!r} found before the deadline ({self.config.request_timeout:g} s)")
        cut = "; some vertex had more edges than one hop reads, so one may exist" if result.incomplete else ""
        raise ToruaError("not_found", f"no path from {source!r} to {target!r} within {max_hops} hops{cut}")

    async def graph_vector_search(self, graph: str, vector: list[float], k: int = 10, label: str | None = None, properties: bool = True) -> dict[str, Any]:
        """Every shard's k nearest, merged (`torua.graph.search.merge_hits`); without
        `properties`, ids, labels and scores only."""
        entry = await self._graph_entry(graph)
        query = rules.validate_vector(vector, entry.settings.vector_dim, "vector")
        ref, deadline = entry.ref(), asyncio.get_running_loop().time() + self.config.request_timeout
        hits = await self._graph_search_all(
            lambda shard, epoch, left: GraphRequest(
                GraphOp.VECTOR_SEARCH, shard, epoch, ref, vector=query, k=k, label=label or "", timeout=left, properties=properties,
            ),
            deadline,
        )
        return {"hits": [hit_view(h, properties) for h in merge_hits({s: p.hits for s, p in hits.items()}, k)]}

    async def graph_text_search(self, graph: str, query: str, k: int = 10, label: str | None = None, properties: bool = True) -> dict[str, Any]:
        """Two rounds: every shard's statistics for the query's terms, summed; then every
        shard scores with those and its hits are merged (`torua.graph.search`)."""
        entry = await self._graph_entry(graph)
        if not entry.settings.text_properties:
            raise ToruaError("bad_request", f"graph {graph} has no text_properties to search; create it with text_properties")
        ref, loop = entry.ref(), asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        stats = await self._graph_search_all(
            lambda shard, epoch, left: GraphRequest(GraphOp.TEXT_STATS, shard, epoch, ref, query=query, label=label or "", timeout=left), deadline,
        )
        total = sum_text_stats((p.docs, p.term_docs) for p in stats.values())
        if total.docs == 0:
            return {"hits": []}
        hits = await self._graph_search_all(
            lambda shard, epoch, left: GraphRequest(
                GraphOp.TEXT_SEARCH, shard, epoch, ref, query=query, k=k, label=label or "", docs=total.docs, term_docs=total.term_docs, timeout=left,
                properties=properties,
            ),
            deadline,
        )
        return {"hits": [hit_view(h, properties) for h in merge_hits({s: p.hits for s, p in hits.items()}, k)]}

    async def graph_cypher(self, graph: str, query: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The query on every shard's part of the graph; each shard's rows with its number."""
        entry = await self._graph_entry(graph)
        ref, deadline = entry.ref(), asyncio.get_running_loop().time() + self.config.request_timeout
        replies = await self._graph_query_all(
            lambda shard, epoch, left: GraphRequest(GraphOp.CYPHER, shard, epoch, ref, query=query, params=params or {}, timeout=left), deadline,
        )
        columns, rows = concat_rows({s: (r.columns, r.rows) for s, r in replies.items()})
        return {"columns": columns, "rows": rows, "truncated": any(r.truncated for r in replies.values())}

