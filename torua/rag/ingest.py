"""Writing a planned document into its corpus graph, and deleting one
(docs/design/graphrag.md sections 3 and 4). The driver of `torua.rag.pipeline`'s
plan: every write is idempotent (ids from content, supports as sets), so a job
redelivered after a worker died mid-document writes the same graph again.

The order, for a document d:

0. when d's stored vertex is not `complete` (a writer, or a delete, stopped before
   its end: killed, or paused past its claim and fenced off), every chunk it lists,
   plans or links (`HAS_CHUNK`) goes first, as in step 3, and d is written as new
   (its worker planned it so): such a chunk may have lost part of its support, or
   have given support it does not list;
1. d's `Document` vertex is marked `ingesting`: its chunk list stays the one it had
   (a query shows a document's chunks only while it is `complete`), and it names the
   chunks this version adds (`planned`), so step 0 finds each of them, even one whose
   `HAS_CHUNK` edge was never written;
2. the new chunks' vertices (text, offsets, embedding, and the entities and
   relations each supports, for its removal), then their `HAS_CHUNK` edges, in one
   `Graph.put_many` (an import batch per shard); then each new chunk's entities
   gain its support (the first chunk makes an entity, with its name's embedding),
   then the chunks' `MENTIONS` edges, then the relations' support;
3. kept chunks get their new offsets; chunks d no longer has lose what they
   supported (relations, then entities: an entity or relation nothing else supports
   goes) and go;
4. d's vertex is written `complete` with its chunk list: the commit point.

A worker writes the documents it planned together as one batch (`write`): each
step for all of them at once, one request per shard, so a document of a batch of
16 costs ~10 requests instead of ~18 alone. A document is still complete only at
its own step 4. Its writes are fenced by its claim (torua.rag.claims): a worker
that lost the claim (paused past it) has them refused, so no two versions' steps
interleave.

A delete marks d `deleting`, removes each chunk as in step 3, then d's vertex.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Previous:
    """What a document's stored vertex holds before a version is written."""

    chunks: list[str]  # the chunk hashes it lists
    complete: bool  # False: a writer (or a delete) stopped before its end; the version is then planned as new (step 0)
    planned: list[str] = field(default_factory=list)  # not complete: the chunk hashes the writer that stopped was adding


@dataclass(frozen=True)
class Planned:
    """A document ready to write: its plan, metadata, the embedding of each entity's
    name, and what it held before (`CorpusWriter.previous_of`; None: it was
    not there). Planned against `previous.chunks` when complete, else against none."""

    plan: DocumentPlan
    metadata: dict[str, Any]
    name_vectors: dict[str, np.ndarray]
    previous: Previous | None


class CorpusWriter:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    async def document(self, document_id: str) -> dict[str, Any] | None:
        """The `Document` vertex's properties (`status`, `chunks`, `metadata`), or None."""
        vertex = await self.graph.get_vertex(schema.document_vertex(document_id))
        return None if vertex is None else vertex["properties"]

    async def _mark(self, document_id: str, status: str, chunks: list[str], metadata: dict[str, Any]) -> None:
        await self.graph.put_many([_document(document_id, status, chunks, metadata)])

    async def previous_of(self, document_ids: Sequence[str]) -> list[Previous | None]:
        """What each document holds (None: it is not there), read at once (one request
        per node)."""
        held = await self.graph.get_vertices([schema.document_vertex(d) for d in document_ids])
        return [
            None if (v := held[schema.document_vertex(d)]) is None
            else Previous(list(v["properties"].get("chunks") or []), v["properties"].get("status") == "complete", list(v["properties"].get("planned") or []))
            for d in document_ids
        ]

    async def write(self, documents: Sequence[Planned]) -> None:
        """Planned documents into the graph (the module's steps 1 to 4), each step for
        all of them at once: one request per shard and step, whether the batch holds
        one document or sixteen (a worker writes the documents it planned together).
        Each document id once (two versions of one are written in turn)."""
        if len({p.plan.document_id for p in documents}) != len(documents):
            raise ValueError("a batch names each document once")
        unfinished = [p for p in documents if p.previous is not None and not p.previous.complete]
        if unfinished:  # step 0
            await asyncio.gather(*(self._remove_chunks(p.plan.document_id, p.previous.chunks + p.previous.planned) for p in unfinished if p.previous is not None))
        await self.graph.put_many([  # step 1
            _document(p.plan.document_id, "ingesting", p.previous.chunks if p.previous is not None and p.previous.complete else [], p.metadata,
                      planned=[item.chunk.hash for item in p.plan.new])
            for p in documents
        ])
        vertices: list[VertexData] = []
        entities: dict[str, SupportItem] = {}
        relations: dict[tuple[str, str], SupportItem] = {}
        has_chunk: list[EdgeData] = []
        mentions: list[EdgeData] = []
        for p in documents:
            d = p.plan.document_id
            for item in p.plan.new:
                cid = item.chunk.vertex_id(d)
                for eid, count in item.mentions.items():
                    kind, name = p.plan.entities[eid]
                    entities.setdefault(eid, SupportItem(
                        eid, label=schema.ENTITY, properties={"name": name, "type": kind}, embedding=np.asarray(p.name_vectors[eid], dtype=np.float64).tolist(),
                    ))
                    entities[eid].added[cid] = json.dumps({"mentions": count})
                for (src, dst), predicates in item.relations.items():
                    relations.setdefault((src, dst), SupportItem(src, schema.RELATED, dst)).added[cid] = json.dumps(dict(predicates))
                vertices.append(VertexData(cid, schema.CHUNK, _chunk_properties(d, item.chunk, sorted(item.mentions), sorted(item.relations)),
                                           np.asarray(item.embedding, dtype=np.float64).tolist()))
                has_chunk.append(EdgeData(schema.document_vertex(d), schema.HAS_CHUNK, cid))
                mentions += [EdgeData(cid, schema.MENTIONS, eid, {"count": n}) for eid, n in item.mentions.items()]
        await self.graph.put_many(vertices, has_chunk)
        if entities:
            await self.graph.support(list(entities.values()))
        if mentions:
            await self.graph.put_many((), mentions)
        if relations:
            await self.graph.support(list(relations.values()))
        d_of = [p.plan.document_id for p in documents]
        await each([self._move(d, chunk) for d, p in zip(d_of, documents) for chunk in p.plan.kept])
        await each([self._remove_chunk(f"c/{d}/{h}") for d, p in zip(d_of, documents) for h in p.plan.gone])
        await self.graph.put_many([_document(p.plan.document_id, "complete", [c.hash for c in p.plan.chunks], p.metadata) for p in documents])

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
        chunks = list(held.get("chunks") or []) + list(held.get("planned") or [])
        await self._mark(document_id, "deleting", chunks, held.get("metadata") or {})
        await self._remove_chunks(document_id, chunks)
        await self.graph.delete_vertex(schema.document_vertex(document_id))
        return True

    async def _remove_chunks(self, document_id: str, chunks: list[str]) -> None:
        """Remove the chunks the document lists or plans (`chunks`, their hashes) and
        every one its `HAS_CHUNK` edges reach (a writer of an older release that stopped
        before its end made chunks the vertex does not name)."""
        linked = await self._linked_chunks(document_id)
        await each([self._remove_chunk(vid) for vid in dict.fromkeys([f"c/{document_id}/{h}" for h in chunks] + linked)])

    async def _linked_chunks(self, document_id: str) -> list[str]:
        """The chunk ids the document's `HAS_CHUNK` edges reach, every page."""
        out: list[str] = []
        cursor: str | None = None
        while True:
            page, cursor = await self.graph.edges(schema.document_vertex(document_id), direction="out", type=schema.HAS_CHUNK, limit=1000, cursor=cursor)
            out += [e["dst"] for e in page]
            if not cursor:
                return out


def _document(document_id: str, status: str, chunks: list[str], metadata: dict[str, Any], planned: list[str] | None = None) -> VertexData:
    properties = {"status": status, "chunks": chunks, "metadata": metadata, "updated_at": _now()}
    if planned is not None:
        properties["planned"] = planned
    return VertexData(schema.document_vertex(document_id), schema.DOCUMENT, properties)


def _chunk_properties(document_id: str, chunk: Chunk, entities: list[str], relations: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "text": chunk.text, "document_id": document_id, "index": chunk.index, "start": chunk.start, "end": chunk.end,
        "entities": entities, "relations": [list(pair) for pair in relations],
    }
