"""A small real follower engine, for tests of the storage seam only: notes (key ->
text) in their own SQLite file, `<shard dir>/notes.db`, with their own applied seq,
written in the same transaction as the notes. Like the graph engine it cannot share
the writer's transaction, so the writer applies its operations after the commit.

Its file is created lazily, by its first operation or chunk (until then
`applied_seq()` is None). It can be told to die (SIGKILL) at a point of its apply,
when a batch holds a given key (`crash_at`, `crash_key`), or to refuse batches
holding a key (`refuse`: an error, as a full disk would give).

Its operations are not in the registry until `register()` (a fixture does it with
monkeypatch; a subprocess calls it).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import msgpack

from torua.storage import operations
from torua.storage.engine import Chunk, EngineContext, EngineKind

FILENAME = "notes.db"
FORMAT = "notes.rows.v1"
CRASH_POINTS = ("before_apply", "before_commit", "after_commit")


@dataclass(frozen=True)
class NotePut:
    TYPE: ClassVar[str] = "test.note.put"
    key: str
    text: str


@dataclass(frozen=True)
class NoteDelete:
    TYPE: ClassVar[str] = "test.note.delete"
    key: str


def registrations() -> list[tuple[dict[str, Any], str, Any]]:
    return [
        (operations.OPERATION_TYPES, NotePut.TYPE, NotePut),
        (operations.OPERATION_TYPES, NoteDelete.TYPE, NoteDelete),
        (operations.OPERATION_ENGINES, NotePut.TYPE, (NoteEngine.name,)),
        (operations.OPERATION_ENGINES, NoteDelete.TYPE, (NoteEngine.name,)),
    ]


def register() -> None:
    for table, key, value in registrations():
        table[key] = value


@contextmanager
def registered() -> Iterator[None]:
    register()
    try:
        yield
    finally:
        for table, key, _ in registrations():
            table.pop(key, None)


class NoteEngine:
    name: str = "notes"
    kind: EngineKind = "follower"
    formats: tuple[str, ...] = (FORMAT,)

    def __init__(self, context: EngineContext, crash_at: str | None = None, crash_key: str = "") -> None:
        assert crash_at is None or crash_at in CRASH_POINTS
        self.path = context.directory / FILENAME
        self.durable = context.durable
        self.crash_at, self.crash_key = crash_at, crash_key
        self.refuse: set[str] = set()  # a batch holding one of these keys fails
        self.applies: list[tuple[list[int], int]] = []  # (seqs, through) of every apply, in order
        self._conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        if self.path.exists():
            self._connect()

    @classmethod
    def factory(cls, crash_at: str | None = None, crash_key: str = "") -> Callable[[EngineContext], "NoteEngine"]:
        return lambda context: cls(context, crash_at, crash_key)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            conn.execute("CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS position (one INTEGER PRIMARY KEY CHECK (one = 1), applied_seq INTEGER NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO position VALUES (1, 0)")
            self._conn = conn
        return self._conn

    def _die(self, point: str, keys: set[str]) -> None:
        if self.crash_at == point and self.crash_key in keys:
            os.kill(os.getpid(), signal.SIGKILL)

    # -------------------------------------------------------------- writer side

    def applied_seq(self) -> int | None:
        if self._conn is None:
            return None
        return int(self._conn.execute("SELECT applied_seq FROM position").fetchone()[0])

    def apply(self, batch: Sequence[tuple[int, Any]], through: int) -> None:
        keys = {op.key for _, op in batch}
        self._die("before_apply", keys)
        if keys & self.refuse:
            raise OSError(f"notes engine refuses {sorted(keys & self.refuse)}")
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            applied = int(conn.execute("SELECT applied_seq FROM position").fetchone()[0])
            for seq, op in batch:
                assert seq <= through, (seq, through)
                if seq <= applied:
                    continue  # idempotent: already in the notes
                if isinstance(op, NotePut):
                    conn.execute("INSERT INTO notes VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET text = excluded.text", (op.key, op.text))
                elif isinstance(op, NoteDelete):
                    conn.execute("DELETE FROM notes WHERE key = ?", (op.key,))
                else:
                    raise TypeError(f"notes engine cannot apply {type(op).__name__}")
            conn.execute("UPDATE position SET applied_seq = ?", (through,))
            self._die("before_commit", keys)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.applies.append(([seq for seq, _ in batch], through))
        self._die("after_commit", keys)

    def install(self, chunk: Chunk) -> None:
        rows = msgpack.unpackb(chunk.data, raw=False)
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO notes VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET text = excluded.text", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        for conn in [self._conn, *self._readers]:
            if conn is not None:
                conn.close()

    # ------------------------------------------------------------------- reads

    def _reader(self) -> sqlite3.Connection | None:
        if not self.path.exists():
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._readers.append(conn)
        return conn

    def notes(self) -> dict[str, str]:
        conn = self._reader()
        return {} if conn is None else dict(conn.execute("SELECT key, text FROM notes ORDER BY key").fetchall())

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int) -> tuple[list[Chunk], bytes | None]:
        conn = self._reader()
        if conn is None:
            return [], None
        after = "" if cursor is None else cursor.decode()
        rows: list[list[str]] = []
        size = 0
        for key, text in conn.execute("SELECT key, text FROM notes WHERE key > ? OR ? ORDER BY key", (after, cursor is None)):
            if rows and size + len(key) + len(text) > max_bytes:
                return [Chunk(FORMAT, msgpack.packb(rows))], rows[-1][0].encode()
            rows.append([key, text])
            size += len(key) + len(text)
        return ([Chunk(FORMAT, msgpack.packb(rows))] if rows else []), None

    def stats(self) -> dict[str, int]:
        return {"notes": len(self.notes())}


def open_notes(directory: Path) -> dict[str, str]:
    """The notes in a (closed) shard directory, read from the file itself."""
    path = Path(directory) / FILENAME
    if not path.exists():
        return {}
    with closing(sqlite3.connect(path)) as conn:
        return dict(conn.execute("SELECT key, text FROM notes").fetchall())


def applied_on_disk(directory: Path) -> int | None:
    path = Path(directory) / FILENAME
    if not path.exists():
        return None
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT applied_seq FROM position").fetchone()[0])
