"""The graph index of one shard copy on Kuzu 0.11.3: the only module that imports
`kuzu` (and the one to replace for a fork of it).

One database file per shard copy (`<shard dir>/graph.kuzu`, plus `.wal` while
open) holds every graph of the shard, each in tables of its own, `n` a small
number the database gives the graph's uid:

```
IndexMeta(k PK, v)                              applied_seq, next_n, shard_id
IndexGraphs(uid PK, n, name, vector_dim, metric, text_properties)
V_n(id PK, label, props, text, stub)            vertices, and stubs (other ends of edges)
E_n(FROM V_n TO V_n, type, props, weight, halves, state)   visible edge rows
P_n(k PK, src, type, dst, props, weight, state) out-halves not visible (pending, removing)
Emb_n(id PK, label, embedding FLOAT[dim])       only when vector_dim > 0, + HNSW index hnsw_n
FTS index fts_n on V_n(text)                    only when the graph has text_properties
```

What the 0.11.3 measurements (docs/design/graph.md section 9) make this module do:
automatic checkpoints are off and it never runs `CHECKPOINT` (it can crash the
process; each one uses up `max_db_size/128` of address space): the WAL is folded
in by close and reopen (`reopen`); it never runs `DETACH DELETE` (it leaves
half-edges): out-edges, in-edges, then the vertex; it never runs `COPY` into a
live file (not crash-safe) nor `ROLLBACK` after one: `COPY` only builds a fresh
file (`build`); a vector-indexed column cannot be SET, so embeddings live in
`Emb_n`, replaced by delete and create; index DDL runs only outside a
transaction, so a graph's creation and drop are marked risky (`<file>.risky`)
while they run, and a file found with the mark is built again.

Thread safety: the caller (`torua.graph.index.GraphIndex`) runs one writer at a
time and excludes every other call while it reopens or closes; reads use a
connection per thread.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import importlib.util  # noqa: F401  kuzu 0.11.3 uses importlib.util without importing it (COPY FROM a pyarrow table)
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kuzu
import numpy as np
import pyarrow as pa
from kuzu.prepared_statement import PreparedStatement

from torua.graph.index_templates import IndexTemplates, template_key
from torua.graph.vector_cache import VECTOR_CACHE_REBUILD_S, VectorCache
from torua.graph.cypher_gate import CypherRefused, first_clause_refusal, map_labels, plan_refusal
from torua.graph.indexing import (
    EdgeRow,
    GraphSpec,
    IndexLimits,
    VertexRow,
    edge_visible,
    embedding_of,
    halves_after_delete,
    halves_after_put,
    idf,
    query_terms,
    state_after,
    vertex_text,
)
from torua.storage.operations import (
    EdgeDelete,
    EdgePut,
    GraphDrop,
    GraphEnsure,
    Operation,
    OutboxDone,
    VertexDelete,
    VertexPut,
)

__all__ = [
    "BuildStopped",
    "GraphTables",
    "IndexDamaged",
    "KUZU_VERSION",
    "KuzuGraphs",
    "QueryRefused",
]

log = logging.getLogger("torua.graph")

KUZU_VERSION = kuzu.__version__
WAL_CHECKPOINT_BYTES = 64 << 20  # reopen (folding the WAL in) past this
PREPARED_PER_THREAD = 64  # prepared statements a read connection keeps (our own queries, a few per graph)
EXACT_VECTOR_BELOW = 5000  # exact scan below this many candidates: HNSW misses rows of small tables under churn
# A graph's HNSW index is built once it holds this many vectors (an exact scan answers below it):
# building it cost 0.17 s of CPU for 300 vectors, and each vector written to an indexed table
# 2.4 ms more (4.3 against 1.9 ms per vertex put, measured here)
HNSW_FROM = EXACT_VECTOR_BELOW
VECTOR_EFS = 400  # recall@10 0.997 on 10k 384-d vectors (0.96 at Kuzu's default 200)
TERM_ROWS = 10_000  # documents scored per query term (the best ones), for text search across shards
STEMS_KEPT = 50_000  # words whose stems a shard's index remembers
TERM_ROWS_KEPT = 200_000  # FTS rows of recent query words a shard's index remembers until its next write
COPY_ROWS = 50_000  # rows per COPY when building
RISKY_SUFFIX = ".risky"
TEMPLATE_SHARD = -1  # the shard number in an empty index file (torua.graph.index_templates); a build from it sets its own
_RESERVED = re.compile(r"(?i)(v|e|p|emb)_\d+|indexmeta|indexgraphs|(fts|hnsw)_\d+")


class IndexDamaged(Exception):
    """The file cannot be trusted (marked risky, unopenable, of another shard): build it again."""


class BuildStopped(Exception):
    """A build was told to stop (the shard closes); its file is thrown away."""


class QueryRefused(ValueError):
    """Bad input to a query (wrong vector size, a refused Cypher query): the caller's fault."""


@dataclass(frozen=True)
class GraphTables:
    uid: str
    n: int
    name: str
    vector_dim: int
    metric: str
    text_properties: tuple[str, ...]

    @property
    def V(self) -> str:  # noqa: N802 (table names)
        return f"V_{self.n}"

    @property
    def E(self) -> str:  # noqa: N802
        return f"E_{self.n}"

    @property
    def P(self) -> str:  # noqa: N802
        return f"P_{self.n}"

    @property
    def Emb(self) -> str:  # noqa: N802
        return f"Emb_{self.n}"

    @property
    def fts(self) -> str:
        return f"fts_{self.n}"

    @property
    def hnsw(self) -> str:
        return f"hnsw_{self.n}"

    def public_names(self) -> dict[str, str]:
        names = {"Vertex": self.V, "Edge": self.E}
        if self.vector_dim:
            names["Embedding"] = self.Emb
        return names


def _rows(conn: kuzu.Connection, query: str | PreparedStatement, params: dict[str, Any] | None = None) -> list[list[Any]]:
    result = conn.execute(query, params or {})
    results = result if isinstance(result, list) else [result]
    try:
        if len(results) != 1:
            raise QueryRefused("one statement at a time")
        return results[0].get_all()
    finally:
        # Closed now, not when collected: one collected after its database closed is a
        # use after free (a segfault, measured here).
        for r in results:
            r.close()


def _schema(conn: kuzu.Connection, g: GraphTables) -> None:
    """The graph's tables (in or outside a transaction); no indexes."""
    _rows(conn, f"CREATE NODE TABLE IF NOT EXISTS {g.V}(id STRING PRIMARY KEY, label STRING, props STRING, text STRING, stub BOOLEAN)")
    _rows(conn, f"CREATE REL TABLE IF NOT EXISTS {g.E}(FROM {g.V} TO {g.V}, type STRING, props STRING, weight DOUBLE, halves STRING, state STRING)")
    _rows(conn, f"CREATE NODE TABLE IF NOT EXISTS {g.P}(k STRING PRIMARY KEY, src STRING, type STRING, dst STRING, props STRING, weight DOUBLE, state STRING)")
    if g.vector_dim:
        _rows(conn, f"CREATE NODE TABLE IF NOT EXISTS {g.Emb}(id STRING PRIMARY KEY, label STRING, embedding FLOAT[{g.vector_dim}])")


def _present_indexes(conn: kuzu.Connection) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in _rows(conn, "CALL SHOW_INDEXES() RETURN *")}


def _indexes(conn: kuzu.Connection, g: GraphTables, vectors: int) -> None:
    """The graph's FTS index, and its HNSW index once it holds `HNSW_FROM` `vectors`, if
    missing (outside a transaction: Kuzu creates indexes only in auto-commit mode)."""
    present = _present_indexes(conn)
    if g.text_properties and (g.V, g.fts) not in present:
        _text_index(conn, g)
    if g.vector_dim and (g.Emb, g.hnsw) not in present and vectors >= HNSW_FROM:
        _rows(conn, f"CALL CREATE_VECTOR_INDEX('{g.Emb}', '{g.hnsw}', 'embedding', metric := '{g.metric}')")


def _text_index(conn: kuzu.Connection, g: GraphTables) -> None:
    _rows(conn, f"CALL CREATE_FTS_INDEX('{g.V}', '{g.fts}', ['text'])")


def _edge_key(src: str, type_: str, dst: str) -> str:
    return json.dumps([src, type_, dst], ensure_ascii=False, separators=(",", ":"))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KuzuGraphs:
    """One shard copy's graph index: a Kuzu database file with every graph of the shard."""

    def __init__(self, path: Path, limits: IndexLimits, shard_id: int) -> None:
        # Use KuzuGraphs.open().
        self.path = Path(path)
        self.limits = limits
        self.shard_id = shard_id
        self.graphs: dict[str, GraphTables] = {}
        self.applied_seq = 0
        self._next_n = 1
        self._db: kuzu.Database | None = None
        self._writer: kuzu.Connection | None = None
        self._local = threading.local()
        self._generation = 0
        self._readers: list[kuzu.Connection] = []  # every thread's, closed before the database
        self._readers_lock = threading.Lock()
        self._prepared: list[dict[str, PreparedStatement]] = []  # every thread's prepared statements, by query
        # Each graph's vectors in memory (torua.graph.vector_cache), and how many times the
        # writer changed them: a cache read at an older count is out of date.
        self._vectors: dict[str, VectorCache] = {}
        self._vector_writes: dict[str, int] = {}
        self._vector_read_at: dict[str, float] = {}
        self._vectors_lock = threading.Lock()
        # graphs with an HNSW index (built once they hold HNSW_FROM vectors), and about how
        # many vectors each graph without one holds (a put of an existing id counts again)
        self._hnsw: set[str] = set()
        self._unindexed_vectors: dict[str, int] = {}
        self._stems: dict[str, str] = {}  # word -> Kuzu's English stem (a pure function of the word)
        self._text_docs: dict[str, tuple[int, int]] = {}  # graph uid -> (applied_seq, vertices with text then)
        # (graph uid, word) -> (applied_seq, its FTS rows then): a word asked again before the
        # next write is answered from memory (questions share most of their words)
        self._term_rows: collections.OrderedDict[tuple[str, str], tuple[int, list[list[Any]]]] = collections.OrderedDict()
        self._term_rows_held = 0
        self._text_lock = threading.Lock()

    # ------------------------------------------------------------------ files

    @property
    def risky_path(self) -> Path:
        return Path(str(self.path) + RISKY_SUFFIX)

    @staticmethod
    def remove_files(path: Path) -> None:
        """The database file and what goes with it (a WAL, a risky mark)."""
        for suffix in ("", ".wal", ".shadow", ".tmp", RISKY_SUFFIX):
            try:
                os.unlink(str(path) + suffix)
            except FileNotFoundError:
                pass

    def wal_bytes(self) -> int:
        try:
            return os.path.getsize(str(self.path) + ".wal")
        except OSError:
            return 0

    def file_bytes(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    # ------------------------------------------------------------------ open, close

    @classmethod
    def open(cls, path: Path, limits: IndexLimits, shard_id: int, create: bool) -> "KuzuGraphs":
        """Open the file (with `create`, a new empty one if there is none); `IndexDamaged`
        when it is marked risky, does not open, or is another shard's."""
        self = cls(path, limits, shard_id)
        if self.risky_path.exists():
            raise IndexDamaged(f"{path}: a risky change was cut short")
        if not self.path.exists() and not create:
            raise FileNotFoundError(str(path))
        try:
            self._open_handle()
            self._load(create)
        except Exception as exc:
            self._close_handle()
            if isinstance(exc, IndexDamaged):
                raise
            raise IndexDamaged(f"{path}: {exc}") from exc
        return self

    def _open_handle(self) -> None:
        self._db = kuzu.Database(
            str(self.path),
            buffer_pool_size=self.limits.buffer_pool_bytes,
            max_num_threads=self.limits.threads,
            max_db_size=self.limits.max_db_bytes,
            auto_checkpoint=False,
        )
        self._writer = kuzu.Connection(self._db)
        self._generation += 1

    def _load(self, create: bool) -> None:
        c = self._writer
        assert c is not None
        tables = {r[1] for r in _rows(c, "CALL show_tables() RETURN *")}
        if "IndexMeta" not in tables:
            if not create and tables:
                raise IndexDamaged(f"{self.path}: not a graph index")
            _rows(c, "BEGIN TRANSACTION")
            _rows(c, "CREATE NODE TABLE IndexMeta(k STRING PRIMARY KEY, v INT64)")
            _rows(c, "CREATE NODE TABLE IndexGraphs(uid STRING PRIMARY KEY, n INT64, name STRING, vector_dim INT64, metric STRING, text_properties STRING)")
            _rows(c, "CREATE (:IndexMeta {k: 'applied_seq', v: 0}), (:IndexMeta {k: 'next_n', v: 1}), (:IndexMeta {k: 'shard_id', v: $s})", {"s": self.shard_id})
            _rows(c, "COMMIT")
        meta = dict(_rows(c, "MATCH (m:IndexMeta) RETURN m.k, m.v"))
        if meta.get("shard_id") != self.shard_id:
            raise IndexDamaged(f"{self.path} is the index of shard {meta.get('shard_id')}, not {self.shard_id}")
        self.applied_seq = int(meta["applied_seq"])
        self._next_n = int(meta["next_n"])
        self.graphs = {
            uid: GraphTables(uid, int(n), name, int(dim), metric, tuple(json.loads(tp)))
            for uid, n, name, dim, metric, tp in _rows(c, "MATCH (g:IndexGraphs) RETURN g.uid, g.n, g.name, g.vector_dim, g.metric, g.text_properties")
        }
        present = _present_indexes(c)
        self._hnsw = {uid for uid, g in self.graphs.items() if (g.Emb, g.hnsw) in present}
        self._unindexed_vectors = {uid: self._vector_count(g) for uid, g in self.graphs.items() if g.vector_dim and uid not in self._hnsw}

    def close(self) -> None:
        """Close (Kuzu folds the WAL into the file: a checkpoint, marked risky while it runs)."""
        if self._db is not None:
            self._risky(self._close_handle)

    def _close_handle(self) -> None:
        # Every connection first (Kuzu: a connection used or collected after its database
        # closed is a use after free); the caller keeps every other thread out meanwhile.
        with self._readers_lock:
            readers, self._readers = self._readers, []
            prepared, self._prepared = self._prepared, []
        for statements in prepared:  # released while their database is open
            statements.clear()
        for conn in [*readers, self._writer]:
            if conn is not None:
                conn.close()
        if self._db is not None:
            self._db.close()
        self._writer = self._db = None
        self._generation += 1
        with self._vectors_lock:
            self._vectors.clear()

    def reopen(self) -> None:
        """Fold the WAL in by closing and opening again (never CHECKPOINT on a live handle),
        marked risky while it runs."""
        self._risky(self._close_handle)
        self._open_handle()

    @staticmethod
    def discard_wal(path: Path) -> bool:
        """Remove the WAL an unclean shutdown left (True if there was one). The file
        itself is its last checkpoint: every checkpoint runs marked risky, so a file with a
        WAL and no mark was killed between two of them."""
        try:
            os.unlink(str(path) + ".wal")
        except FileNotFoundError:
            return False
        return True

    def _conn(self) -> kuzu.Connection:
        """This thread's read connection (made again after a reopen)."""
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            conn = kuzu.Connection(self._db)
            prepared: dict[str, PreparedStatement] = {}
            with self._readers_lock:
                self._readers.append(conn)
                self._prepared.append(prepared)
            local.conn, local.prepared, local.generation = conn, prepared, self._generation
        return local.conn

    def _q(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """A read of our own (never a user's query) on this thread's connection, through its
        prepared statement: planning a query costs as much as running a small one."""
        conn = self._conn()
        prepared: dict[str, PreparedStatement] = self._local.prepared
        statement = prepared.get(query)
        if statement is None:
            statement = PreparedStatement(conn, query)  # what Connection.execute(str) does each time
            if not statement.is_success():
                raise RuntimeError(statement.get_error_message())
            if len(prepared) >= PREPARED_PER_THREAD:
                prepared.clear()
            prepared[query] = statement
        return _rows(conn, statement, params)

    # ------------------------------------------------------------------ writes

    def changes_tables(self, batch: Sequence[tuple[int, Operation]]) -> bool:
        """Whether applying `batch` creates or drops a graph's tables (then it reopens the
        database: the caller must exclude every other use of it)."""
        return any(
            seq > self.applied_seq and ((isinstance(op, GraphEnsure) and op.uid not in self.graphs) or (isinstance(op, GraphDrop) and op.uid in self.graphs))
            for seq, op in batch
        )

    def apply(self, batch: Sequence[tuple[int, Operation]], through: int) -> None:
        """Apply the ops of `batch` above `applied_seq`, and record `applied_seq = through`,
        in transactions that each record the seq they reach with their data; a graph's
        creation or drop runs between them, marked risky."""
        # One transaction per op: a transaction of ~130 mixed ops segfaulted Kuzu 0.11.3
        # here (deterministically) where the same ops one per transaction did not.
        for seq, op in batch:
            if seq <= self.applied_seq:
                continue
            ddl = (isinstance(op, GraphEnsure) and op.uid not in self.graphs) or (isinstance(op, GraphDrop) and op.uid in self.graphs)
            if ddl:
                self._risky(lambda: self._ddl(op, seq))  # noqa: B023 (called at once)
            elif isinstance(op, (GraphEnsure, GraphDrop, OutboxDone)):
                continue  # nothing to index: the seq is recorded with the next op or at the end
            else:
                self._transaction([op], seq)
        if through > self.applied_seq:
            self._transaction([], through)

    def _transaction(self, ops: Sequence[Operation], through: int) -> None:
        if not ops and through <= self.applied_seq:
            return
        c = self._writer
        assert c is not None
        vectors = [op for op in ops if isinstance(op, (VertexPut, VertexDelete)) and (g := self.graphs.get(op.uid)) is not None and g.vector_dim]
        _rows(c, "BEGIN TRANSACTION")
        try:
            for op in ops:
                self._apply_op(c, op)
            _rows(c, "MATCH (m:IndexMeta {k: 'applied_seq'}) SET m.v = $s", {"s": through})
            _rows(c, "COMMIT")
        except BaseException:
            try:  # a failed statement has rolled the transaction back already
                _rows(c, "ROLLBACK")
            except Exception:
                pass
            self._vectors_changed({op.uid for op in vectors})  # what memory holds may be off: read it again
            raise
        self._vectors_written(vectors)  # after the commit: memory read from now on holds it
        self.applied_seq = through

    def _vectors_changed(self, uids: Iterable[str]) -> None:
        """Count a change to these graphs' vectors and forget them in memory."""
        with self._vectors_lock:
            for uid in uids:
                self._vector_writes[uid] = self._vector_writes.get(uid, 0) + 1
                self._vectors.pop(uid, None)

    def _vectors_written(self, ops: Sequence[VertexPut | VertexDelete]) -> None:
        """Count committed writes to vectors, and apply them to those in memory (which
        stay there while they fit the node's --graph-vector-memory)."""
        with self._vectors_lock:
            for op in ops:
                g = self.graphs[op.uid]
                writes = self._vector_writes[op.uid] = self._vector_writes.get(op.uid, 0) + 1
                vector = embedding_of(op.embedding, g.vector_dim) if isinstance(op, VertexPut) else None
                if op.uid in self._unindexed_vectors:
                    self._unindexed_vectors[op.uid] = max(0, self._unindexed_vectors[op.uid] + (1 if vector is not None else -1))
                cache = self._vectors.get(op.uid)
                if cache is None:
                    continue
                if vector is None:
                    cache.delete(op.id)
                else:
                    cache.put(op.id, op.label, vector)
                cache.version = writes
                if cache.nbytes() > self.limits.vector_memory_bytes:
                    del self._vectors[op.uid]

    def _risky(self, change: Callable[[], None]) -> None:
        """Run `change` with the file marked risky: a file found with the mark is built again."""
        nested = self.risky_path.exists()
        if not nested:
            with open(self.risky_path, "wb") as f:
                os.fsync(f.fileno())
            _fsync(self.path.parent)
        change()
        if not nested:
            os.unlink(self.risky_path)
            _fsync(self.path.parent)

    def _ddl(self, op: Operation, seq: int) -> None:
        # Index DDL commits with a checkpoint of its own, and a checkpoint in a process that
        # has inserted and deleted rels can corrupt the file (measured: the next open
        # segfaulted on the next MERGE). So it runs on a fresh handle, and the WAL is folded
        # in by a reopen right after it (all of it under the risky mark).
        try:
            self.reopen()
            self._ddl_statements(op)
            self._transaction([], seq)
            self.reopen()
        finally:
            self._vectors_changed([op.uid])  # type: ignore[attr-defined]  (GraphEnsure, GraphDrop)

    def _ddl_statements(self, op: Operation) -> None:
        c = self._writer
        assert c is not None
        if isinstance(op, GraphEnsure):
            g = GraphTables(op.uid, self._next_n, op.name, int(op.vector_dim), op.metric if op.metric in ("cosine", "l2") else "cosine", tuple(op.text_properties))
            _rows(c, "BEGIN TRANSACTION")
            _schema(c, g)
            _rows(c, "CREATE (:IndexGraphs {uid: $uid, n: $n, name: $name, vector_dim: $dim, metric: $metric, text_properties: $tp})",
                  {"uid": g.uid, "n": g.n, "name": g.name, "dim": g.vector_dim, "metric": g.metric, "tp": json.dumps(list(g.text_properties))})
            _rows(c, "MATCH (m:IndexMeta {k: 'next_n'}) SET m.v = $n", {"n": g.n + 1})
            _rows(c, "COMMIT")
            _indexes(c, g, vectors=0)
            self.graphs[g.uid] = g
            self._next_n = g.n + 1
            if g.vector_dim:
                self._unindexed_vectors[g.uid] = 0
        else:
            assert isinstance(op, GraphDrop)
            g = self.graphs[op.uid]
            present = _present_indexes(c)
            if (g.V, g.fts) in present:
                _rows(c, f"CALL DROP_FTS_INDEX('{g.V}', '{g.fts}')")
            if (g.Emb, g.hnsw) in present:
                _rows(c, f"CALL DROP_VECTOR_INDEX('{g.Emb}', '{g.hnsw}')")
            _rows(c, "BEGIN TRANSACTION")
            for table in (g.E, g.P, g.V) + ((g.Emb,) if g.vector_dim else ()):
                _rows(c, f"DROP TABLE IF EXISTS {table}")
            _rows(c, "MATCH (x:IndexGraphs {uid: $uid}) DELETE x", {"uid": g.uid})
            _rows(c, "COMMIT")
            del self.graphs[g.uid]
            self._hnsw.discard(g.uid)
            self._unindexed_vectors.pop(g.uid, None)

    def _apply_op(self, c: kuzu.Connection, op: Operation) -> None:
        if isinstance(op, (GraphEnsure, GraphDrop, OutboxDone)):
            return  # a graph already here / not here; outbox tasks are not indexed
        g = self.graphs.get(op.uid)  # type: ignore[union-attr]
        if g is None:
            return  # a graph this shard does not hold (dropped): its rows went too
        if isinstance(op, VertexPut):
            self._put_vertex(c, g, op)
        elif isinstance(op, VertexDelete):
            self._delete_vertex(c, g, op.id)
        elif isinstance(op, EdgePut):
            before = self._edge_row(c, g, op.src, op.type, op.dst)
            halves = halves_after_put(before[0], op.halves)
            state = state_after(halves, before[1], op.halves, op.state)
            self._place_edge(c, g, op.src, op.type, op.dst, before[2], halves, state, op.properties, float(op.weight))
        elif isinstance(op, EdgeDelete):
            b_halves, b_state, where, props, weight = self._edge_row(c, g, op.src, op.type, op.dst)
            if where:
                halves = halves_after_delete(b_halves, op.halves)
                state = b_state if halves in ("out", "both") else ""
                self._place_edge(c, g, op.src, op.type, op.dst, where, halves, state, props, weight)
        else:
            raise TypeError(f"the graph index cannot apply {type(op).__name__}")

    def _put_vertex(self, c: kuzu.Connection, g: GraphTables, op: VertexPut) -> None:
        text = vertex_text(op.properties, g.text_properties)
        _rows(c, f"MERGE (v:{g.V} {{id: $id}}) SET v.label = $label, v.props = $props, v.text = $text, v.stub = false",
              {"id": op.id, "label": op.label, "props": op.properties, "text": text})
        if g.vector_dim:
            _rows(c, f"MATCH (x:{g.Emb} {{id: $id}}) DELETE x", {"id": op.id})
            vector = embedding_of(op.embedding, g.vector_dim)
            if vector is not None:  # a vector-indexed column cannot be SET: delete and create
                _rows(c, f"CREATE (:{g.Emb} {{id: $id, label: $label, embedding: $e}})", {"id": op.id, "label": op.label, "e": vector})

    def _delete_vertex(self, c: kuzu.Connection, g: GraphTables, vid: str) -> None:
        p = {"id": vid}
        others = {r[0] for r in _rows(c, f"MATCH (v:{g.V} {{id: $id}})-[:{g.E}]-(o:{g.V}) RETURN DISTINCT o.id", p)}
        # Never DETACH DELETE (it leaves half-edges in 0.11.3): out-edges, in-edges, the vertex.
        _rows(c, f"MATCH (v:{g.V} {{id: $id}})-[e:{g.E}]->() DELETE e", p)
        _rows(c, f"MATCH (v:{g.V} {{id: $id}})<-[e:{g.E}]-() DELETE e", p)
        _rows(c, f"MATCH (v:{g.V} {{id: $id}}) DELETE v", p)
        _rows(c, f"MATCH (x:{g.P}) WHERE x.src = $id OR x.dst = $id DELETE x", p)
        if g.vector_dim:
            _rows(c, f"MATCH (x:{g.Emb} {{id: $id}}) DELETE x", p)
        self._drop_stubs(c, g, others - {vid})

    def _edge_row(self, c: kuzu.Connection, g: GraphTables, src: str, type_: str, dst: str) -> tuple[str, str, str, str, float]:
        """(halves, state, where: "E" | "P" | "", props, weight) of the edge's row here."""
        found = _rows(c, f"MATCH (a:{g.V} {{id: $s}})-[e:{g.E}]->(b:{g.V} {{id: $d}}) WHERE e.type = $t RETURN e.halves, e.state, e.props, e.weight",
                      {"s": src, "d": dst, "t": type_})
        if found:
            halves, state, props, weight = found[0]
            return halves, state or "", "E", props, weight
        found = _rows(c, f"MATCH (x:{g.P} {{k: $k}}) RETURN x.state, x.props, x.weight", {"k": _edge_key(src, type_, dst)})
        if found:
            return "out", found[0][0], "P", found[0][1], found[0][2]
        return "", "", "", "{}", 1.0

    def _place_edge(self, c: kuzu.Connection, g: GraphTables, src: str, type_: str, dst: str, where: str, halves: str, state: str, props: str, weight: float) -> None:
        """Put the edge row where its halves and state say (E_n visible, P_n not, nowhere
        when it holds no half), from `where` it was."""
        visible = bool(halves) and edge_visible(halves, state)
        target = ("E" if visible else "P") if halves else ""
        ends = {"s": src, "d": dst, "t": type_}
        if where == "E":
            if target == "E":
                _rows(c, f"MATCH (a:{g.V} {{id: $s}})-[e:{g.E}]->(b:{g.V} {{id: $d}}) WHERE e.type = $t SET e.props = $p, e.weight = $w, e.halves = $h, e.state = $st",
                      ends | {"p": props, "w": weight, "h": halves, "st": state})
                return
            _rows(c, f"MATCH (a:{g.V} {{id: $s}})-[e:{g.E}]->(b:{g.V} {{id: $d}}) WHERE e.type = $t DELETE e", ends)
        elif where == "P":
            if target == "P":
                _rows(c, f"MATCH (x:{g.P} {{k: $k}}) SET x.props = $p, x.weight = $w, x.state = $st", {"k": _edge_key(src, type_, dst), "p": props, "w": weight, "st": state})
                return
            _rows(c, f"MATCH (x:{g.P} {{k: $k}}) DELETE x", {"k": _edge_key(src, type_, dst)})
        if target == "E":
            for end in {src, dst}:
                _rows(c, f"MERGE (v:{g.V} {{id: $id}}) ON CREATE SET v.stub = true", {"id": end})
            _rows(c, f"MATCH (a:{g.V} {{id: $s}}), (b:{g.V} {{id: $d}}) CREATE (a)-[:{g.E} {{type: $t, props: $p, weight: $w, halves: $h, state: $st}}]->(b)",
                  ends | {"p": props, "w": weight, "h": halves, "st": state})
        elif target == "P":
            _rows(c, f"CREATE (:{g.P} {{k: $k, src: $s, type: $t, dst: $d, props: $p, weight: $w, state: $st}})",
                  {"k": _edge_key(src, type_, dst), "s": src, "t": type_, "d": dst, "p": props, "w": weight, "st": state})
        if where == "E" and target != "E":
            self._drop_stubs(c, g, {src, dst})

    def _drop_stubs(self, c: kuzu.Connection, g: GraphTables, ids: Iterable[str]) -> None:
        for vid in sorted(ids):
            _rows(c, f"MATCH (v:{g.V} {{id: $id}}) WHERE v.stub = true AND NOT EXISTS {{ MATCH (v)-[:{g.E}]-() }} DELETE v", {"id": vid})

    # ------------------------------------------------------------------ building a fresh file

    @classmethod
    def build(
        cls,
        path: Path,
        limits: IndexLimits,
        shard_id: int,
        seq: int,
        graphs: Sequence[GraphSpec],
        rows: Callable[[str], tuple[Iterable[VertexRow], Iterable[EdgeRow]]],
        stop: Callable[[], bool] = lambda: False,
        templates: IndexTemplates | None = None,
    ) -> None:
        """Write a new index file at `path` (any file there is removed) holding `graphs`
        with the rows `rows(uid)` gives, at `seq`: tables and full-text indexes (from a
        copy of the empty file of these graphs, when `templates` holds one or can make
        it: torua.graph.index_templates), `COPY FROM` pyarrow tables, then vector
        indexes; closed (a complete file) when it returns. `BuildStopped` (the file
        removed) once `stop()` says so."""
        cls.remove_files(path)
        copied, key = False, ""
        if templates is not None and graphs:
            key = template_key([KUZU_VERSION, [[g.uid, g.name, int(g.vector_dim), g.metric, list(g.text_properties)] for g in graphs]])
            try:
                template = templates.path_for(key, lambda fresh: cls.build(fresh, limits, TEMPLATE_SHARD, 0, graphs, lambda uid: ((), ())))
                shutil.copyfile(template, path)
                copied = True
            except (OSError, RuntimeError, IndexDamaged) as exc:
                log.warning("shard %d: the empty index file to build from could not be made or copied (%s); building from nothing", shard_id, exc)
                templates.forget(key)
                cls.remove_files(path)
        self = cls(path, limits, shard_id)
        try:
            self._open_handle()
            c = self._writer
            assert c is not None
            if copied:
                _rows(c, "MATCH (m:IndexMeta {k: 'shard_id'}) SET m.v = $s", {"s": shard_id})
                self._load(create=False)
                tables = [self.graphs[spec.uid] for spec in graphs]
            else:
                self._load(create=True)
                tables = [self._made(c, n, spec) for n, spec in enumerate(graphs, start=1)]
            # One transaction for every COPY and the file's seq (each COPY committed on its
            # own cost ~10 ms more of a small shard's ~110 ms build); indexes after it (Kuzu
            # creates them only in auto-commit mode). A build that fails is removed whole.
            built: list[tuple[GraphTables, int]] = []
            _rows(c, "BEGIN TRANSACTION")
            for g in tables:
                vertices, edges = rows(g.uid)
                built.append((g, self._copy_graph(c, g, vertices, edges, stop)))
            _rows(c, "MATCH (m:IndexMeta {k: 'applied_seq'}) SET m.v = $s", {"s": seq})
            _rows(c, "MATCH (m:IndexMeta {k: 'next_n'}) SET m.v = $n", {"n": len(built) + 1})
            _rows(c, "COMMIT")
            for g, vectors in built:
                if stop():
                    raise BuildStopped()
                _indexes(c, g, vectors)
            self._close_handle()
            if Path(str(path) + ".wal").exists():
                # Kuzu's close folds the WAL into the file, or fails silently when the fold
                # needs more address space than max_db_size: the file alone would then be
                # at seq 0 once renamed, and be built again for ever
                raise IndexDamaged(
                    f"{path}: Kuzu could not fold the new index's WAL in when closing it: its graphs need more address space than the "
                    f"node's --graph-max-db-size of {self.limits.max_db_bytes >> 20} MiB per shard copy (start the node with a larger one)"
                )
            _fsync(path)
        except BaseException as exc:
            self._close_handle()
            cls.remove_files(path)
            if copied and templates is not None and not isinstance(exc, BuildStopped):
                templates.forget(key)  # in case the copy was the cause: the next build makes it again
            raise

    @staticmethod
    def _made(c: kuzu.Connection, n: int, spec: GraphSpec) -> GraphTables:
        """Graph `spec`'s tables and full-text index, empty, as its `n`th graph."""
        g = GraphTables(spec.uid, n, spec.name, int(spec.vector_dim), spec.metric if spec.metric in ("cosine", "l2") else "cosine", tuple(spec.text_properties))
        _schema(c, g)
        if g.text_properties:
            # on the empty table, which the COPYs then fill: the same scores as indexing
            # the rows after them, for a third less CPU (~25 ms of ~70 at 100 rows, 30 of
            # 115 at 5000) and less of the buffer pool
            _text_index(c, g)
        _rows(c, "CREATE (:IndexGraphs {uid: $uid, n: $n, name: $name, vector_dim: $dim, metric: $metric, text_properties: $tp})",
              {"uid": g.uid, "n": g.n, "name": g.name, "dim": g.vector_dim, "metric": g.metric, "tp": json.dumps(list(g.text_properties))})
        return g

    def _copy_graph(self, c: kuzu.Connection, g: GraphTables, vertices: Iterable[VertexRow], edges: Iterable[EdgeRow], stop: Callable[[], bool]) -> int:
        """Copy the graph's rows in; how many vectors it holds. The stubs (the other
        ends of visible edges that are not vertices here) go in the last vertex COPY:
        each COPY costs Kuzu ~10 ms whatever it holds, about a tenth of building a
        small shard's index."""
        ids: set[str] = set()
        batch: list[VertexRow] = []
        vectors = 0

        def flush_vertices(stubs: Sequence[str] = ()) -> None:
            nonlocal vectors
            if stop():
                raise BuildStopped()
            texts = [vertex_text(v.properties, g.text_properties) for v in batch]
            none = [None] * len(stubs)
            table = pa.table({
                "id": pa.array([v.id for v in batch] + list(stubs), pa.string()),
                "label": pa.array([v.label for v in batch] + none, pa.string()),
                "props": pa.array([v.properties for v in batch] + none, pa.string()),
                "text": pa.array(texts + none, pa.string()),
                "stub": pa.array([False] * len(batch) + [True] * len(stubs), pa.bool_()),
            })
            _rows(c, f"COPY {g.V} FROM $t", {"t": table})
            if g.vector_dim:
                kept = [(v, e) for v in batch if (e := embedding_of(v.embedding, g.vector_dim)) is not None]
                vectors += len(kept)
                if kept:
                    flat = np.asarray([e for _, e in kept], dtype=np.float32).ravel()
                    emb = pa.table({
                        "id": pa.array([v.id for v, _ in kept], pa.string()),
                        "label": pa.array([v.label for v, _ in kept], pa.string()),
                        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat), g.vector_dim),
                    })
                    _rows(c, f"COPY {g.Emb} FROM $t", {"t": emb})
            batch.clear()

        for v in vertices:
            ids.add(v.id)
            batch.append(v)
            if len(batch) >= COPY_ROWS:
                flush_vertices()
        visible: list[EdgeRow] = []
        hidden: list[EdgeRow] = []
        for e in edges:
            state = e.state if e.halves in ("out", "both") else ""
            row = EdgeRow(e.src, e.type, e.dst, e.halves, state, e.properties, float(e.weight))
            (visible if edge_visible(e.halves, state) else hidden).append(row)
        stubs = sorted({end for e in visible for end in (e.src, e.dst)} - ids)
        for i in range(0, max(len(stubs), 1), COPY_ROWS):
            part = stubs[i : i + COPY_ROWS]
            if batch or part:
                flush_vertices(part)
        for i in range(0, len(visible), COPY_ROWS):
            if stop():
                raise BuildStopped()
            part = visible[i : i + COPY_ROWS]
            _rows(c, f"COPY {g.E} FROM $t", {"t": pa.table({
                "from": pa.array([e.src for e in part], pa.string()),
                "to": pa.array([e.dst for e in part], pa.string()),
                "type": pa.array([e.type for e in part], pa.string()),
                "props": pa.array([e.properties for e in part], pa.string()),
                "weight": pa.array([e.weight for e in part], pa.float64()),
                "halves": pa.array([e.halves for e in part], pa.string()),
                "state": pa.array([e.state for e in part], pa.string()),
            })})
        for i in range(0, len(hidden), COPY_ROWS):
            part = hidden[i : i + COPY_ROWS]
            _rows(c, f"COPY {g.P} FROM $t", {"t": pa.table({
                "k": pa.array([_edge_key(e.src, e.type, e.dst) for e in part], pa.string()),
                "src": pa.array([e.src for e in part], pa.string()),
                "type": pa.array([e.type for e in part], pa.string()),
                "dst": pa.array([e.dst for e in part], pa.string()),
                "props": pa.array([e.properties for e in part], pa.string()),
                "weight": pa.array([e.weight for e in part], pa.float64()),
                "state": pa.array([e.state for e in part], pa.string()),
            })})
        return vectors

    # ------------------------------------------------------------------ the HNSW index

    def _vector_count(self, g: GraphTables) -> int:
        assert self._writer is not None  # the writer's own read (opening, or after an apply)
        return int(_rows(self._writer, f"MATCH (x:{g.Emb}) RETURN count(*)")[0][0])

    def vector_indexed(self) -> set[str]:
        """The graphs with an HNSW index."""
        return set(self._hnsw)

    def wants_rebuild(self) -> str:
        """Why the file should be built again ("": it need not): a graph without an HNSW
        index has come to hold `HNSW_FROM` vectors. (Creating an index in a live file
        checkpoints it, which Kuzu 0.11.3 does not survive after deleting rels; a fresh
        file builds it.) For the writer's thread, after `apply`."""
        for uid, approx in list(self._unindexed_vectors.items()):
            if approx < HNSW_FROM:
                continue
            g = self.graphs[uid]
            exact = self._unindexed_vectors[uid] = self._vector_count(g)
            if exact >= HNSW_FROM:
                return f"graph {g.name!r} holds {exact} vectors, from {HNSW_FROM} on it gets an HNSW index"
        return ""

    # ------------------------------------------------------------------ reads

    def _graph(self, uid: str) -> GraphTables | None:
        return self.graphs.get(uid)

    def vector_search(self, uid: str, vector: Sequence[float], k: int, label: str) -> list[tuple[str, float]]:
        """The `k` vertices nearest `vector` (with `label`, if not ""): (id, score) best
        first; score = cosine similarity (1 - cosine distance) or -euclidean distance.
        Their labels and properties are the rows' (`GraphIndex` adds them)."""
        g = self._graph(uid)
        if g is None or k <= 0:
            return []
        if not g.vector_dim:
            raise QueryRefused(f"graph {g.name!r} has no vectors")
        if len(vector) != g.vector_dim:
            raise QueryRefused(f"the vector must have {g.vector_dim} numbers, not {len(vector)}")
        v = [float(x) for x in vector]
        if not all(math.isfinite(x) for x in v):
            raise QueryRefused("the vector must hold finite numbers")
        cache = self._vector_cache(g)
        if cache is not None:
            return cache.top_k(v, k, label)
        where = " WHERE x.label = $label" if label else ""
        lp = {"label": label} if label else {}
        candidates = self._q(f"MATCH (x:{g.Emb}){where} RETURN count(*)", lp)[0][0]
        if candidates < EXACT_VECTOR_BELOW or g.uid not in self._hnsw:
            score = "array_cosine_similarity(x.embedding, $v)" if g.metric == "cosine" else "-array_distance(x.embedding, $v)"
            hits = [(r[0], float(r[1])) for r in self._q(f"MATCH (x:{g.Emb}){where} WITH x, {score} AS s RETURN x.id, s ORDER BY s DESC, x.id LIMIT $k", {"v": v, "k": k} | lp)]
        else:
            wide = max(2 * k, k + 10)
            query = "CALL QUERY_VECTOR_INDEX('{table}', '{index}', $v, $kk, efs := {efs}) RETURN node.id, distance ORDER BY distance, node.id LIMIT $k"
            if not label:
                found = self._q(query.format(table=g.Emb, index=g.hnsw, efs=max(VECTOR_EFS, wide)), {"v": v, "kk": wide, "k": k})
            else:  # pre-filter through a projected graph (a WHERE after the call would filter the top k only)
                found = self._vector_with_label(g, query, v, wide, k, label)
            hits = [(r[0], (1.0 - float(r[1])) if g.metric == "cosine" else -float(r[1])) for r in found]
        return hits

    def _vector_cache(self, g: GraphTables) -> VectorCache | None:
        """Graph `g`'s vectors in memory, as of the last committed write: read from the
        index the first time (again only if memory was dropped: a failed transaction, a
        graph made again; at most every VECTOR_CACHE_REBUILD_S, the Kuzu index answering
        meanwhile), then kept up to date by the writer (`_vectors_written`). None when
        they do not fit the node's --graph-vector-memory."""
        now = time.monotonic()
        with self._vectors_lock:
            writes = self._vector_writes.get(g.uid, 0)
            cache = self._vectors.get(g.uid)
            if cache is not None and cache.version == writes:
                return cache
            if now - self._vector_read_at.get(g.uid, -math.inf) < VECTOR_CACHE_REBUILD_S:
                return None
            self._vector_read_at[g.uid] = now
        # read after noting `writes`; the writer counts a write after its commit, so these
        # rows hold at least every write counted (a later one outdates them at once)
        count = self._q(f"MATCH (x:{g.Emb}) RETURN count(*)")[0][0]
        if not VectorCache.fits(count, g.vector_dim, self.limits.vector_memory_bytes):
            return None
        # one chunk of about `count` rows: the default sizes chunks for 10M values per column,
        # and allocating that for 384-d lists cost ~0.5 ms per row read (65x), measured here
        table = self._conn().execute(f"MATCH (x:{g.Emb}) RETURN x.id, x.label, x.embedding").get_as_arrow(max(count, 1))
        column = table.column(2).combine_chunks()
        matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), g.vector_dim) if len(column) else np.zeros((0, g.vector_dim), np.float32)
        cache = VectorCache(table.column(0).to_pylist(), table.column(1).to_pylist(), matrix, g.metric, writes)
        with self._vectors_lock:
            if self._vector_writes.get(g.uid, 0) == writes:
                self._vectors[g.uid] = cache
        return cache

    def _vector_with_label(self, g: GraphTables, query: str, v: list[float], wide: int, k: int, label: str) -> list[list[Any]]:
        projected = "pg_" + uuid.uuid4().hex[:12]
        literal = label.replace("\\", "\\\\").replace("'", "\\'")
        conn = kuzu.Connection(self._db)
        try:
            _rows(conn, f"CALL PROJECT_GRAPH('{projected}', {{'{g.Emb}': 'n.label = \\'{literal}\\''}}, [])")
            try:
                return _rows(conn, query.format(table=projected, index=g.hnsw, efs=max(VECTOR_EFS, wide)), {"v": v, "kk": wide, "k": k})
            finally:
                _rows(conn, f"CALL DROP_PROJECTED_GRAPH('{projected}')")
        finally:
            conn.close()

    def _terms(self, query: str) -> dict[str, str]:
        """The query's words keyed by their stem (Kuzu's, so every shard keys them alike;
        remembered, as a stem depends on the word alone)."""
        out: dict[str, str] = {}
        for word in query_terms(query):
            stem = self._stems.get(word)
            if stem is None:
                stem = self._q("RETURN stem($w, 'english')", {"w": word})[0][0]
                if len(self._stems) >= STEMS_KEPT:
                    self._stems.clear()
                self._stems[word] = stem
            out.setdefault(stem, word)
        return out

    def _docs_with_text(self, g: GraphTables) -> int:
        """The graph's vertices with text here, counted again only after a write."""
        seq = self.applied_seq
        held = self._text_docs.get(g.uid)
        if held is not None and held[0] == seq:
            return held[1]
        docs = int(self._q(f"MATCH (v:{g.V}) WHERE v.text IS NOT NULL RETURN count(*)")[0][0])
        self._text_docs[g.uid] = (seq, docs)
        return docs

    def _term_docs(self, g: GraphTables, word: str) -> int:
        """The documents holding `word` here (its best `TERM_ROWS` tell, unless there are more)."""
        rows = self._fts_rows(g, word)
        return len(rows) if len(rows) < TERM_ROWS else int(self._q(f"CALL QUERY_FTS_INDEX('{g.V}', '{g.fts}', $q) RETURN count(*)", {"q": word})[0][0])

    def _fts_rows(self, g: GraphTables, word: str) -> list[list[Any]]:
        """[id, label, BM25 score with this shard's IDF] of the best `TERM_ROWS` vertices for
        `word`, remembered until the next write (at most `TERM_ROWS_KEPT` rows in all)."""
        seq, key = self.applied_seq, (g.uid, word)
        with self._text_lock:
            held = self._term_rows.get(key)
            if held is not None and held[0] == seq:
                self._term_rows.move_to_end(key)
                return held[1]
        rows = self._q(f"CALL QUERY_FTS_INDEX('{g.V}', '{g.fts}', $q, top := {TERM_ROWS}) RETURN node.id, node.label, score", {"q": word})
        with self._text_lock:
            old = self._term_rows.pop(key, None)
            self._term_rows_held -= len(old[1]) if old else 0
            self._term_rows[key] = (seq, rows)
            self._term_rows_held += len(rows)
            while self._term_rows_held > TERM_ROWS_KEPT and self._term_rows:
                self._term_rows_held -= len(self._term_rows.popitem(last=False)[1][1])
        return rows

    def text_stats(self, uid: str, query: str) -> tuple[int, dict[str, int]]:
        """This shard's part of the BM25 statistics: its document count and, per query
        term (its stem), the documents holding it; (0, {}) for a graph without text."""
        g = self._graph(uid)
        if g is None or not g.text_properties:
            return 0, {}
        df = {stem: self._term_docs(g, word) for stem, word in self._terms(query).items()}
        return self._docs_with_text(g), {stem: n for stem, n in df.items() if n}

    def text_search(self, uid: str, query: str, k: int, label: str, docs: int, term_docs: dict[str, int]) -> list[tuple[str, float]]:
        """The `k` best vertices for `query` by BM25, each term's part scaled from this
        shard's IDF to the one of `docs` and `term_docs` (the sums over every shard; this
        shard's own when 0 / missing): (id, score), best first."""
        g = self._graph(uid)
        if g is None or not g.text_properties or k <= 0:
            return []
        local_docs = self._docs_with_text(g)
        scores: dict[str, float] = {}
        for stem, word in self._terms(query).items():
            if docs > 0 and not term_docs.get(stem):
                continue  # no shard holds it (a stop word, a word of no document)
            rows = self._fts_rows(g, word)
            n_local = self._term_docs(g, word)
            if not n_local:
                continue
            total, n_total = (docs, term_docs.get(stem, 0)) if docs > 0 else (local_docs, n_local)
            if n_total <= 0:
                total, n_total = local_docs, n_local
            scale = idf(total, n_total) / idf(local_docs, n_local)
            for vid, vertex_label, s in rows:
                if not label or vertex_label == label:
                    scores[vid] = scores.get(vid, 0.0) + float(s) * scale
        return sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]

    def cypher(self, uid: str, query: str, params: dict[str, Any], row_cap: int, timeout_s: float) -> tuple[list[str], list[list[Any]], bool]:
        """A read-only query over the graph's tables, as a user writes it (`Vertex`, `Edge`,
        `Embedding`): (columns, rows as JSON values, truncated). `QueryRefused` for
        anything else: more than one statement, a write, a file, a session statement, a
        table function, another graph's tables."""
        g = self._graph(uid)
        if g is None:
            return [], [], False
        try:
            refusal = first_clause_refusal(query)
            if refusal:
                raise QueryRefused(refusal)
            mapped = map_labels(query, g.public_names(), lambda name: bool(_RESERVED.fullmatch(name)))
        except CypherRefused as exc:
            raise QueryRefused(str(exc)) from None
        conn = kuzu.Connection(self._db)  # fresh: no session state (ATTACH, USE, ...) leaks
        prepared = explain = None
        try:
            # Prepared, never `query()`: that one runs several statements.
            prepared = kuzu.PreparedStatement(conn, mapped, {})
            if not prepared.is_success():
                raise QueryRefused(f"bad query: {prepared.get_error_message()}")
            explain = kuzu.PreparedStatement(conn, "EXPLAIN " + mapped, {})
            if not explain.is_success():
                raise QueryRefused(f"bad query: {explain.get_error_message()}")
            try:
                result = conn.execute(explain, params)
                assert not isinstance(result, list)
                try:
                    plan = "\n".join(str(r[0]) for r in result.get_all())
                finally:
                    result.close()
            except RuntimeError as exc:
                raise QueryRefused(f"bad query: {exc}") from None
            known = {r[1] for r in _rows(conn, "CALL show_tables() RETURN *")} | {"IndexMeta", "IndexGraphs"}
            refusal = plan_refusal(plan, set(g.public_names().values()), known)
            if refusal:
                raise QueryRefused(refusal)
            conn.set_query_timeout(max(1, int(timeout_s * 1000)))
            _rows(conn, "BEGIN TRANSACTION READ ONLY")
            try:
                try:
                    result = conn.execute(prepared, params)
                except RuntimeError as exc:
                    raise QueryRefused(f"query failed: {exc}") from None
                assert not isinstance(result, list)
                try:
                    columns = result.get_column_names()
                    rows = result.get_n(row_cap)
                    truncated = result.has_next()
                finally:
                    result.close()
            finally:
                _rows(conn, "ROLLBACK")
        finally:
            prepared = explain = None  # noqa: F841 (freed before their connection)
            conn.close()
        names = {table: public for public, table in g.public_names().items()}
        return columns, [[_json_value(x, names) for x in row] for row in rows], truncated

    def counts(self, uid: str) -> dict[str, int]:
        g = self._graph(uid)
        if g is None:
            return {}
        c = self._conn()

        def one(q: str) -> int:
            return int(_rows(c, q)[0][0])

        out = {
            "vertices": one(f"MATCH (v:{g.V}) WHERE v.stub = false RETURN count(*)"),
            "stubs": one(f"MATCH (v:{g.V}) WHERE v.stub = true RETURN count(*)"),
            "edges": one(f"MATCH ()-[e:{g.E}]->() RETURN count(*)"),
            "hidden_halves": one(f"MATCH (x:{g.P}) RETURN count(*)"),
        }
        if g.vector_dim:
            out["embeddings"] = one(f"MATCH (x:{g.Emb}) RETURN count(*)")
        return out

    def dump(self, uid: str) -> dict[str, set[tuple[Any, ...]]]:
        """Every row of a graph, as sets of tuples (for tests: compare two indexes)."""
        g = self._graph(uid)
        if g is None:
            return {}
        c = self._conn()
        out = {
            "vertices": {tuple(r) for r in _rows(c, f"MATCH (v:{g.V}) RETURN v.id, v.label, v.props, v.text, v.stub")},
            "edges": {tuple(r) for r in _rows(c, f"MATCH (a:{g.V})-[e:{g.E}]->(b:{g.V}) RETURN a.id, e.type, b.id, e.props, e.weight, e.halves, e.state")},
            "hidden": {tuple(r) for r in _rows(c, f"MATCH (x:{g.P}) RETURN x.src, x.type, x.dst, x.props, x.weight, x.state")},
        }
        if g.vector_dim:
            out["embeddings"] = {(r[0], r[1], tuple(round(x, 5) for x in r[2])) for r in _rows(c, f"MATCH (x:{g.Emb}) RETURN x.id, x.label, x.embedding")}
        return out


def _json_value(value: Any, names: dict[str, str]) -> Any:
    """A Kuzu value as JSON: a node's or rel's table as its public name, dates as ISO text."""
    if isinstance(value, dict):
        return {k: (names.get(v, v) if k == "_label" and isinstance(v, str) else _json_value(v, names)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v, names) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (decimal.Decimal, uuid.UUID, datetime.timedelta)):
        return str(value)
    return str(value)
