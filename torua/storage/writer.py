"""A shard copy's writer: its SQLite database, its operation log and the engines that
apply the log (`torua.storage.engine`).

Layout: ``<directory>/shard.db`` (SQLite, WAL mode) with tables

* ``oplog(seq INTEGER PRIMARY KEY, op BLOB NOT NULL)`` -- encoded operations
* ``meta(name TEXT PRIMARY KEY, value)`` -- ``shard_id``, ``format``, ``base_seq``
  (last seq folded into the data but no longer in the log), ``engine.<name>`` for
  each follower engine that holds data (the seq its data starts after), and rows
  of the transactional engines (the key-value engine's ``keys`` and ``bytes``)

and whatever tables the transactional engines create (``kv``); follower engines
keep their own files inside the directory.

Writes go through one dedicated writer thread that owns the write connection. It
group-commits: it takes the first queued request, acquires the SQLite write lock,
then drains whatever else has been queued meanwhile and commits all of it in one
transaction (one fsync in durable mode). In that transaction each operation is
logged and, if a transactional engine takes it, applied, so its data and the log
never disagree after a crash. After the commit the writer hands the follower
engines their operations (in seq order), and only then resolves each caller's
asyncio future (``loop.call_soon_threadsafe``): a write is acknowledged once every
engine has applied it. A follower that fails keeps its operations pending: the
callers whose writes it did not apply get the error, the next batch tries again,
and the log is not trimmed past them. On open, each follower gets the logged ops
after its own ``applied_seq`` again (`EngineOutOfStep` if its data does not fit
the log).

Reads use per-thread read connections (WAL lets them run concurrently with the
writer).

Invariant: ``base_seq <= last_seq`` and the log holds exactly the ops with
``base_seq < seq <= last_seq`` (``last_seq = max(base_seq, max(oplog.seq))``);
every follower holding data has ``base_seq <= applied_seq <= last_seq``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import os
import queue
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from torua.storage.engine import (
    Chunk,
    EngineContext,
    EngineFactory,
    EngineOutOfStep,
    ShardEngine,
    TransactionalEngine,
    UnknownChunkFormat,
)
from torua.storage.followers import Followers
from torua.storage.operations import Operation, decode_operation, encode_operation, engines_of

__all__ = [
    "DB_FILENAME",
    "LogTruncated",
    "SeqGap",
    "ShardClosed",
    "ShardMissing",
    "ShardWriter",
]

log = logging.getLogger("torua.storage")

DB_FILENAME = "shard.db"
_FORMAT = 1
_MAX_BATCH = 4096  # requests per group-commit transaction
_BUSY_TIMEOUT_S = 30.0
_HELD = "engine."  # meta name prefix: a follower engine that holds data


class ShardMissing(Exception):
    """The shard directory (or its database) does not exist and create=False."""


class ShardClosed(RuntimeError):
    """The store has been closed; no further reads or writes are possible."""


class SeqGap(ValueError):
    """apply_at() was given a seq that is not last_seq() + 1."""


class LogTruncated(Exception):
    """read_log() asked for ops at or below base_seq; they are no longer in the log."""


@dataclass
class _State:
    """Committed (or, inside a batch, tentative) writer-side state."""

    last_seq: int
    base_seq: int
    engines: dict[str, Any]  # transactional engine -> its state (torua.storage.engine.TransactionalEngine)
    unapplied: dict[str, list[tuple[int, Operation]]]  # follower engine -> ops logged, not applied yet
    held: frozenset[str]  # follower engines with data (their `engine.<name>` meta row)

    def copy(self) -> "_State":
        return _State(
            self.last_seq,
            self.base_seq,
            {name: copy.copy(s) for name, s in self.engines.items()},
            {name: list(ops) for name, ops in self.unapplied.items()},
            self.held,
        )

    def mark(self) -> tuple[Any, ...]:
        """What `restore` needs to undo one request (a request only appends to `unapplied`
        lists, or replaces them)."""
        return (
            self.last_seq,
            self.base_seq,
            {name: copy.copy(s) for name, s in self.engines.items()},
            {name: (ops, len(ops)) for name, ops in self.unapplied.items()},
            self.held,
        )

    def restore(self, mark: tuple[Any, ...]) -> None:
        self.last_seq, self.base_seq, self.engines, lists, self.held = mark
        for name, (ops, length) in lists.items():
            del ops[length:]
            self.unapplied[name] = ops

    def grown(self, mark: tuple[Any, ...]) -> set[str]:
        """The followers a request gave operations to since `mark`."""
        lists = mark[3]
        return {name for name, ops in self.unapplied.items() if ops is not lists[name][0] or len(ops) > lists[name][1]}


# A write request executed by the writer thread inside the batch transaction.
_WriteFn = Callable[[sqlite3.Connection, _State], Any]


@dataclass
class _Request:
    fn: _WriteFn
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_STOP = object()


def _db_uri(path: Path, mode: str) -> str:
    return f"{path.resolve().as_uri()}?mode={mode}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_seq(seq: Any, what: str) -> int:
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError(f"{what} must be a non-negative int, got {seq!r}")
    return seq


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # caller cancelled; the write (if any) stands
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


_SCHEMA = (
    "CREATE TABLE oplog (seq INTEGER PRIMARY KEY, op BLOB NOT NULL)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID",
)


class ShardWriter:
    """The log of one shard copy in ``<directory>/shard.db`` and the engines applying it."""

    shard_id: int
    directory: Path
    durable: bool

    def __init__(self, directory: Path, shard_id: int, durable: bool) -> None:
        # Use ShardWriter.open(); the constructor only sets fields.
        self.directory = directory
        self.shard_id = shard_id
        self.durable = durable
        self._db_path = directory / DB_FILENAME
        self._state = _State(last_seq=0, base_seq=0, engines={}, unapplied={}, held=frozenset())
        self._engines: dict[str, ShardEngine] = {}  # by name, in the order they were given
        self._transactional: list[TransactionalEngine] = []
        self._followers = Followers(shard_id, [])  # writer thread only
        self._by_format: dict[str, ShardEngine] = {}
        self._commits = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._writer_done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    # ------------------------------------------------------------------ open

    @classmethod
    def open(
        cls,
        directory: Path,
        shard_id: int,
        *,
        durable: bool = True,
        create: bool = False,
        engines: Sequence[EngineFactory] = (),
    ) -> "ShardWriter":
        """Open (or with `create`, create) the shard copy in `directory`, with its engines
        (opened in the writer's thread, in this order; their names and formats unique)."""
        directory = Path(directory)
        db_path = directory / DB_FILENAME
        if not db_path.is_file():
            if not create:
                raise ShardMissing(f"shard {shard_id}: no database at {db_path}")
            existed = directory.exists()
            directory.mkdir(parents=True, exist_ok=True)
            # A WAL left behind without its database must never be replayed
            # into a freshly created one.
            for suffix in ("-wal", "-shm", "-journal"):
                stale = directory / (DB_FILENAME + suffix)
                if stale.exists():
                    stale.unlink()
            if durable and not existed:
                _fsync_dir(directory.parent)
        writer = cls(directory, shard_id, durable)
        init: concurrent.futures.Future[None] = concurrent.futures.Future()
        writer._thread = threading.Thread(
            target=writer._writer_main,
            args=(init, create, tuple(engines)),
            name=f"shard-{shard_id}-writer",
            daemon=True,
        )
        writer._thread.start()
        try:
            init.result()
        except BaseException:
            writer._closed = True
            writer._thread.join()
            raise
        return writer

    # ------------------------------------------------------------ properties

    def last_seq(self) -> int:
        return self._state.last_seq

    def base_seq(self) -> int:
        """Seq of the last op folded into the data that is no longer in the log."""
        return self._state.base_seq

    def applied_seq(self) -> int:
        """Every op up to this seq is applied by every engine (below `last_seq` only while a
        follower engine has ops pending): a snapshot read now reflects at least that far."""
        state = self._state
        pending = [ops[0][0] - 1 for ops in state.unapplied.values() if ops]
        return min([state.last_seq, *pending])

    @property
    def commits(self) -> int:
        """Number of write transactions committed since open (group commits)."""
        return self._commits

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def engines(self) -> tuple[ShardEngine, ...]:
        return tuple(self._engines.values())

    def engine(self, name: str) -> ShardEngine:
        return self._engines[name]

    def formats(self) -> tuple[str, ...]:
        """Every snapshot chunk format this copy's engines install."""
        return tuple(self._by_format)

    def held_formats(self) -> tuple[str, ...]:
        """The formats a snapshot of this copy may hold: those of the transactional engines
        that hold data (`holds_data`), and of the followers that hold data."""
        held = self._state.held
        return tuple(
            f
            for e in self._engines.values()
            if (e.holds_data() if e.kind == "transactional" else e.name in held)  # type: ignore[attr-defined]
            for f in e.formats
        )

    # ----------------------------------------------------------------- reads

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection to shard.db; `ShardClosed` once closed."""
        if self._closed:
            raise ShardClosed(f"shard {self.shard_id} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so close() may close it from
            # another thread; each connection is used by one thread only.
            conn = sqlite3.connect(
                _db_uri(self._db_path, "rw"),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=_BUSY_TIMEOUT_S,
            )
            conn.execute("PRAGMA query_only = ON")
            with self._lock:
                if self._closed:
                    conn.close()
                    raise ShardClosed(f"shard {self.shard_id} is closed")
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def read_log(
        self, after_seq: int, max_ops: int = 1000, max_bytes: int = 4 << 20
    ) -> list[tuple[int, Operation]]:
        """Ops with seq > after_seq in order: at most ``max_ops``, and at most
        ``max_bytes`` of encoded ops (but at least one op if any exists).
        Raises LogTruncated if after_seq < base_seq."""
        return [(seq, decode_operation(blob)) for seq, blob in self.read_log_encoded(after_seq, max_ops, max_bytes)]

    def read_log_encoded(
        self, after_seq: int, max_ops: int = 1000, max_bytes: int = 4 << 20
    ) -> list[tuple[int, bytes]]:
        """`read_log` as the bytes logged, for shipping to other replicas unchanged."""
        conn = self.reader()
        out: list[tuple[int, bytes]] = []
        conn.execute("BEGIN")  # one read snapshot for the base check and the scan
        try:
            base = int(conn.execute("SELECT value FROM meta WHERE name = 'base_seq'").fetchone()[0])
            if after_seq < base:
                raise LogTruncated(
                    f"shard {self.shard_id}: ops after {after_seq} requested, "
                    f"log starts after {base}"
                )
            if max_ops <= 0:
                return out
            cur = conn.execute(
                "SELECT seq, op FROM oplog WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, max_ops),
            )
            size = 0
            try:
                for seq, blob in cur:
                    if out and size + len(blob) > max_bytes:
                        break
                    out.append((int(seq), bytes(blob)))
                    size += len(blob)
            finally:
                cur.close()
        finally:
            conn.execute("COMMIT")
        return out

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int) -> tuple[list[Chunk], bytes | None]:
        """The next chunks of a snapshot of every engine, in engine order, from `cursor`
        (None: from the start; else what the previous call returned); the cursor to go on
        from, or None when every engine is done. `ValueError` for a cursor not made here."""
        names = list(self._engines)
        if cursor is None:
            index, inner = 0, None
        else:
            try:
                name, inner = msgpack.unpackb(cursor, raw=False)
                index = names.index(name)
            except Exception:
                raise ValueError(f"shard {self.shard_id}: not a snapshot cursor of this store") from None
            if inner is not None and not isinstance(inner, bytes):
                raise ValueError(f"shard {self.shard_id}: not a snapshot cursor of this store")
        while index < len(names):
            chunks, inner = self._engines[names[index]].snapshot_chunks(inner, max_bytes)
            if inner is not None:
                return chunks, msgpack.packb([names[index], inner], use_bin_type=True)
            index += 1
            if chunks:
                return chunks, (msgpack.packb([names[index], None], use_bin_type=True) if index < len(names) else None)
        return [], None

    # ---------------------------------------------------------------- writes

    async def _submit(self, fn: _WriteFn) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise ShardClosed(f"shard {self.shard_id} is closed")
            self._queue.put(_Request(fn, loop, fut))
        return await fut

    async def apply(self, op: Operation) -> int:
        """Log and apply ``op`` under the next seq; returns that seq.
        Seqs are assigned in the order of apply() calls."""

        def fn(conn: sqlite3.Connection, state: _State) -> int:
            seq = state.last_seq + 1
            self._log_and_apply(conn, state, [(seq, op, None)])
            return seq

        result: int = await self._submit(fn)
        return result

    async def apply_all(self, ops: Sequence[Operation]) -> list[int]:
        """Log and apply `ops` under the next seqs, in order, in one transaction (all of
        them or, if one is refused, none); returns their seqs."""
        run = list(ops)

        def fn(conn: sqlite3.Connection, state: _State) -> list[int]:
            first = state.last_seq + 1
            self._log_and_apply(conn, state, [(first + n, op, None) for n, op in enumerate(run)])
            return list(range(first, first + len(run)))

        result: list[int] = await self._submit(fn)
        return result

    async def apply_at(self, seq: int, op: Operation) -> None:
        """Apply an op copied from another replica under its original seq.
        seq <= last_seq() is ignored; seq > last_seq() + 1 raises SeqGap."""
        await self.apply_many_at([(seq, op)])

    async def apply_many_at(self, ops: Sequence[tuple[int, Operation]]) -> None:
        """apply_at() for a run of (seq, op) copied from another replica, in one
        transaction: all of them are applied, or (on a gap) none."""
        await self._apply_run([(_check_seq(seq, "seq"), op, None) for seq, op in ops])

    async def apply_encoded_at(self, ops: Sequence[tuple[int, bytes]]) -> None:
        """`apply_many_at` for ops as another replica logged them (`read_log_encoded`):
        each is decoded (fields of a newer release ignored) and logged as it came.
        An op that does not decode (an unknown type: a newer release's) raises
        `InvalidOperation` and nothing of the run is applied."""
        await self._apply_run([(_check_seq(seq, "seq"), decode_operation(blob), bytes(blob)) for seq, blob in ops])

    async def _apply_run(self, run: list[tuple[int, Operation, bytes | None]]) -> None:
        def fn(conn: sqlite3.Connection, state: _State) -> None:
            fresh, last = [], state.last_seq
            for item in run:
                if item[0] <= last:
                    continue
                if item[0] != last + 1:
                    raise SeqGap(f"shard {self.shard_id}: got op {item[0]}, expected {last + 1}")
                fresh.append(item)
                last = item[0]
            if fresh:
                self._log_and_apply(conn, state, fresh)

        await self._submit(fn)

    def _log_and_apply(self, conn: sqlite3.Connection, state: _State, run: Sequence[tuple[int, Operation, bytes | None]]) -> None:
        """Log each (seq, op, blob) of `run` (consecutive seqs after `last_seq`) as `blob`
        (the bytes another replica logged, kept as they are: they may hold fields of a
        newer release that `op` does not; or, None, `op` encoded), and have each of its
        engines open here apply it: now (a transactional engine) or after the commit (a
        follower). Its first engine must be open; the others (derived ones,
        `OPERATION_ENGINES`) apply it where they are. Each engine gets its ops of the run
        in one `apply`, in seq order, and the log rows go in one `executemany`: the
        same writes as one op at a time (each engine's tables are its own), ~8 µs per
        op of a batch of 500 edge halves where one at a time took ~10."""
        if not run:
            return
        by_engine: dict[str, list[tuple[int, Operation]]] = {}
        rows: list[tuple[int, bytes]] = []
        for seq, op, blob in run:
            names = engines_of(op)
            if names[0] not in self._engines:
                raise TypeError(f"shard {self.shard_id} has no {names[0]!r} engine to apply {type(op).__name__}")
            if blob is None:
                blob = encode_operation(op)  # validates field types
            for name in names:
                if name in self._engines:
                    by_engine.setdefault(name, []).append((seq, op))
            rows.append((seq, blob))
        for name, batch in by_engine.items():
            engine = self._engines[name]
            if engine.kind == "transactional":
                engine.apply(conn, state.engines[name], batch)  # type: ignore[call-arg]
            else:
                self._hold(conn, state, name, batch[0][0] - 1)
                state.unapplied[name].extend(batch)
        conn.executemany("INSERT INTO oplog(seq, op) VALUES (?, ?)", rows)
        state.last_seq = run[-1][0]

    def _hold(self, conn: sqlite3.Connection, state: _State, name: str, since: int | None = None) -> None:
        """Record, with the first op or chunk a follower gets, that it holds data from here
        on: after seq `since` (the last seq before that op; default `last_seq`)."""
        if name not in state.held:
            conn.execute("INSERT INTO meta(name, value) VALUES (?, ?)", (_HELD + name, state.last_seq if since is None else since))
            state.held = state.held | {name}

    async def install_chunks(self, chunks: Sequence[Chunk]) -> None:
        """Install snapshot chunks copied from another copy, without logging them, each by
        the engine that owns its format (`UnknownChunkFormat` for any other: then nothing
        is installed). For a copy being filled, before `set_base_seq` and any op."""
        routed: list[tuple[ShardEngine, Chunk]] = []
        for chunk in chunks:
            engine = self._by_format.get(chunk.format)
            if engine is None:
                known = ", ".join(self._by_format) or "none"
                raise UnknownChunkFormat(f"shard {self.shard_id}: snapshot chunk format {chunk.format!r} is not one this node installs ({known})")
            routed.append((engine, chunk))

        def fn(conn: sqlite3.Connection, state: _State) -> None:
            for engine, chunk in routed:
                if engine.kind == "transactional":
                    engine.install(conn, state.engines[engine.name], chunk)  # type: ignore[call-arg]
                else:
                    self._hold(conn, state, engine.name)
                    engine.install(chunk)  # type: ignore[call-arg]

        await self._submit(fn)

    async def set_base_seq(self, seq: int) -> None:
        """Declare the data to reflect every op up to ``seq`` (after a snapshot
        install): empties the log, last_seq() and base_seq() become ``seq``."""
        _check_seq(seq, "seq")

        def fn(conn: sqlite3.Connection, state: _State) -> None:
            conn.execute("DELETE FROM oplog")
            conn.execute("UPDATE meta SET value = ? WHERE name = 'base_seq'", (seq,))
            state.base_seq = seq
            state.last_seq = seq
            for name in state.unapplied:
                state.unapplied[name] = []
            self._followers.move_to([f for f in self._followers.engines if f.name in state.held], seq)

        await self._submit(fn)

    async def truncate_log(self, keep_after: int) -> None:
        """Drop ops with seq <= keep_after (clamped to last_seq(), and below any op a
        follower engine has not applied); base_seq becomes max(base_seq, the cut)."""
        _check_seq(keep_after, "keep_after")

        def fn(conn: sqlite3.Connection, state: _State) -> None:
            cut, behind = self._followers.trim_bound(min(keep_after, state.last_seq), self._state.last_seq, state.held, state.unapplied)
            if cut <= state.base_seq:
                return
            self._followers.move_to(behind, cut)  # before the log goes: durable on its own
            conn.execute("DELETE FROM oplog WHERE seq <= ?", (cut,))
            conn.execute("UPDATE meta SET value = ? WHERE name = 'base_seq'", (cut,))
            state.base_seq = cut

        await self._submit(fn)

    # ---------------------------------------------------------- writer thread

    def _writer_main(self, init: concurrent.futures.Future[None], create: bool, factories: tuple[EngineFactory, ...]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            try:
                self._open_engines(create, factories)
                conn = self._init_db(create)
            except BaseException as exc:
                init.set_exception(exc)
                return
            init.set_result(None)
            self._writer_loop(conn)
            state = self._state.copy()
            self._followers.finish(state.held, state.unapplied, state.last_seq)
            self._state = state
        finally:
            self._close_engines()
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._writer_done.set_result(None)

    def _open_engines(self, create: bool, factories: tuple[EngineFactory, ...]) -> None:
        context = EngineContext(self.directory, self.shard_id, self.durable, create, self.reader)
        for factory in factories:
            engine = factory(context)
            if engine.name in self._engines:
                engine.close()
                raise ValueError(f"shard {self.shard_id}: two engines named {engine.name!r}")
            self._engines[engine.name] = engine  # before the checks: closed if one fails
            for fmt in engine.formats:
                if fmt in self._by_format:
                    raise ValueError(f"snapshot format {fmt!r} of engine {engine.name!r} is already {self._by_format[fmt].name!r}'s")
                self._by_format[fmt] = engine
            if engine.kind == "transactional":
                self._transactional.append(engine)  # type: ignore[arg-type]
            elif engine.kind == "follower":
                self._followers.engines.append(engine)  # type: ignore[arg-type]
            else:
                raise ValueError(f"engine {engine.name!r} is of no known kind ({engine.kind!r})")

    def _init_db(self, create: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            _db_uri(self._db_path, "rwc" if create else "rw"),
            uri=True,
            isolation_level=None,
            timeout=_BUSY_TIMEOUT_S,
        )
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot enable WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                has_meta = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                ).fetchone()
                if not has_meta:
                    if not create:
                        raise ShardMissing(f"shard {self.shard_id}: {self._db_path} is not initialised")
                    for stmt in _SCHEMA:
                        conn.execute(stmt)
                    conn.executemany(
                        "INSERT INTO meta(name, value) VALUES (?, ?)",
                        [("shard_id", self.shard_id), ("format", _FORMAT), ("base_seq", 0)],
                    )
                meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
                if meta.get("shard_id") != self.shard_id:
                    raise ValueError(
                        f"{self._db_path} holds shard {meta.get('shard_id')!r}, not {self.shard_id}"
                    )
                if meta.get("format") != _FORMAT:
                    raise ValueError(f"{self._db_path}: unsupported format {meta.get('format')!r}")
                engines = {e.name: e.load(conn, not has_meta) for e in self._transactional}
                max_seq = conn.execute("SELECT max(seq) FROM oplog").fetchone()[0]
                base = int(meta["base_seq"])
                held = {name[len(_HELD):]: int(value) for name, value in meta.items() if name.startswith(_HELD)}
                absent = sorted(set(held) - {f.name for f in self._followers.engines})
                if absent:
                    raise EngineOutOfStep(f"shard {self.shard_id} holds data of engines {absent} that were not opened with it")
                self._state = _State(
                    last_seq=max(base, int(max_seq) if max_seq is not None else 0),
                    base_seq=base,
                    engines=engines,
                    unapplied={f.name: [] for f in self._followers.engines},
                    held=frozenset(held),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._followers.catch_up(conn, self._state.base_seq, self._state.last_seq, held)
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Request] = [first]
            try:
                # Take the write lock first, then drain: requests that arrive
                # while we wait for the lock join this transaction.
                conn.execute("BEGIN IMMEDIATE")
            except BaseException as exc:
                self._fail(batch, exc)
                continue
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(conn, batch)
        # Nothing can be queued after _STOP (close() holds the lock), but be safe.
        leftovers: list[_Request] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                leftovers.append(item)
        self._fail(leftovers, ShardClosed(f"shard {self.shard_id} is closed"))

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Request]) -> None:
        """Execute ``batch`` inside the already-open transaction, commit, let the followers
        apply their ops, then answer every caller.

        A request failing with a non-SQLite error (bad seq, invalid op) is
        rolled back to its savepoint and fails alone.  A SQLite error fails
        the whole batch: the transaction is rolled back and every caller gets
        the exception.  A follower that cannot apply its ops fails the
        requests that gave it ops (they stay in the log and pending)."""
        start = self._state
        state = start.copy()
        outcomes: list[tuple[Any, BaseException | None, set[str]]] = []
        try:
            for req in batch:
                conn.execute("SAVEPOINT op")
                saved = state.mark()
                try:
                    result = req.fn(conn, state)
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    state.restore(saved)
                    outcomes.append((None, exc, set()))
                else:
                    outcomes.append((result, None, state.grown(saved)))
                conn.execute("RELEASE op")
            for engine in self._transactional:
                engine.save(conn, start.engines[engine.name], state.engines[engine.name])
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._settled()
            self._fail(batch, exc)
            return
        self._settled()
        self._commits += 1
        failed = self._followers.apply(state.unapplied, state.last_seq)
        self._state = state
        for req, (result, err, followers) in zip(batch, outcomes):
            for name in followers:
                if err is None and name in failed:
                    result, err = None, failed[name]
            self._post(req, result, err)

    def _settled(self) -> None:
        for engine in self._transactional:
            try:
                engine.settled()
            except Exception:  # never the writer thread's end: its callers would wait for ever
                log.exception("shard %d: the %s engine failed after a transaction", self.shard_id, engine.name)

    def _close_engines(self) -> None:
        for engine in self._engines.values():
            try:
                engine.close()
            except Exception as exc:
                log.warning("shard %d: closing the %s engine failed: %s", self.shard_id, engine.name, exc)

    def _post(self, req: _Request, result: Any, exc: BaseException | None) -> None:
        try:
            req.loop.call_soon_threadsafe(_resolve, req.future, result, exc)
        except RuntimeError:  # the caller's loop is closed; nobody is waiting
            pass

    def _fail(self, batch: list[_Request], exc: BaseException) -> None:
        for req in batch:
            self._post(req, None, exc)

    # ----------------------------------------------------------------- close

    async def close(self) -> None:
        """Finish queued writes, stop the writer thread, close engines and connections.
        Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        await asyncio.wrap_future(self._writer_done)
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    # -------------------------------------------------------- static helpers

    @staticmethod
    def exists(directory: Path) -> bool:
        """Whether `directory` holds a copy: a database whose first transaction (its
        tables and meta) committed. A file left by a crash between its creation and
        that commit holds nothing and is no copy (`open` with `create` makes it anew);
        one that cannot be read here counts as a copy (`open` says what is wrong)."""
        path = Path(directory) / DB_FILENAME
        if not path.is_file():
            return False
        try:
            conn = sqlite3.connect(_db_uri(path, "rw"), uri=True, timeout=_BUSY_TIMEOUT_S)
            try:
                return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is not None
            finally:
                conn.close()
        except sqlite3.Error:
            return True

    @staticmethod
    def destroy(directory: Path) -> None:
        """Remove a (closed) shard directory, every engine's files with it.  The
        directory is first renamed to a hidden tombstone in the same parent, so a
        crash mid-removal never leaves a partial shard that looks valid; then it
        is deleted."""
        directory = Path(directory)
        if not directory.exists():
            return
        tomb = directory.with_name(f".{directory.name}.destroy-{uuid.uuid4().hex}")
        os.rename(directory, tomb)
        _fsync_dir(directory.parent)
        shutil.rmtree(tomb, ignore_errors=True)
