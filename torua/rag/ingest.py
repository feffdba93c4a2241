"""Writing a planned document into its corpus graph, and deleting one
(docs/design/graphrag.md sections 3 and 4). The driver of `torua.rag.pipeline`'s
plan: every write is idempotent (ids from content, supports as sets), so a job
redelivered after a worker died mid-document writes the same graph again.

The order, for a document d:

1. d's `Document` vertex is marked `ingesting` (its chunk list stays the one it
   had): a query shows a document's chunks only while it is `complete`;
2. each new chunk's entities gain its support (the first chunk makes an entity,
   with its name's embedding), then the chunk's vertex (text, offsets, embedding,
   and the entities and relations it supports, for its removal), its `HAS_CHUNK`
   and `MENTIONS` edges (the chunks' vertices, then these edges, in one
   `Graph.put_many`: an import batch per shard), and the relations' support;
3. kept chunks get their new offsets; chunks d no longer has lose what they
   supported (relations, then entities: an entity or relation nothing else supports
   goes) and go;
4. d's vertex is written `complete` with its chunk list: the commit point.

A delete marks d `deleting`, removes each chunk as in step 3, then d's vertex.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from torua.graph.client import Graph
from torua.protocol.messages import EdgeData, SupportItem, VertexData
from torua.rag import schema
from torua.rag.chunking import Chunk
from torua.rag.pipeline import DocumentPlan

AT_ONCE = 32  # vertex and edge writes of one document in flight at once


async def each(calls: Sequence[Any]) -> list[Any]:
    """Await `calls` (coroutine functions' results), at most `AT_ONCE` at a time, in order."""
    out: list[Any] = []
    for start in range(0, len(calls), AT_ONCE):
        out.extend(await asyncio.gather(*calls[start : start + AT_ONCE]))
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


class CorpusWriter:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    async def document(self, document_id: str) -> dict[str, Any] | None:
        """The `Document` vertex's properties (`status`, `chunks`, `metadata`), or None."""
        vertex = await self.graph.get_vertex(schema.document_vertex(document_id))
        return None if vertex is None else vertex["properties"]

    async def previous_chunks(self, document_id: str) -> list[str]:
        held = await self.document(document_id)
        return list(held.get("chunks") or []) if held else []

    async def _mark(self, document_id: str, status: str, chunks: list[str], metadata: dict[str, Any]) -> None:
        await self.graph.put_vertex(
            schema.document_vertex(document_id), schema.DOCUMENT,
            {"status": status, "chunks": chunks, "metadata": metadata, "updated_at": _now()},
        )

    async def write(self, plan: DocumentPlan, metadata: dict[str, Any], name_vectors: dict[str, np.ndarray], previous: list[str]) -> None:
        """`plan` into the graph (the module's steps 1 to 4); `name_vectors`: the embedding
        of each entity's name; `previous`: the chunk hashes the document held."""
        d = plan.document_id
        doc = schema.document_vertex(d)
        await self._mark(d, "ingesting", previous, metadata)
        entities: dict[str, SupportItem] = {}
        for item in plan.new:
            cid = item.chunk.vertex_id(d)
            for eid, count in item.mentions.items():
                kind, name = plan.entities[eid]
                entities.setdefault(eid, SupportItem(
                    eid, label=schema.ENTITY, properties={"name": name, "type": kind}, embedding=[float(x) for x in name_vectors[eid]],
                ))
                entities[eid].added[cid] = json.dumps({"mentions": count})
        if entities:
            await self.graph.support(list(entities.values()))
        await self.graph.put_many(
            [VertexData(item.chunk.vertex_id(d), schema.CHUNK, _chunk_properties(d, item.chunk, sorted(item.mentions), sorted(item.relations)),
                        [float(x) for x in item.embedding]) for item in plan.new],
            [EdgeData(doc, schema.HAS_CHUNK, item.chunk.vertex_id(d)) for item in plan.new]
            + [EdgeData(item.chunk.vertex_id(d), schema.MENTIONS, eid, {"count": n}) for item in plan.new for eid, n in item.mentions.items()],
        )
        relations: dict[tuple[str, str], SupportItem] = {}
        for item in plan.new:
            for (src, dst), predicates in item.relations.items():
                relations.setdefault((src, dst), SupportItem(src, schema.RELATED, dst)).added[item.chunk.vertex_id(d)] = json.dumps(dict(predicates))
        if relations:
            await self.graph.support(list(relations.values()))
        await each([self._move(d, chunk) for chunk in plan.kept])
        await each([self._remove_chunk(f"c/{d}/{h}") for h in plan.gone])
        await self._mark(d, "complete", [c.hash for c in plan.chunks], metadata)

    async def _move(self, document_id: str, chunk: Chunk) -> None:
        """A kept chunk's new place in its document (its text, embedding and evidence stay)."""
        vid = chunk.vertex_id(document_id)
        held = await self.graph.get_vertex(vid, embedding=True)
        if held is None:
            return
        properties = held["properties"]
        if (properties.get("index"), properties.get("start"), properties.get("end")) == (chunk.index, chunk.start, chunk.end):
            return
        await self.graph.put_vertex(vid, schema.CHUNK, {**properties, "index": chunk.index, "start": chunk.start, "end": chunk.end}, held.get("embedding"))

    async def _remove_chunk(self, vid: str) -> None:
        held = await self.graph.get_vertex(vid)
        if held is None:
            return
        properties = held["properties"]
        relations = [SupportItem(src, schema.RELATED, dst, removed=[vid]) for src, dst in properties.get("relations") or []]
        if relations:
            await self.graph.support(relations)
        entities = [SupportItem(eid, removed=[vid]) for eid in properties.get("entities") or []]
        if entities:
            await self.graph.support(entities)
        await self.graph.delete_vertex(vid)

    async def delete(self, document_id: str) -> bool:
        """Delete the document and its share of every entity and relation; False when it
        was not there (idempotent). Its chunks are the ones it lists and every one its
        `HAS_CHUNK` edges reach: a version written at the same time by another worker
        may have left chunks it does not list."""
        held = await self.document(document_id)
        if held is None:
            return False
        chunks = list(held.get("chunks") or [])
        await self._mark(document_id, "deleting", chunks, held.get("metadata") or {})
        linked = await self._linked_chunks(document_id)
        await each([self._remove_chunk(vid) for vid in dict.fromkeys([f"c/{document_id}/{h}" for h in chunks] + linked)])
        await self.graph.delete_vertex(schema.document_vertex(document_id))
        return True

    async def _linked_chunks(self, document_id: str) -> list[str]:
        """The chunk ids the document's `HAS_CHUNK` edges reach, every page."""
        out: list[str] = []
        cursor: str | None = None
        while True:
            page, cursor = await self.graph.edges(schema.document_vertex(document_id), direction="out", type=schema.HAS_CHUNK, limit=1000, cursor=cursor)
            out += [e["dst"] for e in page]
            if not cursor:
                return out


def _chunk_properties(document_id: str, chunk: Chunk, entities: list[str], relations: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "text": chunk.text, "document_id": document_id, "index": chunk.index, "start": chunk.start, "end": chunk.end,
        "entities": entities, "relations": [list(pair) for pair in relations],
    }
