"""What the graph index holds, as pure rules over plain data (no Kuzu, no I/O).

The index of a shard copy (`torua.graph.index.GraphIndex`) is derived from the
shard's graph rows (SQLite, `torua.graph.rows`): built from them in bulk
(a rebuild) or kept up with them op by op (the log). Both ways go through the
rules here, so they cannot disagree:

- an edge row of a shard holds the out-half (its `src` is here), the in-half
  (its `dst` is here) or both; the out-half has a state (`pending`,
  `committed`, `removing`). A row is **visible** (an edge of the index) when it
  holds the in-half or its out-half is committed (`edge_visible`); the other
  rows (an out-half alone, not committed) are kept aside, invisible;
- the other endpoint of a visible edge that is not a vertex here is a **stub**
  vertex (only an id);
- a vertex's full-text document is the text of its graph's `text_properties`
  (`vertex_text`); an embedding of the wrong length is not indexed
  (`embedding_of`);
- BM25 scores made comparable across shards with the global IDF (`idf`,
  `query_terms`, docs/design/graph.md section 5);
- whether a lagging index replays the log or is built again (`plan_catch_up`).

The rows an index is built from come through `GraphRowSource`.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

__all__ = [
    "EdgeRow",
    "GraphRowSource",
    "GraphSpec",
    "HALVES",
    "IndexLimits",
    "OUT_STATES",
    "VertexRow",
    "edge_visible",
    "embedding_of",
    "halves_after_delete",
    "halves_after_put",
    "idf",
    "plan_catch_up",
    "query_terms",
    "state_after",
    "vertex_text",
]

HALVES = ("out", "in", "both")
OUT_STATES = ("pending", "committed", "removing")


# ------------------------------------------------------------------ the rows an index is built from


@dataclass(frozen=True)
class GraphSpec:
    """A graph as the shard holds it (its `graph.ensure`)."""

    uid: str
    name: str
    vector_dim: int = 0
    metric: str = "cosine"
    text_properties: tuple[str, ...] = ()


@dataclass(frozen=True)
class VertexRow:
    id: str
    label: str = ""
    properties: str = "{}"  # JSON object text
    # floats, or little-endian float32 bytes; None: no embedding
    embedding: Sequence[float] | bytes | None = None


@dataclass(frozen=True)
class EdgeRow:
    """One edge row of a shard: the halves it holds, and the out-half's state."""

    src: str
    type: str
    dst: str
    halves: str  # "out", "in" or "both"
    state: str = "committed"  # the out-half's; meaningless for "in"
    properties: str = "{}"
    weight: float = 1.0


class GraphRowSource(Protocol):
    """Reads a shard's graph rows, inside a read transaction the caller holds on
    `conn` (a read-only connection to shard.db), so that they are the rows at one
    seq of the log (implemented by `torua.graph.rows`)."""

    def graphs(self, conn: sqlite3.Connection) -> list[GraphSpec]: ...

    def vertices(self, conn: sqlite3.Connection, uid: str) -> Iterable[VertexRow]: ...

    def edges(self, conn: sqlite3.Connection, uid: str) -> Iterable[EdgeRow]: ...

    def holds_rows(self, conn: sqlite3.Connection, uids: Sequence[str]) -> bool:
        """Whether any of graphs `uids` holds a vertex or an edge row here."""
        ...

    def described(self, conn: sqlite3.Connection, uid: str, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(label, properties JSON) of the vertices among `ids` that the rows hold."""
        ...


# ------------------------------------------------------------------ edges


def edge_visible(halves: str, state: str) -> bool:
    """An edge row is in the index when it holds the in-half, or its out-half is committed.

    >>> [edge_visible(h, s) for h, s in [("out", "pending"), ("out", "committed"), ("in", "pending"), ("both", "removing")]]
    [False, True, True, True]
    """
    return "in" in _split(halves) or state == "committed"


def _split(halves: str) -> frozenset[str]:
    if halves == "both":
        return frozenset(("out", "in"))
    if halves in ("out", "in"):
        return frozenset((halves,))
    return frozenset()


def _join(held: frozenset[str]) -> str:
    if held == {"out", "in"}:
        return "both"
    return next(iter(held), "")


def halves_after_put(before: str, put: str) -> str:
    """The halves a row holds after an upsert of `put` ("" before: no row).

    >>> halves_after_put("", "out"), halves_after_put("in", "out"), halves_after_put("both", "in")
    ('out', 'both', 'both')
    """
    return _join(_split(before) | _split(put))


def halves_after_delete(before: str, removed: str) -> str:
    """The halves left after `removed` go ("": the row goes).

    >>> halves_after_delete("both", "out"), halves_after_delete("out", "both"), halves_after_delete("in", "out")
    ('in', '', 'in')
    """
    return _join(_split(before) - _split(removed))


def state_after(halves: str, before_state: str, put: str, put_state: str) -> str:
    """The out-half's state after an upsert: the op's when it names the out-half, else
    the one before; "" for a row without an out-half (its state means nothing).

    >>> state_after("both", "pending", "in", "committed"), state_after("in", "", "in", "committed")
    ('pending', '')
    """
    if "out" not in _split(halves):
        return ""
    return put_state if "out" in _split(put) else before_state


# ------------------------------------------------------------------ vertices


def vertex_text(properties: str, text_properties: Sequence[str]) -> str | None:
    """The full-text document of a vertex: its `text_properties` that are strings or
    numbers, in that order, joined by a space; None when there is none (not counted as
    a document).

    >>> vertex_text('{"title": "Fox", "n": 3, "body": "runs", "x": [1]}', ["title", "body", "x", "missing"])
    'Fox runs'
    """
    if not text_properties:
        return None
    try:
        doc = json.loads(properties)
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    parts = []
    for name in text_properties:
        value = doc.get(name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(str(value))
    text = " ".join(p for p in parts if p.strip())
    # A text without a word Kuzu indexes (digits and punctuation only) is no document to
    # Kuzu (it is not counted in N): NULL keeps text_stats' count the same as Kuzu's.
    # (A text of stop words only is still counted here and not by Kuzu.)
    return text if query_terms(text) else None


def embedding_of(embedding: Sequence[float] | bytes | None, dim: int) -> list[float] | None:
    """The embedding as the index holds it: `dim` finite floats, else None (a graph
    without vectors, no embedding, or one the write path should have refused).

    >>> import struct
    >>> embedding_of([1, 0.5], 2), embedding_of([1.0], 2), embedding_of(struct.pack("<2f", 1, 2), 2)
    ([1.0, 0.5], None, [1.0, 2.0])
    """
    if not dim or embedding is None:
        return None
    if isinstance(embedding, (bytes, bytearray, memoryview)):
        raw = bytes(embedding)
        if len(raw) != 4 * dim:
            return None
        values = np.frombuffer(raw, dtype="<f4")  # in numpy: a rebuild reads every vector of the shard
    else:
        if len(embedding) != dim:
            return None
        try:
            values = np.asarray(embedding, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if values.shape != (dim,):
            return None
    if not np.isfinite(values).all():
        return None
    return values.tolist()


# ------------------------------------------------------------------ full-text scores across shards

# Kuzu 0.11.3's FTS analyzer (extension/fts): lower-case, these characters become a
# space (digits too), split on whitespace; then stop words go and words are stemmed,
# which the index does itself (STEM, and a term with no document).
_SEPARATORS = re.compile(r"[0-9!@#$%^&*()_+={}\[\]:;<>,.?~/|'\"`\-]+")


def query_terms(query: str) -> list[str]:
    """The words of a query as Kuzu's analyzer splits them, in order, each once.

    >>> query_terms("The quick-brown fox, the FOX 42x")
    ['the', 'quick', 'brown', 'fox', 'x']
    """
    seen: dict[str, None] = {}
    for word in _SEPARATORS.sub(" ", query.lower()).split():
        seen.setdefault(word, None)
    return list(seen)


def idf(docs: int, term_docs: int) -> float:
    """Kuzu's BM25 inverse document frequency: log10((N - df + 0.5) / (df + 0.5) + 1).

    >>> round(idf(3, 1), 6)
    0.425969
    """
    return math.log10((docs - term_docs + 0.5) / (term_docs + 0.5) + 1.0)


# ------------------------------------------------------------------ catching up

# Measured here (docs/design/graph.md section 9), one thread: replaying an op costs
# ~2-4 ms (an embedding ~3-11 ms more, kept in its HNSW index: ~8-11 ms for a vertex
# put with a 2-d embedding); a rebuild copies ~100k rows/s, then builds the HNSW index
# at ~0.3-2.7 ms per vector (2-d to 384-d).
REPLAY_S_PER_OP = 0.003
REPLAY_S_PER_VECTOR = 0.008
REBUILD_S_FIXED = 0.5
REBUILD_S_PER_ROW = 0.00002
REBUILD_S_PER_VECTOR = 0.003


@dataclass(frozen=True)
class CatchUpPlan:
    how: Literal["current", "replay", "rebuild"]
    reason: str = ""
    estimate_s: float = 0.0


def plan_catch_up(
    *,
    applied: int | None,
    committed: int,
    log_base: int,
    gap_ops: int,
    rows: int,
    vectors: int,
    must_rebuild: str = "",
    gap_vectors: int = 0,
) -> CatchUpPlan:
    """How an index at `applied` (None: it has no file) reaches the rows at `committed`:
    nothing to do, replay the log's `gap_ops` ops after it (`gap_vectors` of them put
    an embedding, each far dearer to replay), or build it again from the rows (`rows`
    vertices and edge rows, `vectors` embeddings, the gap's included): when it must
    (`must_rebuild` says why), when the log no longer holds the gap, or when that is
    cheaper by the measured costs.

    >>> plan_catch_up(applied=10, committed=10, log_base=0, gap_ops=0, rows=5, vectors=0).how
    'current'
    >>> plan_catch_up(applied=3, committed=10, log_base=5, gap_ops=5, rows=5, vectors=0).reason
    'the log starts after seq 5, the index is at 3'
    """
    rebuild_s = REBUILD_S_FIXED + rows * REBUILD_S_PER_ROW + vectors * REBUILD_S_PER_VECTOR
    if must_rebuild:
        return CatchUpPlan("rebuild", must_rebuild, rebuild_s)
    if applied is None:
        return CatchUpPlan("rebuild", "no index file", rebuild_s)
    if applied > committed:
        return CatchUpPlan("rebuild", f"the index is at seq {applied}, after the rows' {committed}", rebuild_s)
    if applied >= committed:
        return CatchUpPlan("current")
    if applied < log_base:
        return CatchUpPlan("rebuild", f"the log starts after seq {log_base}, the index is at {applied}", rebuild_s)
    replay_s = gap_ops * REPLAY_S_PER_OP + gap_vectors * REPLAY_S_PER_VECTOR
    if replay_s > rebuild_s:
        return CatchUpPlan("rebuild", f"{gap_ops} ops to replay (~{replay_s:.1f} s), a rebuild ~{rebuild_s:.1f} s", rebuild_s)
    return CatchUpPlan("replay", f"{gap_ops} ops", replay_s)


BUSY_WINDOW_S = 1.0  # the span over which a shard's graph writes are counted to tell a busy shard
BUSY_OPS = 24  # graph ops in that span above which the writer leaves them to the catch-up (~3 ms each in its thread)


def apply_now(batch_ops: int, recent_ops: int, *, lazy_ops: int, busy_ops: int = BUSY_OPS) -> bool:
    """Whether the writer applies a committed batch of `batch_ops` graph ops to the index
    at once, in its own thread, rather than leave them to the catch-up: a small batch
    (at most `lazy_ops`) on a quiet shard (at most `busy_ops` ops handed over in the
    last `BUSY_WINDOW_S`, this batch's included; `recent_ops`: those before it). No
    ops (the writer moving `applied_seq` on) is always at once.

    Op by op, Kuzu costs ~3 ms per op and ~8 ms more per embedding, in the writer's
    thread; a busy shard (an import, a GraphRAG ingest: ~45 small writes per
    document) spent ~60% of its node's CPU there. Left behind, its index catches up
    when a query needs it or the shard is idle, and then by whichever is cheaper:
    replaying the gap or one bulk rebuild (`plan_catch_up`). A quiet shard keeps its
    index current, so a query after a few writes does not wait.

    >>> apply_now(1, 0, lazy_ops=8), apply_now(9, 0, lazy_ops=8), apply_now(4, 20, lazy_ops=8), apply_now(4, 21, lazy_ops=8)
    (True, False, True, False)
    """
    return batch_ops == 0 or (batch_ops <= lazy_ops and recent_ops + batch_ops <= busy_ops)


IDLE_COST_FACTOR = 4.0  # an index catches up on its own after an idle spell this many times its last catch-up
IDLE_MAX_S = 60.0
BULK_IDLE_FACTOR = 3.0  # after a bulk write, an index waits this many times `idle_s` before it catches up on its own


def idle_wait(idle_s: float, last_catch_up_s: float, bulk: bool = False) -> float:
    """How long a shard must have been idle before its index, left behind, catches up on
    its own: `idle_s` (`BULK_IDLE_FACTOR` times that when its last write was left
    behind, a bulk one or one on a busy shard: an import's or an ingest's next
    request is likely on its way), or
    `IDLE_COST_FACTOR` times what its last catch-up on idle took (at most
    `IDLE_MAX_S`). During an import that pauses now and then, each catch-up is undone
    by the next request's writes, and a rebuild copies the whole shard copy: waiting
    in proportion to its cost keeps that work at most about a quarter of the idle
    time. A query that needs the index does not wait for this (it asks at once).

    >>> idle_wait(1.0, 0.0), idle_wait(1.0, 0.8), idle_wait(1.0, 3.0), idle_wait(1.0, 100.0), idle_wait(1.0, 0.0, bulk=True)
    (1.0, 3.2, 12.0, 60.0, 3.0)
    """
    return max(idle_s * (BULK_IDLE_FACTOR if bulk else 1.0), min(IDLE_MAX_S, IDLE_COST_FACTOR * last_catch_up_s))


def retry_delay(failures: int) -> float:
    """Seconds a catch-up waits after its `failures`-th failure in a row before it tries
    again (a rebuild each time): doubling from 1 s up to a minute, so an index that
    cannot be built (a buffer pool too small for it, a full disk) does not burn a core.

    >>> [retry_delay(n) for n in (1, 2, 3, 6, 7, 50)]
    [1.0, 2.0, 4.0, 32.0, 60.0, 60.0]
    """
    return min(60.0, 2.0 ** (min(max(failures, 1), 10) - 1))


def failure_reason(error: str, buffer_pool_bytes: int) -> str:
    """What a failed catch-up says (in the log and to a query that waits for it), with
    what to do about a buffer pool that is too small.

    >>> print(failure_reason("Buffer manager exception: The buffer pool is full", 16 << 20))
    Buffer manager exception: The buffer pool is full (the index needs more than the node's --graph-buffer-pool of 16 MiB per shard copy: start the node with a larger one)
    >>> failure_reason("disk I/O error", 16 << 20)
    'disk I/O error'
    """
    if "buffer pool" in error.lower():
        return f"{error} (the index needs more than the node's --graph-buffer-pool of {buffer_pool_bytes >> 20} MiB per shard copy: start the node with a larger one)"
    return error


@dataclass(frozen=True)
class IndexLimits:
    """Per database (node settings --graph-buffer-pool, --graph-max-db-size, --graph-threads,
    --graph-vector-memory)."""

    buffer_pool_bytes: int = 256 << 20
    max_db_bytes: int = 8 << 30  # address space, not memory: a build of a shard with a dozen corpora needed more than 1 GiB
    threads: int = 1
    vector_memory_bytes: int = 64 << 20  # per graph: its vectors searched in memory up to this (torua.graph.vector_cache)
