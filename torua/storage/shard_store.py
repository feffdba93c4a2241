"""One shard replica on local disk: a SQLite database in WAL mode.

Layout: ``<directory>/shard.db`` with tables

* ``kv(key TEXT PRIMARY KEY, value BLOB NOT NULL, content_type TEXT NOT NULL)``
* ``oplog(seq INTEGER PRIMARY KEY, op BLOB NOT NULL)`` -- encoded operations
* ``meta(name TEXT PRIMARY KEY, value)`` -- ``shard_id``, ``format``,
  ``base_seq`` (last seq folded into the data but no longer in the log),
  ``keys`` and ``bytes`` (running counters for :meth:`ShardStore.stats`).

Every mutation appends to ``oplog`` and changes ``kv`` (and the counters) in
the same transaction, so data and log never disagree after a crash.

Writes go through a single dedicated writer thread that owns the write
connection.  It group-commits: it takes the first queued request, acquires
the SQLite write lock, then drains whatever else has been queued meanwhile
and commits all of it in one transaction (one fsync in durable mode).  Each
caller's asyncio future is resolved via ``loop.call_soon_threadsafe``.

Reads use per-thread read connections (WAL lets them run concurrently with
the writer); ``get`` is cheap enough to call on the event loop thread.

Invariant: ``base_seq <= last_seq`` and the log holds exactly the ops with
``base_seq < seq <= last_seq`` (``last_seq = max(base_seq, max(oplog.seq))``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
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

from torua.storage.operations import (
    KvDelete,
    KvPut,
    Operation,
    decode_operation,
    encode_operation,
)

__all__ = [
    "ShardStore",
    "ShardStats",
    "ShardMissing",
    "ShardClosed",
    "SeqGap",
    "LogTruncated",
    "DB_FILENAME",
]

DB_FILENAME = "shard.db"
_FORMAT = 1
_MAX_BATCH = 4096  # requests per group-commit transaction
_BUSY_TIMEOUT_S = 30.0


class ShardMissing(Exception):
    """The shard directory (or its database) does not exist and create=False."""


class ShardClosed(RuntimeError):
    """The store has been closed; no further reads or writes are possible."""


class SeqGap(ValueError):
    """apply_at() was given a seq that is not last_seq() + 1."""


class LogTruncated(Exception):
    """read_log() asked for ops at or below base_seq; they are no longer in the log."""


@dataclass(frozen=True)
class ShardStats:
    shard_id: int
    keys: int
    bytes: int
    last_seq: int


@dataclass
class _State:
    """Committed (or, inside a batch, tentative) writer-side state."""

    last_seq: int
    base_seq: int
    keys: int
    bytes: int


# A write request executed by the writer thread inside the batch transaction.
_WriteFn = Callable[[sqlite3.Connection, _State], Any]


@dataclass
class _Request:
    fn: _WriteFn
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_STOP = object()


# --------------------------------------------------------------------------
# Operation handlers: apply one typed operation to the data tables.
# A new operation type needs one handler here (and nothing in replication).
# --------------------------------------------------------------------------


def _put_row(conn: sqlite3.Connection, state: _State, key: str, value: bytes, ctype: str) -> None:
    row = conn.execute("SELECT length(value) FROM kv WHERE key = ?", (key,)).fetchone()
    conn.execute(
        "INSERT INTO kv(key, value, content_type) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
        "content_type = excluded.content_type",
        (key, value, ctype),
    )
    if row is None:
        state.keys += 1
        state.bytes += len(value)
    else:
        state.bytes += len(value) - int(row[0])


def _apply_kv_put(conn: sqlite3.Connection, state: _State, op: Any) -> None:
    _put_row(conn, state, op.key, op.value, op.content_type)


def _apply_kv_delete(conn: sqlite3.Connection, state: _State, op: Any) -> None:
    rows = conn.execute(
        "DELETE FROM kv WHERE key = ? RETURNING length(value)", (op.key,)
    ).fetchall()
    for (length,) in rows:
        state.keys -= 1
        state.bytes -= int(length)


_OP_HANDLERS: dict[type[Any], Callable[[sqlite3.Connection, _State, Any], None]] = {
    KvPut: _apply_kv_put,
    KvDelete: _apply_kv_delete,
}


def _log_and_apply(conn: sqlite3.Connection, state: _State, seq: int, op: Operation, blob: bytes | None = None) -> None:
    """Apply `op` and log it as `blob`: the bytes another replica logged, kept as they
    are (they may hold fields of a newer release that `op` does not), or `op` encoded."""
    handler = _OP_HANDLERS.get(type(op))
    if handler is None:
        raise TypeError(f"shard store cannot apply operation type {type(op).__name__}")
    if blob is None:
        blob = encode_operation(op)  # validates field types
    handler(conn, state, op)
    conn.execute("INSERT INTO oplog(seq, op) VALUES (?, ?)", (seq, blob))
    state.last_seq = seq


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


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


def _prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix``
    (code point order == SQLite BINARY order on UTF-8), or None if unbounded."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code >= 0x10FFFF:
            chars.pop()
            continue
        code += 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot occur in stored keys
            code = 0xE000
        chars[-1] = chr(code)
        return "".join(chars)
    return None


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
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, content_type TEXT NOT NULL)",
    "CREATE TABLE oplog (seq INTEGER PRIMARY KEY, op BLOB NOT NULL)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID",
)


class ShardStore:
    """A single shard replica stored in ``<directory>/shard.db``."""

    shard_id: int
    directory: Path
    durable: bool

    def __init__(self, directory: Path, shard_id: int, durable: bool) -> None:
        # Use ShardStore.open(); the constructor only sets fields.
        self.directory = directory
        self.shard_id = shard_id
        self.durable = durable
        self._db_path = directory / DB_FILENAME
        self._state = _State(last_seq=0, base_seq=0, keys=0, bytes=0)
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
        cls, directory: Path, shard_id: int, *, durable: bool = True, create: bool = False
    ) -> "ShardStore":
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
        store = cls(directory, shard_id, durable)
        init: concurrent.futures.Future[None] = concurrent.futures.Future()
        store._thread = threading.Thread(
            target=store._writer_main,
            args=(init, create),
            name=f"shard-{shard_id}-writer",
            daemon=True,
        )
        store._thread.start()
        try:
            init.result()
        except BaseException:
            store._closed = True
            store._thread.join()
            raise
        return store

    # ------------------------------------------------------------ properties

    def last_seq(self) -> int:
        return self._state.last_seq

    def base_seq(self) -> int:
        """Seq of the last op folded into the data that is no longer in the log."""
        return self._state.base_seq

    @property
    def commits(self) -> int:
        """Number of write transactions committed since open (group commits)."""
        return self._commits

    @property
    def closed(self) -> bool:
        return self._closed

    # ----------------------------------------------------------------- reads

    def _reader(self) -> sqlite3.Connection:
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

    def get(self, key: str) -> tuple[bytes, str] | None:
        row = self._reader().execute(
            "SELECT value, content_type FROM kv WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return bytes(row[0]), row[1]

    def list_keys(self, prefix: str = "", after: str | None = None, limit: int = 1000) -> list[str]:
        if limit <= 0:
            return []
        sql = "SELECT key FROM kv WHERE key >= ?"
        params: list[Any] = [prefix]
        upper = _prefix_upper_bound(prefix)
        if upper is not None:
            sql += " AND key < ?"
            params.append(upper)
        if after is not None:
            sql += " AND key > ?"
            params.append(after)
        sql += " ORDER BY key LIMIT ?"
        params.append(limit)
        return [r[0] for r in self._reader().execute(sql, params)]

    def snapshot_chunk(
        self, after: str | None, max_bytes: int = 4 << 20
    ) -> tuple[list[tuple[str, bytes, str]], str | None]:
        """Rows in key order strictly after ``after`` (from the start if None),
        up to ``max_bytes`` of key+value bytes but always at least one row.
        Returns ``(rows, next_after)``; ``next_after`` is the last key returned,
        or None when there were no further rows at read time."""
        conn = self._reader()
        if after is None:
            cur = conn.execute("SELECT key, value, content_type FROM kv ORDER BY key")
        else:
            cur = conn.execute(
                "SELECT key, value, content_type FROM kv WHERE key > ? ORDER BY key", (after,)
            )
        rows: list[tuple[str, bytes, str]] = []
        size = 0
        try:
            for key, value, ctype in cur:
                row_size = len(key.encode("utf-8")) + len(value)
                if rows and size + row_size > max_bytes:
                    return rows, rows[-1][0]
                rows.append((key, bytes(value), ctype))
                size += row_size
        finally:
            cur.close()
        return rows, None

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
        conn = self._reader()
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

    def stats(self) -> ShardStats:
        row = self._reader().execute(
            "SELECT (SELECT value FROM meta WHERE name = 'keys'),"
            " (SELECT value FROM meta WHERE name = 'bytes'),"
            " (SELECT value FROM meta WHERE name = 'base_seq'),"
            " (SELECT max(seq) FROM oplog)"
        ).fetchone()
        keys, nbytes, base, max_seq = row
        last = max(int(base), int(max_seq) if max_seq is not None else 0)
        return ShardStats(shard_id=self.shard_id, keys=int(keys), bytes=int(nbytes), last_seq=last)

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
            _log_and_apply(conn, state, seq, op)
            return seq

        result: int = await self._submit(fn)
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
            for seq, op, blob in run:
                if seq <= state.last_seq:
                    continue
                if seq != state.last_seq + 1:
                    raise SeqGap(f"shard {self.shard_id}: got op {seq}, expected {state.last_seq + 1}")
                _log_and_apply(conn, state, seq, op, blob)

        await self._submit(fn)

    async def install_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Bulk upsert (key, value, content_type) rows without logging them
        (used to install snapshot chunks copied from another replica)."""
        checked: list[tuple[str, bytes, str]] = []
        for row in rows:
            if len(row) != 3:
                raise ValueError(f"snapshot row must be (key, value, content_type): {row!r}")
            key, value, ctype = row
            if not isinstance(key, str) or not isinstance(ctype, str):
                raise ValueError("snapshot row key and content_type must be str")
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise ValueError("snapshot row value must be bytes")
            checked.append((key, bytes(value), ctype))

        def fn(conn: sqlite3.Connection, state: _State) -> None:
            for key, value, ctype in checked:
                _put_row(conn, state, key, value, ctype)

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

        await self._submit(fn)

    async def truncate_log(self, keep_after: int) -> None:
        """Drop ops with seq <= keep_after (clamped to last_seq());
        base_seq becomes max(base_seq, keep_after)."""
        _check_seq(keep_after, "keep_after")

        def fn(conn: sqlite3.Connection, state: _State) -> None:
            cut = min(keep_after, state.last_seq)
            if cut <= state.base_seq:
                return
            conn.execute("DELETE FROM oplog WHERE seq <= ?", (cut,))
            conn.execute("UPDATE meta SET value = ? WHERE name = 'base_seq'", (cut,))
            state.base_seq = cut

        await self._submit(fn)

    # ---------------------------------------------------------- writer thread

    def _writer_main(self, init: concurrent.futures.Future[None], create: bool) -> None:
        conn: sqlite3.Connection | None = None
        try:
            try:
                conn = self._init_db(create)
            except BaseException as exc:
                init.set_exception(exc)
                return
            init.set_result(None)
            self._writer_loop(conn)
        finally:
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._writer_done.set_result(None)

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
                        [
                            ("shard_id", self.shard_id),
                            ("format", _FORMAT),
                            ("base_seq", 0),
                            ("keys", 0),
                            ("bytes", 0),
                        ],
                    )
                meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
                if meta.get("shard_id") != self.shard_id:
                    raise ValueError(
                        f"{self._db_path} holds shard {meta.get('shard_id')!r}, not {self.shard_id}"
                    )
                if meta.get("format") != _FORMAT:
                    raise ValueError(f"{self._db_path}: unsupported format {meta.get('format')!r}")
                max_seq = conn.execute("SELECT max(seq) FROM oplog").fetchone()[0]
                base = int(meta["base_seq"])
                self._state = _State(
                    last_seq=max(base, int(max_seq) if max_seq is not None else 0),
                    base_seq=base,
                    keys=int(meta["keys"]),
                    bytes=int(meta["bytes"]),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
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
        """Execute ``batch`` inside the already-open transaction and commit.

        A request failing with a non-SQLite error (bad seq, invalid op) is
        rolled back to its savepoint and fails alone.  A SQLite error fails
        the whole batch: the transaction is rolled back and every caller gets
        the exception."""
        start = self._state
        state = dataclasses.replace(start)
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            for req in batch:
                conn.execute("SAVEPOINT op")
                saved = dataclasses.replace(state)
                try:
                    result = req.fn(conn, state)
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    state = saved
                    outcomes.append((None, exc))
                else:
                    outcomes.append((result, None))
                conn.execute("RELEASE op")
            if state.keys != start.keys:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'keys'", (state.keys,))
            if state.bytes != start.bytes:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'bytes'", (state.bytes,))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._fail(batch, exc)
            return
        self._state = state
        self._commits += 1
        for req, (result, err) in zip(batch, outcomes):
            self._post(req, result, err)

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
        """Finish queued writes, stop the writer thread, close connections.
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

    async def __aenter__(self) -> "ShardStore":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -------------------------------------------------------- static helpers

    @staticmethod
    def exists(directory: Path) -> bool:
        return (Path(directory) / DB_FILENAME).is_file()

    @staticmethod
    def destroy(directory: Path) -> None:
        """Remove a (closed) shard directory.  The directory is first renamed
        to a hidden tombstone in the same parent, so a crash mid-removal never
        leaves a partial shard that looks valid; then it is deleted."""
        directory = Path(directory)
        if not directory.exists():
            return
        tomb = directory.with_name(f".{directory.name}.destroy-{uuid.uuid4().hex}")
        os.rename(directory, tomb)
        _fsync_dir(directory.parent)
        shutil.rmtree(tomb, ignore_errors=True)
