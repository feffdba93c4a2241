"""`torua.Client.graph(name)`: one graph from Python.

Vertex and edge operations go in one hop to the node holding the vertex's shard
(``torua.node.<id>.graph``), as `torua.Client`'s key-value operations do: the
client follows the shard map and watches the graph catalog (JetStream bucket
``torua_graphs``) for the graph's `GraphRef`. Everything that spans shards
(create, delete, counts, import, traverse, shortest path, search, Cypher) goes
through the gateways' NATS API (``torua.api.graph.*``), which plans it. Without
the map or the catalog (no JetStream access, the cluster forming), every call
goes through the NATS API.

    async with Client("nats://127.0.0.1:4222") as db:
        people = db.graph("people")
        await people.create()
        await people.put_vertex("ada", "Person", {"born": 1815})
        await people.put_vertex("charles", "Person")
        await people.put_edge("ada", "knows", "charles")
        print(await people.traverse(["ada"], max_hops=2))

Every call checks its input with the rules the gateway and the nodes apply
(`torua.graph.rules`) before anything is sent, and raises `ToruaError` with the
code the REST API would use (`bad_request`, `not_found`, `conflict`,
`value_too_large`, `unavailable`, `timeout`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Iterable

from nats.errors import Error as NatsError

from torua.graph import imports, rules
from torua.graph.catalog import CatalogEntry
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EdgeData, GraphReply, GraphRequest, SupportItem, VertexData
from torua.protocol.vocabulary import GraphOp

if TYPE_CHECKING:
    from torua.client import Client

MAX_SUPPORT_ITEMS = 1000  # per request (torua.node.graph_support.MAX_ITEMS)
HOP_EDGES = 100_000  # edges one `edges_of` request asks a shard for at most (torua.node.graph_checks.MAX_HOP_EDGES)


def pages_both(ids: Sequence[str], outgoing: dict[str, list[dict[str, Any]]], incoming: dict[str, list[dict[str, Any]]], limit: int) -> dict[str, list[dict[str, Any]]]:
    """Each of `ids`' first page of `limit` edges in both directions, as `edges` gives it
    (its out-edges, then its in-edges, a loop once among the out-edges), from its first
    pages of `limit` out-edges and in-edges.

    >>> e = lambda s, d: {"src": s, "type": "r", "dst": d}
    >>> pages_both(["a"], {"a": [e("a", "a"), e("a", "b")]}, {"a": [e("a", "a"), e("x", "a")]}, 3)["a"] == [e("a", "a"), e("a", "b"), e("x", "a")]
    True
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for vertex_id in ids:
        mine = outgoing[vertex_id]
        loops = {(e["src"], e["type"], e["dst"]) for e in mine if e["src"] == e["dst"]}
        out[vertex_id] = (mine + [e for e in incoming[vertex_id] if (e["src"], e["type"], e["dst"]) not in loops])[:limit]
    return out


def _size(item: VertexData | EdgeData) -> int:
    """About the bytes `item` takes in a request (to cut batches that fit a message)."""
    ids = item.id if isinstance(item, VertexData) else item.src + item.type + item.dst
    return 64 + len(ids.encode()) + len(json.dumps(item.properties, ensure_ascii=False).encode()) + 10 * len(getattr(item, "embedding", None) or ())


def _vertex(reply: GraphReply, with_embedding: bool) -> dict[str, Any] | None:
    v = reply.vertex
    if v is None:
        return None
    out: dict[str, Any] = {"id": v.id, "label": v.label, "properties": v.properties}
    if with_embedding and v.embedding is not None:
        out["embedding"] = v.embedding
    return out


# the writes a fenced graph's requests carry their fence in (`Graph.fenced`)
FENCED_OPS = frozenset({GraphOp.VERTEX_PUT, GraphOp.VERTEX_DELETE, GraphOp.EDGE_PUT, GraphOp.EDGE_DELETE, GraphOp.IMPORT, GraphOp.SUPPORT})


class Graph:
    """One graph of the cluster (it need not exist yet: `create` makes it)."""

    def __init__(self, client: "Client", name: str) -> None:
        self.client = client
        self.name = rules.validate_graph_name(name)
        self._not_after: Callable[[], float] | None = None

    def fenced(self, not_after: Callable[[], float]) -> "Graph":
        """This graph, its writes fenced: each one straight to its node (never through
        a gateway) carries `not_after()` (Unix seconds, read as it is sent), and the
        node refuses it (`fenced`) once its clock is past that. A GraphRAG worker's
        writes of a document it may lose to another worker (torua.rag.claims)."""
        other = Graph(self.client, self.name)
        other._not_after = not_after
        return other

    def _fence(self, op: GraphOp) -> dict[str, float]:
        return {"not_after": self._not_after()} if self._not_after is not None and op in FENCED_OPS else {}

    def _unfenced(self, what: str) -> None:
        """A write through the gateway, which carries no fence: refused for a fenced graph."""
        if self._not_after is not None:
            raise ToruaError("unavailable", f"a fenced {what} goes straight to its node: this client cannot read the shard map or the graph catalog")

    # ------------------------------------------------------------ plumbing

    async def _entry(self) -> CatalogEntry | None:
        """The graph's catalog entry, or None when this client cannot read the catalog
        (then the gateway answers); `not_found` when there is no such graph."""
        catalog = await self.client._graph_catalog()
        if catalog is None:
            return None
        try:
            return await catalog.get(self.name)
        except ToruaError as exc:
            if exc.code == "unavailable":
                return None
            raise

    async def _direct(self, vertex_id: str, op: GraphOp, entry: CatalogEntry, **fields: Any) -> GraphReply:
        """One request to the primary of `vertex_id`'s shard."""
        return await self._to_shard(rules.vertex_shard(self.name, vertex_id, self._num_shards()), op, entry, **fields)

    def _num_shards(self) -> int:
        c = self.client
        assert c._maps is not None and c._maps.current is not None
        return c._maps.current.num_shards

    async def _to_shard(self, shard: int, op: GraphOp, entry: CatalogEntry, **fields: Any) -> GraphReply:
        """One request to the primary of `shard`."""
        c = self.client
        assert c._router is not None
        ref = entry.ref()
        try:
            reply = await c._router.call(
                shard, lambda epoch: GraphRequest(op, shard, epoch, ref, **fields, **self._fence(op)), c.timeout, kind="graph", reply_type=GraphReply,
            )
        except NatsError as exc:
            from torua.client import nats_error

            raise nats_error(f"shard {shard}", exc) from None
        if not reply.ok:
            raise ToruaError(reply.error_code or "internal", reply.error_message or "the node refused the request")
        return reply

    async def _one_hop(self) -> CatalogEntry | None:
        """The entry when this call can go straight to a node, else None."""
        return await self._entry() if self.client._direct() else None

    async def _api(self, call: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.client._api(f"graph.{call}", {"graph": self.name, **{k: v for k, v in payload.items() if v is not None}})

    # ------------------------------------------------------------ the graph

    async def create(self, vector_dim: int = 0, metric: str = "cosine", text_properties: Iterable[str] = ()) -> dict[str, Any]:
        """Create the graph; `created` is False when it existed with these settings (`conflict`: with others)."""
        return await self._api("create", {"vector_dim": vector_dim, "metric": metric, "text_properties": list(text_properties)})

    async def info(self) -> dict[str, Any]:
        """Its settings and its counts over every shard (`not_found` if there is no such graph)."""
        return await self._api("get", {})

    async def delete(self) -> None:
        """Delete the graph with all its data (idempotent)."""
        await self._api("delete", {})

    # ------------------------------------------------------------ vertices and edges (one hop)

    async def put_vertex(
        self, vertex_id: str, label: str = "", properties: dict[str, Any] | None = None, embedding: list[float] | None = None,
    ) -> bool:
        """Create or replace the vertex (its edges stay); True if it did not exist."""
        entry = await self._one_hop()
        if entry is None:
            self._unfenced("vertex put")
            rules.vertex(vertex_id, label, properties, None, 0)  # what can be checked without the graph's vector_dim
            data = await self._api("vertex.put", {"id": vertex_id, "label": label, "properties": properties, "embedding": embedding})
            return bool(data.get("created"))
        vertex = rules.vertex(vertex_id, label, properties, embedding, entry.settings.vector_dim)
        return (await self._direct(vertex.id, GraphOp.VERTEX_PUT, entry, vertex=vertex, request_id=uuid.uuid4().hex)).created

    async def get_vertex(self, vertex_id: str, embedding: bool = False) -> dict[str, Any] | None:
        """``{"id", "label", "properties", "embedding"?}``, or None when there is no such vertex."""
        rules.validate_vertex_id(vertex_id)
        entry = await self._one_hop()
        if entry is None:
            try:
                return await self._api("vertex.get", {"id": vertex_id, "embedding": embedding})
            except ToruaError as exc:
                if exc.code == "not_found" and "vertex" in exc.message:
                    return None
                raise
        try:
            reply = await self._direct(vertex_id, GraphOp.VERTEX_GET, entry, id=vertex_id, with_embedding=embedding)
        except ToruaError as exc:
            if exc.code == "not_found":
                return None
            raise
        return _vertex(reply, embedding)

    async def delete_vertex(self, vertex_id: str) -> None:
        """Delete the vertex and its edges (idempotent)."""
        rules.validate_vertex_id(vertex_id)
        entry = await self._one_hop()
        if entry is None:
            self._unfenced("vertex delete")
            await self._api("vertex.delete", {"id": vertex_id})
        else:
            await self._direct(vertex_id, GraphOp.VERTEX_DELETE, entry, id=vertex_id)

    async def put_edge(self, src: str, type: str, dst: str, properties: dict[str, Any] | None = None, weight: float = 1.0) -> bool:
        """Create or replace the edge; both vertices must exist (`not_found` names the missing one). True if it did not exist."""
        edge = rules.edge(src, type, dst, properties, weight)
        entry = await self._one_hop()
        if entry is None:
            self._unfenced("edge put")
            data = await self._api("edge.put", {"src": src, "type": type, "dst": dst, "properties": properties, "weight": edge.weight})
            return bool(data.get("created"))
        return (await self._direct(edge.src, GraphOp.EDGE_PUT, entry, edge=edge, request_id=uuid.uuid4().hex)).created

    async def delete_edge(self, src: str, type: str, dst: str) -> None:
        edge = rules.edge(src, type, dst)
        entry = await self._one_hop()
        if entry is None:
            self._unfenced("edge delete")
            await self._api("edge.delete", {"src": src, "type": type, "dst": dst})
        else:
            await self._direct(edge.src, GraphOp.EDGE_DELETE, entry, edge=edge)

    async def edges(
        self, vertex_id: str, direction: str = "out", type: str | None = None, limit: int = 100, cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the vertex's edges (``{"src", "type", "dst", "weight", "properties"}``) and the cursor of the next (None: the end)."""
        rules.validate_vertex_id(vertex_id)
        way = rules.validate_direction(direction)
        types = [rules.validate_type(type)] if type else []
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= rules.MAX_EDGES_PAGE:
            raise ToruaError("bad_request", f"limit must be an integer from 1 to {rules.MAX_EDGES_PAGE}")
        entry = await self._one_hop()
        if entry is None:
            data = await self._api("edges", {"id": vertex_id, "direction": direction, "type": type, "limit": limit, "cursor": cursor})
            return list(data.get("edges") or []), data.get("next_cursor")
        reply = await self._direct(vertex_id, GraphOp.EDGES, entry, id=vertex_id, direction=way, types=types, limit=limit, cursor=cursor or "")
        edges = [{"src": e.src, "type": e.type, "dst": e.dst, "weight": e.weight, "properties": e.properties} for e in reply.edges]
        return edges, reply.next_cursor or None

    async def edges_of(self, ids: Sequence[str], direction: str = "out", type: str | None = None, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
        """The first page of `limit` edges of each of `ids` (`direction` "out", "in" or
        "both"), as `edges` gives it, read with one request per node (a traversal hop
        over the ids the shards it leads hold, by the shard map) instead of one per id;
        a shard whose hop would return more edges than one may is read id by id, and
        one its node did not serve (moved meanwhile), or every shard of a node that
        refused the request (a node of an older release), is asked on its own. An id
        that is not a vertex has none. "both" reads the out-edges and the in-edges so
        (a hop in both directions could not tell which of two asked ids an edge between
        them was read for) and puts each id's page together (`pages_both`)."""
        way = rules.validate_direction(direction)
        if way.value == "both":
            unique = list(dict.fromkeys(ids))
            outgoing, incoming = await asyncio.gather(self.edges_of(unique, "out", type, limit), self.edges_of(unique, "in", type, limit))
            return pages_both(unique, outgoing, incoming, limit)
        for vertex_id in ids:
            rules.validate_vertex_id(vertex_id)
        types = [rules.validate_type(type)] if type else []
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= rules.MAX_EDGES_PAGE:
            raise ToruaError("bad_request", f"limit must be an integer from 1 to {rules.MAX_EDGES_PAGE}")
        unique = list(dict.fromkeys(ids))

        async def page_of(vertex_id: str) -> list[dict[str, Any]]:
            try:
                return (await self.edges(vertex_id, direction, type, limit))[0]
            except ToruaError as exc:
                if exc.code != "not_found":
                    raise
                return []

        entry = await self._one_hop()
        if entry is None:
            return dict(zip(unique, await asyncio.gather(*(page_of(i) for i in unique))))
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in unique}

        async def take(reply: GraphReply, part: list[str]) -> None:
            """The reply's edges of `part` into `out`; when it was cut short, `part` read id by id."""
            if reply.truncated:
                out.update(zip(part, await asyncio.gather(*(page_of(i) for i in part))))
                return
            for e in reply.edges:  # each id's edges in a row, in the order of its pages
                page = out[e.src if way.value == "out" else e.dst]
                if len(page) < limit:
                    page.append({"src": e.src, "type": e.type, "dst": e.dst, "weight": e.weight, "properties": e.properties})

        answers = await self._read_by_node(
            entry, GraphOp.NEIGHBOURS, unique, lambda part: {"direction": way, "types": types, "limit": min(HOP_EDGES, limit * len(part)), "each": limit},
        )
        await asyncio.gather(*(take(reply, part) for reply, part in answers))
        return out

    async def get_vertices(self, ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Each of `ids`' vertex as `get_vertex` gives it (None: there is no such
        vertex), read with one request per node (the ids of the shards it leads)
        instead of one per id (a GraphRAG query's chunks and documents)."""
        for vertex_id in ids:
            rules.validate_vertex_id(vertex_id)
        unique = list(dict.fromkeys(ids))
        entry = await self._one_hop()
        if entry is None:
            return dict(zip(unique, await asyncio.gather(*(self.get_vertex(i) for i in unique))))
        out: dict[str, dict[str, Any] | None] = dict.fromkeys(unique)
        for reply, _ in await self._read_by_node(entry, GraphOp.VERTICES, unique, lambda part: {}):
            out.update({v.id: {"id": v.id, "label": v.label, "properties": v.properties} for v in reply.vertices})
        return out

    async def _read_by_node(
        self, entry: CatalogEntry, op: GraphOp, ids: list[str], fields: Callable[[list[str]], dict[str, Any]],
    ) -> list[tuple[GraphReply, list[str]]]:
        """`op` (a read of `ids`) with one request per node, naming the shards it leads
        (by the shard map) and carrying `fields(its ids)`: each answer with the ids it
        read. A shard its node did not serve (moved meanwhile), or every shard of a
        node that refused the request (a node of an older release), is asked on its
        own; a request that timed out fails the read (asking again would only wait
        again)."""
        by_shard: dict[int, list[str]] = {}
        for vertex_id in ids:
            by_shard.setdefault(rules.vertex_shard(self.name, vertex_id, self._num_shards()), []).append(vertex_id)
        answers: list[tuple[GraphReply, list[str]]] = []

        async def alone(shard: int) -> None:
            part = by_shard[shard]
            answers.append((await self._to_shard(shard, op, entry, ids=part, **fields(part)), part))

        async def node(held: list[int]) -> None:
            if len(held) == 1:
                return await alone(held[0])
            part = [i for shard in held for i in by_shard[shard]]
            try:
                reply = await self._to_shard(held[0], op, entry, ids=part, shards=held, **fields(part))
            except ToruaError as exc:
                if exc.code == "timeout":
                    raise
                await asyncio.gather(*(alone(shard) for shard in held))
                return
            refused = {p.shard for p in reply.parts}
            answers.append((reply, [i for shard in held if shard not in refused for i in by_shard[shard]]))
            await asyncio.gather(*(alone(shard) for shard in sorted(refused)))

        await asyncio.gather(*(node(held) for held in self._by_node(by_shard)))
        return answers

    def _by_node(self, shards: Iterable[int]) -> list[list[int]]:
        """`shards` grouped by the node that leads them (the client's shard map); a shard
        with no primary on its own."""
        c = self.client
        assert c._maps is not None and c._maps.current is not None
        groups: dict[str, list[int]] = {}
        alone: list[list[int]] = []
        for shard in shards:
            primary = c._maps.current.entry(shard).primary
            if primary is None:
                alone.append([shard])
            else:
                groups.setdefault(primary, []).append(shard)
        return [*groups.values(), *alone]

    async def support(self, items: list[SupportItem]) -> list[int]:
        """GraphRAG's evidence (`SupportItem`: chunks added to and removed from the
        support of vertices and edges; docs/design/graphrag.md section 3): how many
        chunks support each target afterwards, in order. Items go to the primary of
        their `src`'s shard, one request per shard, shards at once; a vertex is made by
        its first chunk and deleted with its last, an edge put with its support's
        weight or deleted. Idempotent: the same items again change nothing. Needs the
        shard map and the graph catalog (a worker's login), not the gateway."""
        if not isinstance(items, list) or not all(isinstance(i, SupportItem) for i in items):
            raise ToruaError("bad_request", "support takes a list of SupportItem")
        for item in items:
            rules.validate_vertex_id(item.src, "src")
        entry = await self._one_hop()
        if entry is None:
            raise ToruaError("unavailable", "support goes straight to the nodes: this client cannot read the shard map or the graph catalog")
        c = self.client
        assert c._maps is not None and c._maps.current is not None
        by_shard: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            by_shard.setdefault(rules.vertex_shard(self.name, item.src, c._maps.current.num_shards), []).append(index)
        sizes = [0] * len(items)

        async def one(indexes: list[int]) -> None:
            first = items[indexes[0]].src
            for start in range(0, len(indexes), MAX_SUPPORT_ITEMS):
                part = indexes[start : start + MAX_SUPPORT_ITEMS]
                reply = await self._direct(first, GraphOp.SUPPORT, entry, supports=[items[i] for i in part])
                for i, size in zip(part, reply.support):
                    sizes[i] = size

        await asyncio.gather(*(one(indexes) for indexes in by_shard.values()))
        return sizes

    async def put_many(self, vertices: Sequence[VertexData] = (), edges: Sequence[EdgeData] = ()) -> None:
        """Put `vertices`, then `edges`, in as few requests as fit: an import's batches,
        one shard's after another, the shards at once, straight to their primaries (a
        worker's login, as for `support`). What a GraphRAG worker writes per document:
        one request per shard instead of one per vertex and edge. Idempotent (a vertex
        stored as it is writes nothing); a line a shard refuses raises its error (other
        lines may have been applied: put them again)."""
        entry = await self._one_hop()
        if entry is None:
            raise ToruaError("unavailable", "put_many goes straight to the nodes: this client cannot read the shard map or the graph catalog")
        dim = entry.settings.vector_dim
        checked_v = [rules.vertex(v.id, v.label, v.properties, v.embedding, dim) for v in vertices]
        checked_e = [rules.edge(e.src, e.type, e.dst, e.properties, e.weight) for e in edges]
        num_shards, room = self._num_shards(), self._batch_room()
        for kind, cut in (
            ("vertex", imports.batches([(i, v, _size(v)) for i, v in enumerate(checked_v)], imports.vertex_shard(self.name, num_shards), max_bytes=room)),
            ("edge", imports.batches([(i, e, _size(e)) for i, e in enumerate(checked_e)], imports.edge_shard(self.name, num_shards), max_bytes=room)),
        ):
            await asyncio.gather(*(self._import_batches(entry, kind, [b for b in cut if b.shard == shard]) for shard in {b.shard for b in cut}))

    def _batch_room(self) -> int:
        nc = self.client._nc
        return min(imports.BATCH_BYTES, max(64 << 10, (getattr(nc, "max_payload", 0) or (1 << 20)) // 2))

    async def _import_batches(self, entry: CatalogEntry, kind: str, batches: list[imports.Batch[Any]]) -> None:
        for batch in batches:
            fields = {"vertices": batch.payload} if kind == "vertex" else {"edges": batch.payload}
            reply = await self._to_shard(batch.shard, GraphOp.IMPORT, entry, **fields)
            if reply.problems:
                first = reply.problems[0]
                raise ToruaError(first.error_code or "internal", f"{kind} {first.index} of a batch to shard {batch.shard}: {first.error_message}")

    # ------------------------------------------------------------ across shards (the gateway plans)

    async def import_ndjson(self, lines: bytes | str) -> dict[str, Any]:
        """Import NDJSON lines (``{"vertex": {...}}`` or ``{"edge": {...}}``, one per line):
        ``{"vertices", "edges", "errors": [{"line", "error"}]}``. Every vertex line is
        applied before the edge lines; importing the same lines again changes nothing.
        One call is one request: `torua graph import` sends a big file in batches."""
        return await self._api("import", {"ndjson": lines})

    async def traverse(
        self, seeds: list[str], direction: str = "out", types: list[str] | None = None, max_hops: int = rules.DEFAULT_HOPS,
        limit: int = rules.DEFAULT_TRAVERSE_LIMIT, edges: bool = False,
    ) -> dict[str, Any]:
        """``{"vertices": [{"id", "label", "properties", "hops"}], "edges"?, "truncated"}``."""
        return await self._api("traverse", {"from": seeds, "direction": direction, "types": types, "max_hops": max_hops, "limit": limit, "edges": edges})

    async def shortest_path(
        self, source: str, target: str, direction: str = "out", types: list[str] | None = None, max_hops: int = rules.DEFAULT_HOPS,
    ) -> dict[str, Any] | None:
        """``{"path": [ids], "edges": [...]}``, or None when there is none within `max_hops`
        (`not_found` still names a vertex that does not exist)."""
        try:
            return await self._api("shortest_path", {"from": source, "to": target, "direction": direction, "types": types, "max_hops": max_hops})
        except ToruaError as exc:
            if exc.code == "not_found" and exc.message.startswith("no path"):
                return None
            raise

    async def vector_search(self, vector: list[float], k: int = 10, label: str | None = None, properties: bool = True) -> list[dict[str, Any]]:
        """The `k` nearest vertices, best first: ``[{"id", "label", "score", "properties"}]``
        (without `properties`: no ``"properties"``, less for every shard to read and send)."""
        return await self._search("search.vector", {"vector": vector, "k": k, "label": label}, properties)

    async def text_search(self, query: str, k: int = 10, label: str | None = None, properties: bool = True) -> list[dict[str, Any]]:
        """The `k` best matches of the graph's text_properties, best first (as `vector_search`)."""
        return await self._search("search.text", {"query": query, "k": k, "label": label}, properties)

    async def _search(self, call: str, payload: dict[str, Any], properties: bool) -> list[dict[str, Any]]:
        if properties:
            return (await self._api(call, payload))["hits"]
        try:
            hits = (await self._api(call, {**payload, "properties": False}))["hits"]
        except ToruaError as exc:
            if exc.code != "bad_request" or "properties" not in exc.fields:
                raise
            hits = (await self._api(call, payload))["hits"]  # a gateway of a release before the field (it refuses unknown ones)
        for hit in hits:
            hit.pop("properties", None)
        return hits

    async def cypher(self, query: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A read-only Cypher query on every shard: ``{"columns", "rows": [{"shard", "values"}], "truncated"}``."""
        return await self._api("cypher", {"query": query, "params": params})
