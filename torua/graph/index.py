"""`GraphIndex`: the Kuzu index of a shard copy's graphs, a follower engine of its
writer (`torua.storage.engine.FollowerEngine`; docs/design/graph.md sections 1 and 3).

The graph's rows are the truth (SQLite, in the writer's transaction, read through a
`GraphRowSource`); the index is derived from them, in `<shard dir>/graph.kuzu`:

- **Op by op.** The writer hands it the graph operations of each committed batch;
  a small batch is applied at once, in one Kuzu transaction that records the
  index's `applied_seq` (idempotent by seq: an op at or below it changes nothing).
- **Lazy after bulk writes.** A batch of more than `lazy_ops` ops (an import), one
  on a busy shard (more than `busy_ops` graph ops in the last second: a GraphRAG
  ingest, `apply_now`), or one that comes while the index is behind or busy, is not applied: the index is
  marked behind and the writer goes on at SQLite's speed. A query that needs the
  index first brings it up to the rows' seq (`wait_current`, within its deadline);
  an index left behind catches up on its own once its shard has been idle for
  `idle_s`, or longer after a write left behind (a bulk one, or one on a busy
  shard), before its first file, or after a costly catch-up (`idle_wait`). Catching up replays
  the log after `applied_seq`, or builds the index again (`plan_catch_up`).
- **Rebuild**: from the rows, into a fresh file (`KuzuGraphs.build`: a copy of the
  empty file of the shard's graphs, `torua.graph.index_templates`, then `COPY FROM`
  pyarrow tables, then indexes), renamed into place: when the file is missing, does
  not open, is marked risky (a graph's creation or drop, or a swap, cut short), is
  behind the log's start or ahead of its end, when an apply failed, or when
  replaying would take longer.

So to the writer `apply` never fails (the rows hold what the index lacks), and
`applied_seq` is what the index answers for: its file's seq, or the log's start
when it must be built again anyway. Every acknowledged write is seen by a query:
the query waits until the index holds the rows' seq as it was when the query came.

All Kuzu work of queries runs in a thread of a small pool (`run_in_executor`),
never on the event loop; catching up runs in the index's own thread, and a rebuild
in one of the process's few build threads (`BUILD_THREADS`), shared by every shard.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from torua.graph.indexing import (
    BUSY_OPS,
    BUSY_WINDOW_S,
    GraphRowSource,
    IndexLimits,
    apply_now,
    failure_reason,
    idle_wait,
    plan_catch_up,
    retry_delay,
)
from torua.graph.index_templates import DIRECTORY as TEMPLATES, IndexTemplates
from torua.graph.kuzu_index import WAL_CHECKPOINT_BYTES, BuildStopped, IndexDamaged, KuzuGraphs, QueryRefused
from torua.storage.engine import Chunk, EngineContext, EngineKind, UnknownChunkFormat
from torua.storage.operations import (
    EdgeDelete,
    EdgePut,
    GraphDrop,
    GraphEnsure,
    Operation,
    OutboxDone,
    VertexDelete,
    VertexPut,
    decode_operation,
    operation_type,
)

__all__ = ["FILENAME", "GRAPH_OPERATIONS", "GraphIndex", "IndexBehind", "QueryRefused", "limits_from_config"]

log = logging.getLogger("torua.graph")

FILENAME = "graph.kuzu"
BUILD_SUFFIX = ".build"
ENGINE_NAME = "graph_index"
GRAPH_OPERATIONS = frozenset(cls.TYPE for cls in (GraphEnsure, GraphDrop, VertexPut, VertexDelete, EdgePut, EdgeDelete, OutboxDone))
LAZY_OPS = 8  # a batch with more graph ops than this leaves the index behind (~3 ms each; an import request
# split over 16 shards gives each one ~lines/16 ops, so 64 kept 500-line imports waiting for Kuzu)
IDLE_S = 1.0  # an index behind catches up once its shard had no write for this long
REPLAY_PAGE = 500  # log rows per catch-up transaction
GAP_SCAN = 20000  # log rows read to tell how many of a gap's ops carry an embedding
QUERY_THREADS = 4
WAIT_THREADS = 64
# Threads that build the node's indexes (every shard copy's builds queue for them). Few,
# and the same ones: glibc gives each thread that allocates a malloc arena of its own
# (up to 8 per core; a node limits them, --malloc-arenas, but may be run with glibc's default),
# and a build's Kuzu `Database()` touches ~47 MiB of fresh memory in a thread that never
# built before (12,000 page faults, ~35 ms more CPU than in a thread that did). Built
# in each shard's own catch-up thread, the 16 builds at the end of `torua bench --rag`'s
# ingest cost the three nodes 4-7 s of CPU; in one thread per node they wait in turn.
BUILD_THREADS = max(1, min(4, (os.cpu_count() or 2) // 2))

T = TypeVar("T")


class IndexBehind(TimeoutError):
    """The index could not catch up with the rows within the query's deadline."""


def limits_from_config(config: Any) -> IndexLimits:
    """The node settings (torua.config.NodeConfig, in MiB) as the index's limits."""
    return IndexLimits(
        buffer_pool_bytes=int(config.graph_buffer_pool) << 20,
        max_db_bytes=int(config.graph_max_db_size) << 20,
        threads=int(config.graph_threads),
        vector_memory_bytes=int(config.graph_vector_memory) << 20,
    )


_pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_pool_lock = threading.Lock()


def _shared_pool(name: str, threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """The process's pool `name` (its threads' name prefix), made on first use."""
    with _pool_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=name)
        return pool


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that run Kuzu queries (`QUERY_THREADS`)."""
    return _shared_pool("graph-index", QUERY_THREADS)


def _waiters() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that only wait for an index to catch up (on a condition), so that queries
    waiting for one shard's index never hold the query threads another shard's need."""
    return _shared_pool("graph-index-wait", WAIT_THREADS)


def _builders() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that build indexes, every shard copy's in turn (`BUILD_THREADS`)."""
    return _shared_pool("graph-index-build", BUILD_THREADS)


class _Gate:
    """Shared for Kuzu reads and writes (Kuzu runs them side by side), exclusive for
    closing or replacing the database."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._shared:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def _log_bounds(conn: sqlite3.Connection) -> tuple[int, int]:
    """(base_seq, last_seq) of the shard's log as `conn` sees it (torua.storage.writer's layout)."""
    base = int(conn.execute("SELECT value FROM meta WHERE name = 'base_seq'").fetchone()[0])
    top = conn.execute("SELECT max(seq) FROM oplog").fetchone()[0]
    return base, max(base, int(top) if top is not None else 0)


@contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


class GraphIndex:
    """The follower engine `graph_index` of one shard copy (see the module doc)."""

    name: str = ENGINE_NAME
    kind: EngineKind = "follower"
    formats: tuple[str, ...] = ()  # a snapshot carries the rows; the index is built from them

    def __init__(
        self,
        context: EngineContext,
        rows: GraphRowSource,
        limits: IndexLimits = IndexLimits(),
        *,
        lazy_ops: int = LAZY_OPS,
        busy_ops: int = BUSY_OPS,
        busy_window_s: float = BUSY_WINDOW_S,
        idle_s: float = IDLE_S,
    ) -> None:
        self.shard_id = context.shard_id
        self.path = Path(context.directory) / FILENAME
        # beside the shard directories: the node's shards share the empty files their builds start from
        self.templates = IndexTemplates.in_dir(Path(context.directory).parent / TEMPLATES)
        self.rows = rows
        self.limits = limits
        # Kuzu keeps what the WAL holds in the buffer pool until it is folded in: fold well below the pool.
        self.wal_limit = min(WAL_CHECKPOINT_BYTES, limits.buffer_pool_bytes // 4)
        self.lazy_ops = lazy_ops
        self.busy_ops = busy_ops
        self.busy_window_s = busy_window_s
        self.idle_s = idle_s
        self._recent: collections.deque[tuple[float, int]] = collections.deque()  # (when, graph ops) handed over in the last busy_window_s
        self._reader = context.reader
        self._kuzu: KuzuGraphs | None = None
        self._gate = _Gate()
        self._write = threading.Lock()  # one Kuzu writer: the writer's apply or the catch-up
        self._cond = threading.Condition()  # guards what follows
        self._given = 0  # the highest seq the writer handed over
        # graph uid -> the highest seq of its ops the writer handed over (every op the index
        # may not hold yet comes through apply: new ones, and the log's replay on open)
        self._graph_given: dict[str, int] = {}
        self._rebuild = ""  # why the file must be built again ("": it need not)
        self._upgrade = ""  # why a build would serve better (a graph outgrew exact vector search): done when idle, no query waits for it
        self._behind = False  # the writer left ops to the catch-up
        self._waiting = 0  # queries waiting for the index to catch up
        self._last_write = time.monotonic()
        self._last_bulk = False  # the last batch handed over was left behind: a bulk one (more than `lazy_ops` ops), or on a busy shard
        self._failure = ""  # the last catch-up that failed, and why
        self._failures = 0  # catch-ups failed in a row
        self._idle_cost = 0.0  # seconds the last catch-up on idle (no query waiting) took
        self._reopen = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._queued: concurrent.futures.Future[None] | None = None  # its build, waiting for a build thread
        self.builds = 0
        self.replayed_ops = 0
        KuzuGraphs.remove_files(Path(str(self.path) + BUILD_SUFFIX))  # a build cut short
        if self.path.exists() or KuzuGraphs(self.path, limits, self.shard_id).risky_path.exists():
            self._open_file()

    @classmethod
    def factory(cls, rows: GraphRowSource, limits: IndexLimits = IndexLimits(), **options: Any) -> Callable[[EngineContext], "GraphIndex"]:
        return lambda context: cls(context, rows, limits, **options)

    def _open_file(self) -> None:
        try:
            # Not closed cleanly. Replaying the WAL of an index with FTS and HNSW indexes
            # after a SIGKILL segfaulted Kuzu 0.11.3 or lost rows here (docs/design/graph.md
            # section 9): the file's last checkpoint is opened, the log replayed from there.
            if not KuzuGraphs(self.path, self.limits, self.shard_id).risky_path.exists() and KuzuGraphs.discard_wal(self.path):
                log.warning("shard %d: the graph index was not closed cleanly; its WAL is dropped and the log replayed from its last checkpoint", self.shard_id)
            self._kuzu = KuzuGraphs.open(self.path, self.limits, self.shard_id, create=False)
        except (IndexDamaged, FileNotFoundError) as exc:
            log.warning("shard %d: the graph index is built again: %s", self.shard_id, exc)
            KuzuGraphs.remove_files(self.path)
            self._kuzu = None
            self._rebuild = str(exc) or "its file is missing"

    # ------------------------------------------------------------------ the writer's side

    def applied_seq(self) -> int | None:
        with self._cond:
            kuzu, rebuild = self._kuzu, self._rebuild
        with _read(self._reader()) as conn:
            base, last = _log_bounds(conn)
            held = conn.execute("SELECT value FROM meta WHERE name = ?", ("engine." + self.name,)).fetchone()
        if kuzu is None:
            if not rebuild and held is None:
                return None
            with self._cond:
                self._rebuild = self._rebuild or "its file is missing"
                self._behind = True
            return base
        applied = kuzu.applied_seq
        if not base <= applied <= last:
            with self._cond:
                self._rebuild = f"it is at seq {applied}, the log holds {base + 1} to {last}"
                self._behind = True
            return min(max(applied, base), last)
        return applied

    def apply(self, batch: Sequence[tuple[int, Operation]], through: int) -> None:
        given = {uid: seq for seq, op in batch if (uid := getattr(op, "uid", None))}
        with self._cond:
            for uid, seq in given.items():
                self._graph_given[uid] = max(seq, self._graph_given.get(uid, 0))
            kuzu = self._kuzu
            behind = kuzu is None or bool(self._rebuild) or self._behind or kuzu.applied_seq < self._given
            self._given = max(self._given, through)
            now = self._last_write = time.monotonic()
            while self._recent and self._recent[0][0] < now - self.busy_window_s:
                self._recent.popleft()
            now_or_later = apply_now(len(batch), sum(n for _, n in self._recent), lazy_ops=self.lazy_ops, busy_ops=self.busy_ops)
            # a write left behind because the shard is busy counts as a bulk one: its next writes
            # are likely on their way too (waiting one idle second, a GraphRAG ingest's shard
            # rebuilt its index between a worker's batches and again at the ingest's end)
            self._last_bulk = not now_or_later
            if batch:
                self._recent.append((now, len(batch)))
        if kuzu is None and not batch:
            return  # nothing held, nothing given
        # No file yet (the shard's first graph data): the catch-up builds it, once the
        # shard is idle or a query needs it (built here, a busy shard built it twice).
        # A graph's tables created or dropped: the catch-up does it (it reopens the database).
        lazy = behind or not now_or_later or (kuzu is not None and kuzu.changes_tables(batch))
        if not lazy and self._write.acquire(blocking=False):
            assert kuzu is not None
            try:
                with self._gate.shared():
                    kuzu.apply(batch, through)
                    outgrown = "" if self._upgrade else kuzu.wants_rebuild()
                if outgrown:
                    self._mark(upgrade=outgrown)
                elif kuzu.wal_bytes() > self.wal_limit:
                    self._mark(reopen=True)
                return
            except Exception as exc:
                log.error("shard %d: the graph index could not apply ops up to seq %d (%s); it is built again from the rows", self.shard_id, through, exc)
                self._mark(rebuild=f"an apply failed: {exc}")
                return
            finally:
                self._write.release()
        self._mark()

    def _mark(self, rebuild: str = "", reopen: bool = False, upgrade: str = "") -> None:
        """The index is behind (or must be rebuilt, or reopened, or would gain from a
        build when idle): wake its catch-up."""
        with self._cond:
            news = not self._behind or (rebuild and not self._rebuild) or (reopen and not self._reopen) or (upgrade and not self._upgrade)
            self._behind = self._behind or not upgrade
            self._rebuild = self._rebuild or rebuild
            self._reopen = self._reopen or reopen
            self._upgrade = self._upgrade or upgrade
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._catch_up_main, name=f"shard-{self.shard_id}-graph-index", daemon=True)
                self._thread.start()
            if news:  # else the catch-up, waiting for its shard to go idle, wakes on its own timeout and looks again
                self._cond.notify_all()

    def install(self, chunk: Chunk) -> None:
        raise UnknownChunkFormat(f"the graph index installs no chunks (it is built from the rows), not {chunk.format!r}")

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int) -> tuple[list[Chunk], bytes | None]:
        return [], None

    def stats(self) -> dict[str, int]:
        with self._cond:
            kuzu = self._kuzu
            out = {
                "applied_seq": kuzu.applied_seq if kuzu else 0,
                "behind": int(self._behind),
                "builds": self.builds,
                "replayed_ops": self.replayed_ops,
                "failures": self._failures,  # catch-ups failed in a row
                "graphs": len(kuzu.graphs) if kuzu else 0,
            }
        out["file_bytes"] = kuzu.file_bytes() if kuzu else 0
        out["wal_bytes"] = kuzu.wal_bytes() if kuzu else 0
        return out

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            thread, queued = self._thread, self._queued
            self._cond.notify_all()
        if queued is not None:
            queued.cancel()  # not started yet: other shards' builds may be ahead of it
        if thread is not None:
            thread.join()
        with self._write, self._gate.exclusive():
            if self._kuzu is not None:
                self._kuzu.close()
                self._kuzu = None

    # ------------------------------------------------------------------ catching up

    def _catch_up_main(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    idle = time.monotonic() - self._last_write
                    wait = self._catch_up_wait()
                    if self._reopen or (self._behind and (self._waiting or idle >= wait)) or (self._upgrade and not self._waiting and idle >= wait):
                        break
                    self._cond.wait(timeout=max(0.01, wait - idle) if self._behind or self._upgrade else None)
                if self._stopping:
                    return
                reopen, self._reopen = self._reopen, False
                given, on_idle = self._given, not self._waiting
            started = time.monotonic()
            try:
                if reopen:
                    self._fold_wal()
                current = self._step()
                if on_idle:
                    self._idle_cost = time.monotonic() - started
                if current:
                    with self._cond:
                        if self._given == given:  # nothing came meanwhile
                            self._behind = False
                            self._failure = ""
                        self._cond.notify_all()
            except BuildStopped:
                return
            except Exception as exc:
                # Whatever step failed (a replay, a fold of the WAL, a count), the next try
                # builds a fresh file from the rows: retrying the step that failed may
                # fail the same way for ever. Tries are spaced out (retry_delay).
                self._failures += 1
                reason = failure_reason(str(exc), self.limits.buffer_pool_bytes)
                delay = retry_delay(self._failures)
                log.error("shard %d: the graph index could not catch up (%s); building it again in %g s", self.shard_id, reason, delay)
                with self._cond:
                    self._failure = reason
                    self._rebuild = self._rebuild or f"catching up failed: {exc}"
                    self._cond.notify_all()
                    until = time.monotonic() + delay
                    while not self._stopping and time.monotonic() < until:
                        self._cond.wait(timeout=until - time.monotonic())
            else:
                self._failures = 0

    def catch_up_wait(self) -> float:
        """Seconds its shard must be idle before the index, when left behind, catches up
        on its own (`idle_wait`)."""
        with self._cond:
            return self._catch_up_wait()

    def _catch_up_wait(self) -> float:
        # a shard's first file waits as after a bulk write: a graph's first writes to a
        # shard usually come in a stream (an import, an ingest), and a file built after
        # the first few is built again after the rest
        return idle_wait(self.idle_s, self._idle_cost, self._last_bulk or self._kuzu is None)

    def _fold_wal(self) -> None:
        with self._write, self._gate.exclusive():
            if self._kuzu is not None:
                self._kuzu.reopen()

    def _step(self) -> bool:
        """One step towards the rows' seq: a page of the log replayed, or a rebuild. True
        when the index is there (or there is nothing to index)."""
        with self._write:
            with self._cond:
                kuzu, rebuild = self._kuzu, self._rebuild or ("" if self._waiting else self._upgrade)
            applied = kuzu.applied_seq if kuzu is not None else None
            with _read(self._reader()) as conn:
                base, last = _log_bounds(conn)
                if kuzu is None and not rebuild and not self.rows.graphs(conn):
                    return True  # no file, and nothing to index: stays without one
                indexed = kuzu.vector_indexed() if kuzu is not None else set()
                gap, gap_vectors = _gap(conn, applied, indexed) if applied is not None and applied < last else (0, 0)
            rows, vectors = gap, gap_vectors  # a rebuild copies what the gap adds too
            if kuzu is not None and gap:
                with self._gate.shared():
                    for uid in list(kuzu.graphs):
                        counts = kuzu.counts(uid)
                        rows += counts.get("vertices", 0) + counts.get("edges", 0)
                        vectors += counts.get("embeddings", 0) if uid in indexed else 0
            plan = plan_catch_up(
                applied=applied, committed=last, log_base=base, gap_ops=gap, rows=rows, vectors=vectors, must_rebuild=rebuild, gap_vectors=gap_vectors,
            )
            if plan.how == "current":
                return True
            if plan.how == "replay":
                assert kuzu is not None and applied is not None
                self._replay(kuzu, applied)
                return False
            log.info("shard %d: building the graph index again (%s)", self.shard_id, plan.reason)
            self._build_in_turn()
            return False

    def _build_in_turn(self) -> None:
        """`_build` in one of the process's build threads (`BUILD_THREADS`), once the
        builds queued before it are done; `BuildStopped` when the index closes first."""
        future = _builders().submit(self._build)
        with self._cond:
            self._queued = future
            stopping = self._stopping
        if stopping:
            future.cancel()
        try:
            future.result()
        except concurrent.futures.CancelledError:
            raise BuildStopped() from None
        finally:
            with self._cond:
                self._queued = None

    def _replay(self, kuzu: KuzuGraphs, applied: int) -> None:
        with _read(self._reader()) as conn:
            base, _ = _log_bounds(conn)
            if base > applied:
                with self._cond:
                    self._rebuild = f"the log starts after seq {base}, the index is at {applied}"
                return
            page = conn.execute("SELECT seq, op FROM oplog WHERE seq > ? ORDER BY seq LIMIT ?", (applied, REPLAY_PAGE)).fetchall()
        if not page:
            return
        mine = [(int(seq), decode_operation(blob)) for seq, blob in page if operation_type(blob) in GRAPH_OPERATIONS]
        log.debug("shard %d: replaying seqs %d to %d into the graph index", self.shard_id, applied + 1, int(page[-1][0]))
        try:
            with self._gate.exclusive() if kuzu.changes_tables(mine) else self._gate.shared():
                kuzu.apply(mine, through=int(page[-1][0]))
                outgrown = "" if self._upgrade else kuzu.wants_rebuild()
        except Exception as exc:
            with self._cond:
                self._rebuild = f"replaying seqs {page[0][0]} to {page[-1][0]} failed: {exc}"
            raise
        self.replayed_ops += len(mine)
        if outgrown:
            with self._cond:
                self._upgrade = outgrown
            return
        if kuzu.wal_bytes() > self.wal_limit:
            with self._gate.exclusive():
                kuzu.reopen()

    def _build(self) -> None:
        """Build the index from the rows into a fresh file, then put it in place of the old
        one (marked risky while they are swapped)."""
        fresh = Path(str(self.path) + BUILD_SUFFIX)
        started, cpu = time.monotonic(), time.thread_time()
        with _read(self._reader()) as conn:
            _, seq = _log_bounds(conn)
            graphs = self.rows.graphs(conn)
            KuzuGraphs.build(
                fresh, self.limits, self.shard_id, seq, graphs,
                lambda uid: (self.rows.vertices(conn, uid), self.rows.edges(conn, uid)),
                stop=lambda: self._stopping, templates=self.templates,
            )
        directory = self.path.parent
        with self._gate.exclusive():
            if self._kuzu is not None:
                self._kuzu.close()
                self._kuzu = None
            placeholder = KuzuGraphs(self.path, self.limits, self.shard_id)
            with open(placeholder.risky_path, "wb") as f:
                os.fsync(f.fileno())
            for suffix in ("", ".wal"):
                try:
                    os.unlink(str(self.path) + suffix)
                except FileNotFoundError:
                    pass
            os.replace(fresh, self.path)
            _fsync_dir(directory)
            os.unlink(placeholder.risky_path)
            _fsync_dir(directory)
            kuzu = KuzuGraphs.open(self.path, self.limits, self.shard_id, create=False)
            with self._cond:
                self._kuzu = kuzu
                self._rebuild = self._upgrade = ""
                self.builds += 1
        log.info("shard %d: graph index built at seq %d (%d graphs) in %.1f s (%.2f s of CPU)", self.shard_id, seq, len(graphs), time.monotonic() - started,
                 time.thread_time() - cpu)

    # ------------------------------------------------------------------ queries

    def _holds_writes_to(self, uid: str) -> bool:
        """Whether the index holds every write to graph `uid` handed to it so far: then
        it is current for that graph without reading the log (the common case, which
        spares a query a thread hop and two reads)."""
        with self._cond:
            kuzu = self._kuzu
            return bool(uid) and not self._rebuild and kuzu is not None and kuzu.applied_seq >= self._graph_given.get(uid, 0)

    def wait_current(self, deadline: float, uid: str = "") -> None:
        """Return once the index holds the rows as they are now (every write acknowledged so
        far; with `uid`, every such write to that graph: writes to the shard's other
        graphs, such as an import's edge repair, do not hold up its queries);
        `IndexBehind` at `deadline` (time.monotonic())."""
        if self._holds_writes_to(uid):
            return
        with _read(self._reader()) as conn:
            _, target = _log_bounds(conn)
            # No file yet, and the graphs asked about hold no vertex or edge row here (their
            # tables made by a write that left none, or every row deleted): the answer is
            # empty and nothing is built for it (a new corpus's first worker read every
            # shard's entities, and built files that then applied each small write at once).
            live = [g.uid for g in self.rows.graphs(conn)]
            empty = not self.rows.holds_rows(conn, [u for u in live if u == uid] if uid else live)
        with self._cond:
            if uid:
                target = min(target, self._graph_given.get(uid, 0))
            self._waiting += 1
            self._cond.notify_all()
            try:
                while True:
                    kuzu = self._kuzu
                    if not self._rebuild and (kuzu.applied_seq >= target if kuzu is not None else empty):
                        return
                    if self._thread is None or not self._behind:
                        self._cond.release()
                        try:
                            self._mark()
                        finally:
                            self._cond.acquire()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        at = kuzu.applied_seq if kuzu is not None else "none (building)"
                        why = f"; last failure: {self._failure}" if self._failure else ""
                        raise IndexBehind(f"the graph index of shard {self.shard_id} is catching up (at seq {at}, the rows at {target}){why}; try again")
                    self._cond.wait(timeout=left)
            finally:
                self._waiting -= 1

    def query_now(self, fn: Callable[[KuzuGraphs], T], empty: T, deadline: float, uid: str = "") -> T:
        """`fn` (a query of the `*_query` makers) in the calling thread, once the index
        holds every write to graph `uid` acknowledged so far (`IndexBehind` at
        `deadline`); `empty` without an index file. A query thread's work (`query`), or
        one of several shards' queries in one thread hop (`run_together`)."""
        self.wait_current(deadline, uid)
        with self._gate.shared():
            kuzu = self._kuzu
            return fn(kuzu) if kuzu is not None else empty

    async def query(self, fn: Callable[[KuzuGraphs], T], empty: T, timeout: float, uid: str) -> T:
        """`query_now` on a query thread, waiting for the index to catch up (if it must)
        on a thread that only waits."""
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        if not self._holds_writes_to(uid):
            await loop.run_in_executor(_waiters(), self.wait_current, deadline, uid)
        return await loop.run_in_executor(_executor(), self.query_now, fn, empty, deadline, uid)

    def current_for(self, uid: str) -> bool:
        """Whether a query of graph `uid` may run now, the index holding every write to it
        handed over so far (`query_now` then does not wait)."""
        return self._holds_writes_to(uid)

    def vector_query(self, uid: str, vector: Sequence[float], k: int, label: str = "", properties: bool = True) -> Callable[[KuzuGraphs], list[tuple[str, str, float, str]]]:
        return lambda kz: self._described(uid, kz.vector_search(uid, vector, k, label), properties)

    def text_stats_query(self, uid: str, query: str) -> Callable[[KuzuGraphs], tuple[int, dict[str, int]]]:
        return lambda kz: kz.text_stats(uid, query)

    def text_search_query(
        self, uid: str, query: str, k: int, label: str = "", docs: int = 0, term_docs: dict[str, int] | None = None, properties: bool = True,
    ) -> Callable[[KuzuGraphs], list[tuple[str, str, float, str]]]:
        return lambda kz: self._described(uid, kz.text_search(uid, query, k, label, docs, term_docs or {}), properties)

    async def vector_search(
        self, uid: str, vector: Sequence[float], k: int, label: str = "", *, timeout: float = 5.0, properties: bool = True,
    ) -> list[tuple[str, str, float, str]]:
        """Top `k` (id, label, score, properties JSON: "{}" without `properties`) of graph
        `uid` on this shard, best first."""
        return await self.query(self.vector_query(uid, vector, k, label, properties), [], timeout, uid)

    def _described(self, uid: str, ranked: list[tuple[str, float]], properties: bool = True) -> list[tuple[str, str, float, str]]:
        """Ranked ids with their label and properties, read from the rows in one query
        (the truth, and one lookup where Kuzu takes one per id); an id whose vertex the
        rows no longer hold (deleted since the index's seq) is left out."""
        if not ranked:
            return []
        with _read(self._reader()) as conn:
            info = self.rows.described(conn, uid, [vid for vid, _ in ranked])
        return [(vid, info[vid][0], score, info[vid][1] if properties else "{}") for vid, score in ranked if vid in info]

    async def text_stats(self, uid: str, query: str, *, timeout: float = 5.0) -> tuple[int, dict[str, int]]:
        """(document count, documents per query term) of graph `uid` on this shard."""
        return await self.query(self.text_stats_query(uid, query), (0, {}), timeout, uid)

    async def text_search(
        self, uid: str, query: str, k: int, label: str = "", docs: int = 0, term_docs: dict[str, int] | None = None, *, timeout: float = 5.0,
        properties: bool = True,
    ) -> list[tuple[str, str, float, str]]:
        """Top `k` by BM25 with the global IDF of `docs` and `term_docs` (sums of every
        shard's `text_stats`; this shard's own when empty)."""
        return await self.query(self.text_search_query(uid, query, k, label, docs, term_docs, properties), [], timeout, uid)

    async def cypher(
        self, uid: str, query: str, params: dict[str, Any] | None = None, *, row_cap: int = 10_000, timeout: float = 5.0
    ) -> tuple[list[str], list[list[Any]], bool]:
        """A read-only query on graph `uid`'s tables here: (columns, rows, truncated);
        `QueryRefused` for a query that is not one."""
        deadline = time.monotonic() + timeout

        def run(kz: KuzuGraphs) -> tuple[list[str], list[list[Any]], bool]:
            return kz.cypher(uid, query, params or {}, row_cap, max(0.001, deadline - time.monotonic()))

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_waiters(), self.wait_current, deadline, uid)
        return await loop.run_in_executor(_executor(), self.query_now, run, ([], [], False), deadline, uid)

    async def graph_counts(self, uid: str, *, timeout: float = 5.0) -> dict[str, int]:
        """vertices, stubs, edges, hidden_halves (and embeddings) of graph `uid` in the index."""
        return await self.query(lambda kz: kz.counts(uid), {}, timeout, uid)

    def dump(self, uid: str, deadline: float) -> dict[str, set[tuple[Any, ...]]]:
        """Every row of graph `uid` in the index, once it is current (tests)."""
        return self.query_now(lambda kz: kz.dump(uid), {}, deadline)


async def run_together(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """`calls` (each an index's `query_now`, for an index `current_for` its graph) one
    after the other on one query thread: one hop from the event loop for the searches
    of several shards of a node, where each shard's own took a hop (a thread's wake-up,
    a future, a callback) of its own. Each call's result, or the exception it raised."""

    if not calls:
        return []

    def run() -> list[Any]:
        out: list[Any] = []
        for call in calls:
            try:
                out.append(call())
            except Exception as exc:
                out.append(exc)
        return out

    return await asyncio.get_running_loop().run_in_executor(_executor(), run)


def _gap(conn: sqlite3.Connection, applied: int, indexed: set[str]) -> tuple[int, int]:
    """(ops in the log after `applied`, how many of them put a vertex with an embedding
    into a graph of `indexed`: one with an HNSW index, where each costs more), the second
    read from at most GAP_SCAN ops and scaled to the rest."""
    ops = int(conn.execute("SELECT count(*) FROM oplog WHERE seq > ?", (applied,)).fetchone()[0])
    scanned = vectors = 0
    for (blob,) in conn.execute("SELECT op FROM oplog WHERE seq > ? ORDER BY seq LIMIT ?", (applied, GAP_SCAN)):
        scanned += 1
        if operation_type(blob) == VertexPut.TYPE:
            op = decode_operation(blob)
            vectors += isinstance(op, VertexPut) and op.embedding is not None and op.uid in indexed
    return ops, vectors if scanned >= ops or not scanned else vectors * ops // scanned


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
