"""A small real graph-rows engine for the graph index's tests: the rows of the graph
operations in the shard's SQLite database, in the writer's transaction (like
`torua.graph.rows.GraphRows`, reduced to what the index reads), and the
`GraphRowSource` the index is built from. Also `expected_index`: what the index must
hold for given rows, by the rules of `torua.graph.indexing`, written out plainly.

Its operations are routed to it by `registered()` (the writer hands each type to one
engine; the index is given its ops by the test, as the writer will once an op type
goes to several engines).
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torua.graph.indexing import (
    EdgeRow,
    GraphSpec,
    VertexRow,
    edge_visible,
    embedding_of,
    halves_after_delete,
    halves_after_put,
    state_after,
    vertex_text,
)
from torua.storage import operations
from torua.storage.engine import Chunk, EngineContext, EngineKind
from torua.storage.operations import EdgeDelete, EdgePut, GraphDrop, GraphEnsure, Operation, OutboxDone, VertexDelete, VertexPut

NAME = "graph_rows_model"
GRAPH_TYPES = (GraphEnsure, GraphDrop, VertexPut, VertexDelete, EdgePut, EdgeDelete, OutboxDone)


@contextmanager
def registered() -> Iterator[None]:
    saved = {cls.TYPE: operations.OPERATION_ENGINES.get(cls.TYPE) for cls in GRAPH_TYPES}
    for cls in GRAPH_TYPES:
        operations.OPERATION_ENGINES[cls.TYPE] = (NAME,)
    try:
        yield
    finally:
        for type_name, engine in saved.items():
            if engine is None:
                operations.OPERATION_ENGINES.pop(type_name, None)
            else:
                operations.OPERATION_ENGINES[type_name] = engine


def register() -> None:
    for cls in GRAPH_TYPES:
        operations.OPERATION_ENGINES[cls.TYPE] = (NAME,)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mg_graph (uid TEXT PRIMARY KEY, name TEXT, vector_dim INTEGER, metric TEXT, text_properties TEXT)",
    "CREATE TABLE IF NOT EXISTS mg_vertex (uid TEXT, id TEXT, label TEXT, properties TEXT, embedding BLOB, PRIMARY KEY (uid, id))",
    "CREATE TABLE IF NOT EXISTS mg_edge (uid TEXT, src TEXT, type TEXT, dst TEXT, halves TEXT, state TEXT, properties TEXT, weight REAL, PRIMARY KEY (uid, src, type, dst))",
)


def _pack(embedding: Sequence[float] | None) -> bytes | None:
    return None if embedding is None else struct.pack(f"<{len(embedding)}f", *embedding)


def apply_op(conn: sqlite3.Connection, op: Operation) -> None:
    if isinstance(op, GraphEnsure):
        conn.execute("INSERT OR IGNORE INTO mg_graph VALUES (?, ?, ?, ?, ?)", (op.uid, op.name, op.vector_dim, op.metric, json.dumps(op.text_properties)))
        return
    if isinstance(op, OutboxDone):
        return
    uid = op.uid  # type: ignore[union-attr]
    if isinstance(op, GraphDrop):
        for table in ("mg_graph", "mg_vertex", "mg_edge"):
            conn.execute(f"DELETE FROM {table} WHERE uid = ?", (uid,))
        return
    if conn.execute("SELECT 1 FROM mg_graph WHERE uid = ?", (uid,)).fetchone() is None:
        return
    if isinstance(op, VertexPut):
        conn.execute("INSERT OR REPLACE INTO mg_vertex VALUES (?, ?, ?, ?, ?)", (uid, op.id, op.label, op.properties, _pack(op.embedding)))
    elif isinstance(op, VertexDelete):
        conn.execute("DELETE FROM mg_vertex WHERE uid = ? AND id = ?", (uid, op.id))
        conn.execute("DELETE FROM mg_edge WHERE uid = ? AND (src = ? OR dst = ?)", (uid, op.id, op.id))
    elif isinstance(op, (EdgePut, EdgeDelete)):
        key = (uid, op.src, op.type, op.dst)
        row = conn.execute("SELECT halves, state, properties, weight FROM mg_edge WHERE uid = ? AND src = ? AND type = ? AND dst = ?", key).fetchone()
        before_halves, before_state, props, weight = row if row else ("", "", "{}", 1.0)
        if isinstance(op, EdgePut):
            halves = halves_after_put(before_halves, op.halves)
            state = state_after(halves, before_state, op.halves, op.state)
            props, weight = op.properties, op.weight
        else:
            if not row:
                return
            halves = halves_after_delete(before_halves, op.halves)
            state = before_state if halves in ("out", "both") else ""
        if halves:
            conn.execute("INSERT OR REPLACE INTO mg_edge VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*key, halves, state, props, weight))
        else:
            conn.execute("DELETE FROM mg_edge WHERE uid = ? AND src = ? AND type = ? AND dst = ?", key)
    else:
        raise TypeError(f"{NAME} cannot apply {type(op).__name__}")


class ModelGraphRows:
    """The transactional engine, and (`source`) the rows as the index reads them."""

    name: str = NAME
    kind: EngineKind = "transactional"
    formats: tuple[str, ...] = ()

    def __init__(self, context: EngineContext) -> None:
        self.context = context

    def load(self, conn: sqlite3.Connection, create: bool) -> None:
        for stmt in _SCHEMA:
            conn.execute(stmt)
        return None

    def apply(self, conn: sqlite3.Connection, state: Any, batch: Sequence[tuple[int, Operation]]) -> None:
        for _, op in batch:
            apply_op(conn, op)

    def install(self, conn: sqlite3.Connection, state: Any, chunk: Chunk) -> None:
        raise NotImplementedError

    def settled(self) -> None:
        pass

    def save(self, conn: sqlite3.Connection, before: Any, after: Any) -> None:
        pass

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int) -> tuple[list[Chunk], bytes | None]:
        return [], None

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class ModelRowSource:
    """`torua.graph.indexing.GraphRowSource` over the model's tables."""

    def graphs(self, conn: sqlite3.Connection) -> list[GraphSpec]:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'mg_graph'").fetchone() is None:
            return []
        return [GraphSpec(uid, name, dim, metric, tuple(json.loads(tp))) for uid, name, dim, metric, tp in conn.execute("SELECT * FROM mg_graph ORDER BY uid")]

    def vertices(self, conn: sqlite3.Connection, uid: str) -> Iterable[VertexRow]:
        for vid, label, props, emb in conn.execute("SELECT id, label, properties, embedding FROM mg_vertex WHERE uid = ? ORDER BY id", (uid,)):
            yield VertexRow(vid, label, props, emb)

    def edges(self, conn: sqlite3.Connection, uid: str) -> Iterable[EdgeRow]:
        for src, typ, dst, halves, state, props, weight in conn.execute("SELECT src, type, dst, halves, state, properties, weight FROM mg_edge WHERE uid = ? ORDER BY src, type, dst", (uid,)):
            yield EdgeRow(src, typ, dst, halves, state, props, weight)

    def holds_rows(self, conn: sqlite3.Connection, uids: Sequence[str]) -> bool:
        return any(conn.execute(f"SELECT 1 FROM {t} WHERE uid = ? LIMIT 1", (uid,)).fetchone() for uid in uids for t in ("mg_vertex", "mg_edge"))

    def described(self, conn: sqlite3.Connection, uid: str, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        rows = (conn.execute("SELECT id, label, properties FROM mg_vertex WHERE uid = ? AND id = ?", (uid, vid)).fetchone() for vid in dict.fromkeys(ids))
        return {vid: (label or "", props or "{}") for vid, label, props in filter(None, rows)}


SOURCE = ModelRowSource()


def expected_index(conn: sqlite3.Connection, uid: str) -> dict[str, set[tuple[Any, ...]]]:
    """What `KuzuGraphs.dump(uid)` must give for the rows `conn` sees."""
    spec = next((g for g in SOURCE.graphs(conn) if g.uid == uid), None)
    if spec is None:
        return {}
    vertices = {v.id: v for v in SOURCE.vertices(conn, uid)}
    out: dict[str, set[tuple[Any, ...]]] = {"vertices": set(), "edges": set(), "hidden": set()}
    for v in vertices.values():
        out["vertices"].add((v.id, v.label, v.properties, vertex_text(v.properties, spec.text_properties), False))
    for e in SOURCE.edges(conn, uid):
        if edge_visible(e.halves, e.state):
            out["edges"].add((e.src, e.type, e.dst, e.properties, e.weight, e.halves, e.state))
            for end in (e.src, e.dst):
                if end not in vertices:
                    out["vertices"].add((end, None, None, None, True))
        else:
            out["hidden"].add((e.src, e.type, e.dst, e.properties, e.weight, e.state))
    if spec.vector_dim:
        out["embeddings"] = set()
        for v in vertices.values():
            vector = embedding_of(v.embedding, spec.vector_dim)
            if vector is not None:
                out["embeddings"].add((v.id, v.label, tuple(round(x, 5) for x in vector)))
    return out
