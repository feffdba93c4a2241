"""The graph's rows: a shard's graphs, vertices, edge halves and outbox in its SQLite
database, applied inside the writer's transaction (`GraphRows`, a transactional
`torua.storage.engine.ShardEngine` named ``graph``). They are the truth; the Kuzu
index (``graph_index``, torua.graph.index) is derived from them, read through
`IndexRows`; `read_rows` is a consistent view of them at one seq (for checks).

Tables (docs/design/graph.md, sections 1-4):

* ``g_graph(uid, name, vector_dim, metric, text_properties, dropped)``: the graphs
  this shard has seen (a dropped one stays as a tombstone, so late requests for it
  are refused);
* ``g_vertex(uid, id, label, properties, embedding)``: properties as JSON object
  text, the embedding as packed little-endian float32 (`pack_vector`);
* ``g_edge(uid, src, type, dst, out_state, out_token, in_state, in_token,
  properties, weight)``: the halves of edge ``(src, type, dst)`` this shard holds.
  ``out_state`` is NULL when the out-half (src is here) is not held, else
  ``pending``, ``committed`` or ``removing``; ``in_state`` is NULL when the in-half
  (dst is here) is not held, else ``attached`` (src's shard has not confirmed it
  yet) or ``confirmed``. A token names the edge's incarnation: the seq, in src's
  shard's log, of the put that made its out-half pending, carried by every message
  about it, so a late or repeated message changes nothing it should not. When src
  and dst share the shard, one row holds both halves (committed and confirmed);
* ``g_outbox(uid, kind, src, type, dst, token)``: halves on other shards still to be
  removed after a vertex delete: ``detach`` (the in-half on dst's shard) or ``drop``
  (the edge, on src's shard).

Every operation is a blind write keyed by its identity (a graph, a vertex, an edge
half, an outbox task) or a delete of one; what depends on other rows (does src
exist, which halves a vertex delete removes, is this message late) is decided by
the shard's primary before it logs, under its locks (torua.node.graph). So every
copy that applies the same operations in order holds the same rows, and a fuzzy
snapshot followed by the log from the seq it started at converges, as for keys.

Snapshot chunks are ``graph.rows.v1``: msgpack ``{"table": name, "rows": [[...]]}``,
rows in primary-key order, the cursor ``[table index, last primary key]``.

>>> unpack_vector(pack_vector([1.0, 0.5]))
[1.0, 0.5]
"""

from __future__ import annotations

import base64
import json
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from torua.graph import indexing
from torua.storage.engine import Chunk, EngineContext, EngineKind
from torua.storage.operations import EdgeDelete, EdgePut, GraphDrop, GraphEnsure, Operation, OutboxDone, SupportChange, VertexDelete, VertexPut

__all__ = [
    "EDGE_PUT_SQL",
    "ENGINE",
    "EdgeRow",
    "GraphRows",
    "GraphSettings",
    "IndexRows",
    "OutboxTask",
    "ROWS_FORMAT",
    "RowView",
    "SCHEMA",
    "VertexRow",
    "by_key_sql",
    "pack_vector",
    "read_rows",
    "unpack_vector",
]

ENGINE = "graph"
ROWS_FORMAT = "graph.rows.v1"

OUT_STATES = ("pending", "committed", "removing")
ATTACHED, CONFIRMED = "attached", "confirmed"
HALVES = ("out", "in", "both")
OUTBOX_KINDS = ("detach", "drop")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS g_graph (uid TEXT PRIMARY KEY, name TEXT NOT NULL, vector_dim INTEGER NOT NULL,"
    " metric TEXT NOT NULL, text_properties TEXT NOT NULL, dropped INTEGER NOT NULL DEFAULT 0)",
    # the embedding last: a read that does not select it never pages it in
    "CREATE TABLE IF NOT EXISTS g_vertex (uid TEXT NOT NULL, id TEXT NOT NULL, label TEXT NOT NULL,"
    " properties TEXT NOT NULL, embedding BLOB, PRIMARY KEY (uid, id))",
    "CREATE TABLE IF NOT EXISTS g_edge (uid TEXT NOT NULL, src TEXT NOT NULL, type TEXT NOT NULL, dst TEXT NOT NULL,"
    " out_state TEXT, out_token INTEGER NOT NULL DEFAULT 0, in_state TEXT, in_token INTEGER NOT NULL DEFAULT 0,"
    " properties TEXT NOT NULL, weight REAL NOT NULL, PRIMARY KEY (uid, src, type, dst))",
    "CREATE INDEX IF NOT EXISTS g_edge_in ON g_edge (uid, dst, type, src) WHERE in_state IS NOT NULL",
    # what repair visits: halves not known to agree with their other half
    "CREATE INDEX IF NOT EXISTS g_edge_unsettled ON g_edge (uid, src, type, dst)"
    " WHERE out_state IN ('pending', 'removing') OR in_state = 'attached'",
    "CREATE TABLE IF NOT EXISTS g_outbox (uid TEXT NOT NULL, kind TEXT NOT NULL, src TEXT NOT NULL, type TEXT NOT NULL,"
    " dst TEXT NOT NULL, token INTEGER NOT NULL, PRIMARY KEY (uid, kind, src, type, dst, token))",
    # GraphRAG's evidence: which chunks support a vertex (type '') or an edge whose src is here
    "CREATE TABLE IF NOT EXISTS g_support (uid TEXT NOT NULL, src TEXT NOT NULL, type TEXT NOT NULL, dst TEXT NOT NULL,"
    " chunk TEXT NOT NULL, note TEXT NOT NULL, PRIMARY KEY (uid, src, type, dst, chunk))",
)

# table -> (its columns in snapshot rows, how many of them lead as its primary key)
_TABLES: dict[str, tuple[tuple[str, ...], int]] = {
    "g_graph": (("uid", "name", "vector_dim", "metric", "text_properties", "dropped"), 1),
    "g_vertex": (("uid", "id", "label", "properties", "embedding"), 2),
    "g_edge": (("uid", "src", "type", "dst", "out_state", "out_token", "in_state", "in_token", "properties", "weight"), 4),
    "g_outbox": (("uid", "kind", "src", "type", "dst", "token"), 6),
    "g_support": (("uid", "src", "type", "dst", "chunk", "note"), 5),
}
_TABLE_ORDER = tuple(_TABLES)


def pack_vector(values: Sequence[float]) -> bytes:
    """An embedding as stored: little-endian float32 (numpy: ``frombuffer(b, "<f4")``)."""
    return struct.pack(f"<{len(values)}f", *values)


def unpack_vector(blob: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


# ----------------------------------------------------------------- rows


@dataclass(frozen=True)
class GraphSettings:
    uid: str
    name: str
    vector_dim: int = 0
    metric: str = "cosine"
    text_properties: tuple[str, ...] = ()
    dropped: bool = False


@dataclass(frozen=True)
class VertexRow:
    id: str
    label: str
    properties: str  # JSON object text
    embedding: bytes | None = None  # pack_vector; None when it has none (or it was not read)

    def vector(self) -> list[float] | None:
        return None if self.embedding is None else unpack_vector(self.embedding)


@dataclass(frozen=True)
class EdgeRow:
    """The halves of one edge a shard holds (see the module doc)."""

    src: str
    type: str
    dst: str
    properties: str  # JSON object text
    weight: float
    out_state: str | None = None
    out_token: int = 0
    in_state: str | None = None
    in_token: int = 0

    @property
    def out_visible(self) -> bool:
        """Reads see an out-half once it is committed."""
        return self.out_state == "committed"

    @property
    def in_visible(self) -> bool:
        """Reads see an in-half once it is attached."""
        return self.in_state is not None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.src, self.type, self.dst)


@dataclass(frozen=True)
class OutboxTask:
    uid: str
    kind: str  # "detach": the in-half on dst's shard; "drop": the edge on src's shard
    src: str
    type: str
    dst: str
    token: int


_EDGE_COLUMNS = "src, type, dst, properties, weight, out_state, out_token, in_state, in_token"
MAX_CACHED_GRAPHS = 10000  # graph settings a copy keeps in memory at most (`GraphRows.graph`)
KEYS_AT_ONCE = 300  # edge keys per read (3 parameters each: under the 999 of older SQLite builds)
CHUNK_PAIRS_AT_ONCE = 240  # (key, chunk) pairs per read (4 parameters each)
EdgeKey = tuple[str, str, str]


def by_key_sql(select: str, table: str, count: int) -> str:
    """`select` over the rows of `table` whose (uid, src, type, dst) is ? and one of
    `count` keys: a join with the keys as VALUES, so that each key is one search of the
    primary key (`(src, type, dst) IN (VALUES ...)` scans the whole graph instead).
    Parameters: the keys' fields in order, then the uid."""
    values = ", ".join("(?, ?, ?)" for _ in range(count))
    return (
        f"{select} (VALUES {values}) AS k JOIN {table} ON {table}.uid = ? AND {table}.src = k.column1 "
        f"AND {table}.type = k.column2 AND {table}.dst = k.column3"
    )


def _flat(keys: Sequence[EdgeKey]) -> Iterator[str]:
    return (field for key in keys for field in key)


_new = object.__new__  # rows read by the thousand: made without the frozen dataclasses' __init__ (3x the time)


def _edge(row: Sequence[Any]) -> EdgeRow:
    edge = _new(EdgeRow)
    edge.__dict__.update(src=row[0], type=row[1], dst=row[2], properties=row[3], weight=float(row[4]), out_state=row[5], out_token=int(row[6]),
                         in_state=row[7], in_token=int(row[8]))
    return edge


def _settings(row: Sequence[Any]) -> GraphSettings:
    return GraphSettings(row[0], row[1], int(row[2]), row[3], tuple(json.loads(row[4])), bool(row[5]))


def _vertex(row: Sequence[Any]) -> VertexRow:
    vertex = _new(VertexRow)
    vertex.__dict__.update(id=row[0], label=row[1], properties=row[2], embedding=None if len(row) < 4 or row[3] is None else bytes(row[3]))
    return vertex


# ------------------------------------------------------------ views


class RowView(Protocol):
    """A consistent view of a shard's graph rows at one seq (`read_rows`). Iterators
    are valid inside the view only."""

    seq: int  # every operation of the log up to this seq is in these rows, none after it

    def graphs(self) -> Iterator[GraphSettings]:
        """Every graph this shard has seen, dropped ones too (`dropped`)."""
        ...

    def vertex_rows(self, uid: str, with_embedding: bool = True) -> Iterator[VertexRow]:
        """The graph's vertices held here, in id order."""
        ...

    def edge_rows(self, uid: str) -> Iterator[EdgeRow]:
        """Every edge row of the graph held here, in (src, type, dst) order, whatever
        its halves' states: an index shows `out_visible` and `in_visible` halves."""
        ...


class _View:
    def __init__(self, conn: sqlite3.Connection, seq: int) -> None:
        self._conn = conn
        self.seq = seq

    def graphs(self) -> Iterator[GraphSettings]:
        for row in self._conn.execute("SELECT uid, name, vector_dim, metric, text_properties, dropped FROM g_graph ORDER BY uid"):
            yield _settings(row)

    def vertex_rows(self, uid: str, with_embedding: bool = True) -> Iterator[VertexRow]:
        columns = "id, label, properties" + (", embedding" if with_embedding else "")
        for row in self._conn.execute(f"SELECT {columns} FROM g_vertex WHERE uid = ? ORDER BY id", (uid,)):
            yield _vertex(row)

    def edge_rows(self, uid: str) -> Iterator[EdgeRow]:
        for row in self._conn.execute(f"SELECT {_EDGE_COLUMNS} FROM g_edge WHERE uid = ? ORDER BY src, type, dst", (uid,)):
            yield _edge(row)


def _logged_seq(conn: sqlite3.Connection) -> int:
    """The last seq of the shard's log as `conn`'s transaction sees it: what its
    transactional engines' data reflects."""
    row = conn.execute("SELECT (SELECT value FROM meta WHERE name = 'base_seq'), (SELECT max(seq) FROM oplog)").fetchone()
    return max(int(row[0] or 0), int(row[1] or 0))


@contextmanager
def read_rows(conn: sqlite3.Connection) -> Iterator[RowView]:
    """The graph rows of shard.db as one read transaction on `conn` (a connection to
    the shard's database, e.g. `EngineContext.reader()`), with the seq they are at.

        with read_rows(context.reader()) as rows:
            for g in rows.graphs(): ...
    """
    conn.execute("BEGIN")
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'g_graph'").fetchone():
            yield _Empty(_logged_seq(conn))
        else:
            yield _View(conn, _logged_seq(conn))
    finally:
        conn.execute("COMMIT")


class _Empty:
    def __init__(self, seq: int) -> None:
        self.seq = seq

    def graphs(self) -> Iterator[GraphSettings]:
        return iter(())

    def vertex_rows(self, uid: str, with_embedding: bool = True) -> Iterator[VertexRow]:
        return iter(())

    def edge_rows(self, uid: str) -> Iterator[EdgeRow]:
        return iter(())


class IndexRows:
    """The rows as the Kuzu index reads them (`torua.graph.indexing.GraphRowSource`),
    inside a read transaction its caller holds on `conn`: the graphs not dropped, and
    each edge row's halves with the out-half's state."""

    def graphs(self, conn: sqlite3.Connection) -> list[indexing.GraphSpec]:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'g_graph'").fetchone():
            return []
        return [
            indexing.GraphSpec(g.uid, g.name, g.vector_dim, g.metric, g.text_properties)
            for g in map(_settings, conn.execute("SELECT uid, name, vector_dim, metric, text_properties, dropped FROM g_graph WHERE dropped = 0 ORDER BY uid"))
        ]

    def vertices(self, conn: sqlite3.Connection, uid: str) -> Iterator[indexing.VertexRow]:
        for id, label, properties, embedding in conn.execute("SELECT id, label, properties, embedding FROM g_vertex WHERE uid = ? ORDER BY id", (uid,)):
            yield indexing.VertexRow(id, label, properties, None if embedding is None else bytes(embedding))

    def edges(self, conn: sqlite3.Connection, uid: str) -> Iterator[indexing.EdgeRow]:
        for row in conn.execute(f"SELECT {_EDGE_COLUMNS} FROM g_edge WHERE uid = ? ORDER BY src, type, dst", (uid,)):
            edge = _edge(row)
            halves = "both" if edge.out_state and edge.in_state else "out" if edge.out_state else "in"
            yield indexing.EdgeRow(edge.src, edge.type, edge.dst, halves, edge.out_state or "committed", edge.properties, edge.weight)

    def holds_rows(self, conn: sqlite3.Connection, uids: Sequence[str]) -> bool:
        return any(
            conn.execute(f"SELECT 1 FROM {table} WHERE uid = ? LIMIT 1", (uid,)).fetchone() is not None
            for uid in uids for table in ("g_vertex", "g_edge")
        )

    def described(self, conn: sqlite3.Connection, uid: str, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            sql = f"SELECT id, label, properties FROM g_vertex WHERE uid = ? AND id IN ({', '.join('?' for _ in part)})"
            found.update((id, (label or "", properties or "{}")) for id, label, properties in conn.execute(sql, (uid, *part)))
        return found


# ------------------------------------------------------------- applying


def _apply_ensure(conn: sqlite3.Connection, seq: int, op: GraphEnsure) -> None:
    conn.execute(
        "INSERT INTO g_graph(uid, name, vector_dim, metric, text_properties, dropped) VALUES (?, ?, ?, ?, ?, 0) "
        "ON CONFLICT(uid) DO UPDATE SET name = excluded.name, vector_dim = excluded.vector_dim, metric = excluded.metric, "
        "text_properties = excluded.text_properties, dropped = 0",
        (op.uid, op.name, op.vector_dim, op.metric, json.dumps(list(op.text_properties))),
    )


def _apply_drop(conn: sqlite3.Connection, seq: int, op: GraphDrop) -> None:
    for table in ("g_vertex", "g_edge", "g_outbox", "g_support"):
        conn.execute(f"DELETE FROM {table} WHERE uid = ?", (op.uid,))
    conn.execute(
        "INSERT INTO g_graph(uid, name, vector_dim, metric, text_properties, dropped) VALUES (?, '', 0, 'cosine', '[]', 1) "
        "ON CONFLICT(uid) DO UPDATE SET dropped = 1",
        (op.uid,),
    )


def _apply_vertex_put(conn: sqlite3.Connection, seq: int, op: VertexPut) -> None:
    embedding = None if op.embedding is None else pack_vector(op.embedding)
    conn.execute(
        "INSERT INTO g_vertex(uid, id, label, properties, embedding) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(uid, id) DO UPDATE SET label = excluded.label, properties = excluded.properties, embedding = excluded.embedding",
        (op.uid, op.id, op.label, op.properties, embedding),
    )


def _apply_vertex_delete(conn: sqlite3.Connection, seq: int, op: VertexDelete) -> None:
    # Only the vertex: its primary logs the removal of every half it holds (and the
    # outbox task of each half held elsewhere) before it, in the same transaction.
    conn.execute("DELETE FROM g_vertex WHERE uid = ? AND id = ?", (op.uid, op.id))


EDGE_PUT_SQL = {
    "out": "INSERT INTO g_edge(uid, src, type, dst, out_state, out_token, in_state, in_token, properties, weight) "
    "VALUES (?, ?, ?, ?, ?, ?, NULL, 0, ?, ?) ON CONFLICT(uid, src, type, dst) DO UPDATE SET "
    "out_state = excluded.out_state, out_token = excluded.out_token, properties = excluded.properties, weight = excluded.weight",
    # the in-half has no state of its own: "committed" records that src's shard confirmed it
    "in": "INSERT INTO g_edge(uid, src, type, dst, out_state, out_token, in_state, in_token, properties, weight) "
    "VALUES (?, ?, ?, ?, NULL, 0, ?, ?, ?, ?) ON CONFLICT(uid, src, type, dst) DO UPDATE SET "
    "in_state = excluded.in_state, in_token = excluded.in_token, properties = excluded.properties, weight = excluded.weight",
    # both endpoints here: one row, both halves, nothing to agree with elsewhere
    "both": "INSERT INTO g_edge(uid, src, type, dst, out_state, out_token, in_state, in_token, properties, weight) "
    "VALUES (?, ?, ?, ?, 'committed', ?, 'confirmed', ?, ?, ?) ON CONFLICT(uid, src, type, dst) DO UPDATE SET "
    "out_state = excluded.out_state, out_token = excluded.out_token, in_state = excluded.in_state, "
    "in_token = excluded.in_token, properties = excluded.properties, weight = excluded.weight",
}


def _edge_put_row(seq: int, op: EdgePut) -> tuple[Any, ...]:
    """The parameters of `EDGE_PUT_SQL[op.halves]` for `op` at `seq` (checked)."""
    if op.halves not in HALVES:
        raise ValueError(f"graph.edge.put: halves must be one of {HALVES}, not {op.halves!r}")
    if op.state not in OUT_STATES:
        raise ValueError(f"graph.edge.put: state must be one of {OUT_STATES}, not {op.state!r}")
    token = op.token or seq  # 0: this operation makes a new incarnation of the edge
    if op.halves == "out":
        return (op.uid, op.src, op.type, op.dst, op.state, token, op.properties, op.weight)
    if op.halves == "in":
        return (op.uid, op.src, op.type, op.dst, CONFIRMED if op.state == "committed" else ATTACHED, token, op.properties, op.weight)
    return (op.uid, op.src, op.type, op.dst, token, token, op.properties, op.weight)


def _apply_edge_delete(conn: sqlite3.Connection, seq: int, op: EdgeDelete) -> None:
    if op.halves not in HALVES:
        raise ValueError(f"graph.edge.delete: halves must be one of {HALVES}, not {op.halves!r}")
    if op.outbox and op.outbox not in OUTBOX_KINDS:
        raise ValueError(f"graph.edge.delete: outbox must be one of {OUTBOX_KINDS} or empty, not {op.outbox!r}")
    key = (op.uid, op.src, op.type, op.dst)
    where = "uid = ? AND src = ? AND type = ? AND dst = ?"
    if op.halves == "both":
        conn.execute(f"DELETE FROM g_edge WHERE {where}", key)
    else:
        half = op.halves
        conn.execute(f"UPDATE g_edge SET {half}_state = NULL, {half}_token = 0 WHERE {where}", key)
        conn.execute(f"DELETE FROM g_edge WHERE {where} AND out_state IS NULL AND in_state IS NULL", key)
    if op.outbox:
        conn.execute("INSERT OR IGNORE INTO g_outbox(uid, kind, src, type, dst, token) VALUES (?, ?, ?, ?, ?, ?)", (*key[:1], op.outbox, *key[1:], op.token))


def _apply_outbox_done(conn: sqlite3.Connection, seq: int, op: OutboxDone) -> None:
    conn.execute(
        "DELETE FROM g_outbox WHERE uid = ? AND kind = ? AND src = ? AND type = ? AND dst = ? AND token = ?",
        (op.uid, op.kind, op.src, op.type, op.dst, op.token),
    )


def _apply_support(conn: sqlite3.Connection, seq: int, op: SupportChange) -> None:
    key = (op.uid, op.src, op.type, op.dst)
    conn.executemany("DELETE FROM g_support WHERE uid = ? AND src = ? AND type = ? AND dst = ? AND chunk = ?", [(*key, c) for c in op.removed])
    conn.executemany(
        "INSERT INTO g_support(uid, src, type, dst, chunk, note) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(uid, src, type, dst, chunk) DO UPDATE SET note = excluded.note",
        [(*key, c, note) for c, note in op.added.items()],
    )


# One handler per operation type this engine takes (OPERATION_ENGINES[type][0] == "graph"),
# but EdgePut: `GraphRows.apply` writes runs of those with `EDGE_PUT_SQL` and `_edge_put_row`.
HANDLERS: dict[type[Any], Callable[[sqlite3.Connection, int, Any], None]] = {
    GraphEnsure: _apply_ensure,
    GraphDrop: _apply_drop,
    VertexPut: _apply_vertex_put,
    VertexDelete: _apply_vertex_delete,
    EdgeDelete: _apply_edge_delete,
    OutboxDone: _apply_outbox_done,
    SupportChange: _apply_support,
}


# ------------------------------------------------------------- snapshots


def _check_chunk(data: bytes) -> tuple[str, list[tuple[Any, ...]]]:
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises a zoo of exception types
        raise ValueError(f"{ROWS_FORMAT} chunk does not decode: {exc}") from None
    if not isinstance(obj, dict) or obj.get("table") not in _TABLES or not isinstance(obj.get("rows"), list):
        raise ValueError(f"{ROWS_FORMAT} chunk must be {{table: one of {list(_TABLES)}, rows: [...]}}")
    columns, _ = _TABLES[obj["table"]]
    rows = []
    for row in obj["rows"]:
        if not isinstance(row, list) or len(row) != len(columns):
            raise ValueError(f"{ROWS_FORMAT} {obj['table']} rows have {len(columns)} columns: {row!r}")
        rows.append(tuple(row))
    return obj["table"], rows


def _row_size(row: Sequence[Any]) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row)


# ---------------------------------------------------------------- engine


class GraphRows:
    """The graph rows of one shard copy (see the module doc)."""

    name: str = ENGINE
    kind: EngineKind = "transactional"
    formats: tuple[str, ...] = (ROWS_FORMAT,)

    def __init__(self, context: EngineContext) -> None:
        self._reader = context.reader
        # Graph settings by uid, as committed: read by every request, changed by a
        # graph's ensure and drop only (and a snapshot's install). Dropped once a
        # transaction that may change them ends (`settled`); a read that overlapped
        # such a transaction is not kept.
        self._graphs: dict[str, GraphSettings | None] = {}
        self._graphs_lock = threading.Lock()
        self._graphs_version = 0
        self._graphs_changing = False

    # ------------------------------------------------------------- writing

    def load(self, conn: sqlite3.Connection, create: bool) -> None:
        # Always: a copy made before the graph existed gets its (empty) tables now.
        for statement in SCHEMA:
            conn.execute(statement)
        return None  # no counters: graph counts are read when asked (stats)

    def apply(self, conn: sqlite3.Connection, state: None, batch: Sequence[tuple[int, Operation]]) -> None:
        # A run of edge puts of the same halves (a batch of an import's or the edge
        # protocol's steps) is one executemany: the same rows, in order, with less
        # Python per row than one execute each.
        run: list[tuple[Any, ...]] = []
        halves = ""
        for seq, op in batch:
            if type(op) is EdgePut:
                row = _edge_put_row(seq, op)
                if op.halves != halves and run:
                    conn.executemany(EDGE_PUT_SQL[halves], run)
                    run = []
                halves = op.halves
                run.append(row)
                continue
            if run:
                conn.executemany(EDGE_PUT_SQL[halves], run)
                run = []
            if isinstance(op, (GraphEnsure, GraphDrop)):
                self._changing()
            handler = HANDLERS.get(type(op))
            if handler is None:
                raise TypeError(f"the graph engine cannot apply operation type {type(op).__name__}")
            handler(conn, seq, op)
        if run:
            conn.executemany(EDGE_PUT_SQL[halves], run)

    def install(self, conn: sqlite3.Connection, state: None, chunk: Chunk) -> None:
        self._changing()
        table, rows = _check_chunk(chunk.data)
        columns, _ = _TABLES[table]
        marks = ", ".join("?" for _ in columns)
        conn.executemany(f"INSERT OR REPLACE INTO {table}({', '.join(columns)}) VALUES ({marks})", rows)

    def save(self, conn: sqlite3.Connection, before: None, after: None) -> None:
        pass

    def _changing(self) -> None:
        with self._graphs_lock:
            self._graphs_changing = True
            self._graphs.clear()

    def settled(self) -> None:
        with self._graphs_lock:
            if self._graphs_changing:
                self._graphs_changing = False
                self._graphs_version += 1
                self._graphs.clear()

    def holds_data(self) -> bool:
        """Whether a snapshot of this copy holds graph rows (a node without the graph
        engine can copy it otherwise)."""
        return self._reader().execute("SELECT 1 FROM g_graph LIMIT 1").fetchone() is not None

    def close(self) -> None:
        pass  # its connections are the writer's

    # ------------------------------------------------------------- snapshots

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int) -> tuple[list[Chunk], bytes | None]:
        if cursor is None:
            index, after = 0, None
        else:
            try:
                index, after = msgpack.unpackb(cursor, raw=False)
                if not 0 <= index < len(_TABLE_ORDER) or not (after is None or isinstance(after, list)):
                    raise ValueError
            except Exception:
                raise ValueError("not a graph snapshot cursor") from None
        conn = self._reader()
        chunks: list[Chunk] = []
        size = 0
        while index < len(_TABLE_ORDER):
            table = _TABLE_ORDER[index]
            columns, keys = _TABLES[table]
            key_columns = ", ".join(columns[:keys])
            sql = f"SELECT {', '.join(columns)} FROM {table}"
            params: list[Any] = []
            if after is not None:
                sql += f" WHERE ({key_columns}) > ({', '.join('?' for _ in range(keys))})"
                params = list(after)
            sql += f" ORDER BY {key_columns}"
            rows: list[list[Any]] = []
            full = False
            cur = conn.execute(sql, params)
            try:
                for row in cur:
                    row_size = _row_size(row)
                    if (rows or chunks) and size + row_size > max_bytes:
                        full = True
                        break
                    rows.append([bytes(v) if isinstance(v, memoryview) else v for v in row])
                    size += row_size
            finally:
                cur.close()
            if rows:
                chunks.append(Chunk(ROWS_FORMAT, msgpack.packb({"table": table, "rows": rows}, use_bin_type=True)))
            if full:
                last = rows[-1][:keys] if rows else after
                return chunks, msgpack.packb([index, last], use_bin_type=True)
            index, after = index + 1, None
        return chunks, None

    # ------------------------------------------------------------- reading

    def graph(self, uid: str) -> GraphSettings | None:
        with self._graphs_lock:
            if uid in self._graphs:
                return self._graphs[uid]
            version = self._graphs_version
        row = self._reader().execute("SELECT uid, name, vector_dim, metric, text_properties, dropped FROM g_graph WHERE uid = ?", (uid,)).fetchone()
        settings = None if row is None else _settings(row)
        with self._graphs_lock:
            if version == self._graphs_version and not self._graphs_changing and len(self._graphs) < MAX_CACHED_GRAPHS:
                self._graphs[uid] = settings
        return settings

    def graphs(self) -> list[GraphSettings]:
        return [_settings(r) for r in self._reader().execute("SELECT uid, name, vector_dim, metric, text_properties, dropped FROM g_graph ORDER BY uid")]

    def vertex(self, uid: str, id: str, with_embedding: bool = False) -> VertexRow | None:
        columns = "id, label, properties" + (", embedding" if with_embedding else "")
        row = self._reader().execute(f"SELECT {columns} FROM g_vertex WHERE uid = ? AND id = ?", (uid, id)).fetchone()
        return None if row is None else _vertex(row)

    def live_vertex(self, uid: str, id: str, with_embedding: bool = False) -> tuple[bool, VertexRow | None]:
        """(whether graph `uid` was deleted here, its vertex `id` if held) in one read:
        what a vertex GET needs, where `graph` then `vertex` take two."""
        columns = "v.id, v.label, v.properties" + (", v.embedding" if with_embedding else "")
        row = self._reader().execute(
            f"SELECT g.dropped, {columns} FROM g_graph g LEFT JOIN g_vertex v ON v.uid = g.uid AND v.id = ? WHERE g.uid = ?", (id, uid)
        ).fetchone()
        if row is None:
            return False, None  # no op of the graph reached this shard yet
        return bool(row[0]), None if row[1] is None else _vertex(row[1:])

    def vertices(self, uid: str, ids: Sequence[str], with_embedding: bool = False) -> dict[str, VertexRow]:
        """The vertices among `ids` held here, by id."""
        columns = "id, label, properties" + (", embedding" if with_embedding else "")
        return {row[0]: _vertex(row) for row in self._vertex_rows(columns, uid, ids)}

    def existing(self, uid: str, ids: Iterable[str]) -> set[str]:
        """Which of `ids` are vertices held here: read from the primary key's index
        alone, where `vertices` also reads each row (a chunk's text, an entity's
        properties). What the edge protocol and support changes ask."""
        return {row[0] for row in self._vertex_rows("id", uid, ids)}

    def _vertex_rows(self, columns: str, uid: str, ids: Iterable[str]) -> Iterator[Sequence[Any]]:
        """`columns` of the vertices among `ids` held here, 500 ids per read."""
        conn = self._reader()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            yield from conn.execute(f"SELECT {columns} FROM g_vertex WHERE uid = ? AND id IN ({', '.join('?' for _ in part)})", (uid, *part))

    def edge(self, uid: str, src: str, type: str, dst: str) -> EdgeRow | None:
        """The row of one edge, whatever its halves' states."""
        row = self._reader().execute(
            f"SELECT {_EDGE_COLUMNS} FROM g_edge WHERE uid = ? AND src = ? AND type = ? AND dst = ?", (uid, src, type, dst)
        ).fetchone()
        return None if row is None else _edge(row)

    def edges_by_key(self, uid: str, keys: Iterable[EdgeKey]) -> dict[EdgeKey, EdgeRow]:
        """The rows of the edges among `keys` (src, type, dst) held here, by key: one
        read per `KEYS_AT_ONCE` keys, where `edge` takes one per key (a batch of halves)."""
        conn = self._reader()
        unique = list(dict.fromkeys(keys))
        found: dict[EdgeKey, EdgeRow] = {}
        for start in range(0, len(unique), KEYS_AT_ONCE):
            part = unique[start : start + KEYS_AT_ONCE]
            for row in conn.execute(by_key_sql(f"SELECT {_EDGE_COLUMNS} FROM", "g_edge", len(part)), (*_flat(part), uid)):
                edge = _edge(row)
                found[edge.key] = edge
        return found

    def supports(self, uid: str, keys: Iterable[EdgeKey]) -> dict[EdgeKey, dict[str, str]]:
        """The evidence (chunk id -> note) of each of `keys` (src, type, dst; type "" for a
        vertex `src`) that has any."""
        conn = self._reader()
        unique = list(dict.fromkeys(keys))
        found: dict[EdgeKey, dict[str, str]] = {}
        for start in range(0, len(unique), KEYS_AT_ONCE):
            part = unique[start : start + KEYS_AT_ONCE]
            sql = by_key_sql("SELECT g_support.src, g_support.type, g_support.dst, chunk, note FROM", "g_support", len(part))
            for src, type, dst, chunk, note in conn.execute(sql, (*_flat(part), uid)):
                found.setdefault((src, type, dst), {})[chunk] = note
        return found

    def support_held(self, uid: str, wanted: Mapping[EdgeKey, Iterable[str]]) -> dict[EdgeKey, tuple[int, dict[str, str]]]:
        """For each key (as in `supports`) that has any evidence: how many chunks it has,
        and the notes of those of its `wanted` chunks it has. What a change needs, where
        `supports` reads every chunk (an entity met in every document has one per chunk)."""
        conn = self._reader()
        keys = list(dict.fromkeys(wanted))
        counts: dict[EdgeKey, int] = {}
        for start in range(0, len(keys), KEYS_AT_ONCE):
            part = keys[start : start + KEYS_AT_ONCE]
            sql = by_key_sql("SELECT g_support.src, g_support.type, g_support.dst, count(*) FROM", "g_support", len(part))
            for src, type, dst, n in conn.execute(sql + " GROUP BY g_support.src, g_support.type, g_support.dst", (*_flat(part), uid)):
                counts[(src, type, dst)] = int(n)
        pairs = list(dict.fromkeys((*key, chunk) for key in keys if key in counts for chunk in wanted[key]))
        notes: dict[EdgeKey, dict[str, str]] = {}
        for start in range(0, len(pairs), CHUNK_PAIRS_AT_ONCE):
            part = pairs[start : start + CHUNK_PAIRS_AT_ONCE]
            values = ", ".join("(?, ?, ?, ?)" for _ in part)
            sql = (
                f"SELECT s.src, s.type, s.dst, s.chunk, s.note FROM (VALUES {values}) AS k JOIN g_support s ON s.uid = ? "
                "AND s.src = k.column1 AND s.type = k.column2 AND s.dst = k.column3 AND s.chunk = k.column4"
            )
            for src, type, dst, chunk, note in conn.execute(sql, (*(field for pair in part for field in pair), uid)):
                notes.setdefault((src, type, dst), {})[chunk] = note
        return {key: (n, notes.get(key, {})) for key, n in counts.items()}

    def dropped_tokens(self, uid: str, keys: Iterable[EdgeKey]) -> dict[EdgeKey, int]:
        """For each of `keys` whose drop task the outbox holds, the newest incarnation it
        drops (absent: none), in one read per `KEYS_AT_ONCE` keys."""
        conn = self._reader()
        unique = list(dict.fromkeys(keys))
        found: dict[EdgeKey, int] = {}
        for start in range(0, len(unique), KEYS_AT_ONCE):
            part = unique[start : start + KEYS_AT_ONCE]
            sql = by_key_sql("SELECT src, type, dst, max(token) FROM", "g_outbox", len(part)) + " AND kind = 'drop' GROUP BY src, type, dst"
            for src, type, dst, token in conn.execute(sql, (*_flat(part), uid)):
                found[(src, type, dst)] = int(token)
        return found

    def edges_of(self, uid: str, id: str) -> list[EdgeRow]:
        """Every row holding a half of an edge of `id` (its out-halves and in-halves,
        whatever their states): what a delete of the vertex removes."""
        conn = self._reader()
        rows = [_edge(r) for r in conn.execute(f"SELECT {_EDGE_COLUMNS} FROM g_edge WHERE uid = ? AND src = ?", (uid, id))]
        rows += [
            _edge(r)
            for r in conn.execute(
                f"SELECT {_EDGE_COLUMNS} FROM g_edge WHERE uid = ? AND dst = ? AND in_state IS NOT NULL AND src != ?", (uid, id, id)
            )
        ]
        # an out-half's row whose dst is `id` too and whose in-half is gone: not possible
        # (rows with both endpoints here hold both halves), but never missed either
        rows += [
            _edge(r)
            for r in conn.execute(
                f"SELECT {_EDGE_COLUMNS} FROM g_edge WHERE uid = ? AND dst = ? AND in_state IS NULL AND src != ?", (uid, id, id)
            )
        ]
        return rows

    def edges(
        self, uid: str, id: str, direction: str, types: Sequence[str] = (), limit: int = 1000, cursor: str = ""
    ) -> tuple[list[EdgeRow], str]:
        """A page of the visible edges of `id` (direction "out", "in" or "both": the
        out-edges first), of `types` (all when empty), and the cursor of the next page
        ("" at the end). The cursor names the last edge returned, so a page never
        repeats or skips an edge that exists throughout, whatever is written meanwhile.
        `ValueError` for a cursor not made here."""
        phase, after = _read_cursor(cursor, direction)
        phases = {"out": ["o"], "in": ["i"], "both": ["o", "i"]}[direction]
        conn = self._reader()
        found: list[tuple[str, EdgeRow]] = []
        for current in phases[phases.index(phase) :] if phase else phases:
            bound = after if current == phase else None
            need = limit - len(found) + 1  # one more: is there a next page?
            found.extend((current, row) for row in _phase_rows(conn, uid, id, current, types, bound, need, skip_loops=direction == "both"))
            if len(found) > limit:
                last_phase, last = found[limit - 1]
                other = last.dst if last_phase == "o" else last.src
                return [row for _, row in found[:limit]], _make_cursor(last_phase, last.type, other)
        return [row for _, row in found], ""

    def neighbours(
        self, uid: str, ids: Sequence[str], direction: str, types: Sequence[str] = (), limit: int = 1000, each: int = 0,
    ) -> tuple[list[EdgeRow], bool]:
        """The visible edges of every id in `ids` (one traversal hop), at most `limit`
        of them; True when there were more. With `each`, at most that many of each id
        (its first page of `edges`: not a cut `limit` reports)."""
        conn = self._reader()
        phases = {"out": ["o"], "in": ["i"], "both": ["o", "i"]}[direction]
        found: list[EdgeRow] = []
        for id in dict.fromkeys(ids):
            mine = 0
            for phase in phases:
                want = limit - len(found) + 1
                if each:
                    want = min(want, each - mine)
                    if want <= 0:
                        break
                rows = _phase_rows(conn, uid, id, phase, types, None, want, skip_loops=direction == "both")
                found.extend(rows)
                mine += len(rows)
                if len(found) > limit:
                    return found[:limit], True
        return found, False

    def graph_stats(self, uid: str) -> dict[str, int]:
        """Counts of one graph here: vertices; edges (the committed out-halves: summed
        over every shard, the graph's edges); in-halves whose src is elsewhere; halves
        not yet known to agree with their other half; outbox tasks."""
        conn = self._reader()
        row = conn.execute(
            "SELECT (SELECT count(*) FROM g_vertex WHERE uid = ?1),"
            " (SELECT count(*) FROM g_edge WHERE uid = ?1 AND out_state = 'committed'),"
            " (SELECT count(*) FROM g_edge WHERE uid = ?1 AND in_state IS NOT NULL AND out_state IS NULL),"
            " (SELECT count(*) FROM g_edge WHERE uid = ?1 AND (out_state IN ('pending', 'removing') OR in_state = 'attached')),"
            " (SELECT count(*) FROM g_outbox WHERE uid = ?1)",
            (uid,),
        ).fetchone()
        return {"vertices": row[0], "edges": row[1], "in_halves": row[2], "unsettled": row[3], "outbox": row[4]}

    def unsettled(self, limit: int = 1000, after: tuple[str, str, str, str] | None = None) -> list[tuple[str, EdgeRow]]:
        """Rows (with their graph's uid) holding a pending or removing out-half or an
        attached (not yet confirmed) in-half: what repair visits, after `after`."""
        sql = (
            f"SELECT uid, {_EDGE_COLUMNS} FROM g_edge WHERE (out_state IN ('pending', 'removing') OR in_state = 'attached')"
        )
        params: list[Any] = []
        if after is not None:
            sql += " AND (uid, src, type, dst) > (?, ?, ?, ?)"
            params = list(after)
        sql += " ORDER BY uid, src, type, dst LIMIT ?"
        params.append(limit)
        return [(r[0], _edge(r[1:])) for r in self._reader().execute(sql, params)]

    def stale_supports(self, limit: int = 200) -> list[tuple[str, EdgeKey]]:
        """Supported edges (with their graph's uid) without an out-half, or whose committed
        one weighs other than their number of chunks: what a support change leaves when
        its edge step never ran (GraphRAG's repair, torua.node.graph_support). A pending
        or removing half is on its way (the edge repair drives it); the weight only: a
        change that swaps chunks one for one is not seen here."""
        sql = (
            "SELECT s.uid, s.src, s.type, s.dst FROM g_support s LEFT JOIN g_edge e ON e.uid = s.uid AND e.src = s.src AND e.type = s.type AND e.dst = s.dst"
            " WHERE s.type != '' GROUP BY s.uid, s.src, s.type, s.dst"
            " HAVING MAX(e.out_state) IS NULL OR (MAX(e.out_state) = 'committed' AND MAX(e.weight) != COUNT(*)) LIMIT ?"
        )
        return [(r[0], (r[1], r[2], r[3])) for r in self._reader().execute(sql, (limit,))]

    def outbox(self, limit: int = 1000) -> list[OutboxTask]:
        rows = self._reader().execute("SELECT uid, kind, src, type, dst, token FROM g_outbox ORDER BY uid, kind, src, type, dst, token LIMIT ?", (limit,))
        return [OutboxTask(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows]

    def stats(self) -> dict[str, int]:
        row = self._reader().execute(
            "SELECT (SELECT count(*) FROM g_graph WHERE dropped = 0), (SELECT count(*) FROM g_vertex),"
            " (SELECT count(*) FROM g_edge WHERE out_state = 'committed'), (SELECT count(*) FROM g_outbox)"
        ).fetchone()
        return {"graphs": row[0], "vertices": row[1], "edges": row[2], "outbox": row[3]}


# ------------------------------------------------------ edge listing pages


def _phase_rows(
    conn: sqlite3.Connection, uid: str, id: str, phase: str, types: Sequence[str], after: tuple[str, str] | None, limit: int, skip_loops: bool = False
) -> list[EdgeRow]:
    """Visible edges of `id`: its out-edges ("o", by type then dst) or in-edges ("i", by
    type then src), after (type, other end) `after`. An edge from `id` to itself is an
    out-edge; with `skip_loops` it is not listed again among the in-edges."""
    if limit <= 0:
        return []
    if phase == "o":
        sql = f"SELECT {_EDGE_COLUMNS} FROM g_edge WHERE uid = ? AND src = ? AND out_state = 'committed'"
        other = "dst"
    else:
        sql = f"SELECT {_EDGE_COLUMNS} FROM g_edge WHERE uid = ? AND dst = ? AND in_state IS NOT NULL"
        other = "src"
        if skip_loops:
            sql += " AND NOT (src = dst AND out_state = 'committed')"
    params: list[Any] = [uid, id]
    if types:
        sql += f" AND type IN ({', '.join('?' for _ in types)})"
        params.extend(types)
    if after is not None:
        sql += f" AND (type, {other}) > (?, ?)"
        params.extend(after)
    sql += f" ORDER BY type, {other} LIMIT ?"
    params.append(limit)
    return [_edge(r) for r in conn.execute(sql, params)]


def _make_cursor(phase: str, type: str, other: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([phase, type, other], ensure_ascii=False).encode()).decode().rstrip("=")


def _read_cursor(cursor: str, direction: str) -> tuple[str, tuple[str, str] | None]:
    if not cursor:
        return "", None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        phase, type, other = json.loads(raw)
        if phase not in ("o", "i") or not isinstance(type, str) or not isinstance(other, str):
            raise ValueError
    except Exception:
        raise ValueError(f"cursor {cursor[:40]!r} is not one this listing made") from None
    if (direction == "out" and phase != "o") or (direction == "in" and phase != "i"):
        raise ValueError(f"cursor {cursor[:40]!r} belongs to a listing of another direction")
    return phase, (type, other)
