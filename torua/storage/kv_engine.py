"""The key-value engine: a shard's keys in its SQLite database, applied inside the
writer's transaction (a transactional `torua.storage.engine.ShardEngine`).

Table ``kv(key TEXT PRIMARY KEY, value BLOB NOT NULL, content_type TEXT NOT NULL)``
and the ``keys`` and ``bytes`` rows of ``meta`` (running counters for `stats`),
changed in the same transaction as the log.

Snapshot chunks are ``kv.rows.v1``: msgpack ``[[key, value, content_type], ...]``
in key order; the cursor is the last key sent, in UTF-8.

>>> decode_rows(encode_rows([("k", b"v", "text/plain")]))
[('k', b'v', 'text/plain')]
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from torua.storage.engine import Chunk, EngineContext, EngineKind
from torua.storage.operations import KvDelete, KvPut, Operation

__all__ = ["HANDLERS", "KvCounters", "KvEngine", "ROWS_FORMAT", "check_rows", "decode_rows", "encode_rows"]

ROWS_FORMAT = "kv.rows.v1"

Row = tuple[str, bytes, str]


@dataclass
class KvCounters:
    """Committed (or, inside a transaction, tentative) counters of the kv table."""

    keys: int
    bytes: int


def check_rows(rows: Sequence[Sequence[Any]]) -> list[Row]:
    """Rows as (key, value, content_type); `ValueError` for anything else."""
    checked: list[Row] = []
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != 3:
            raise ValueError(f"snapshot row must be (key, value, content_type): {row!r}")
        key, value, ctype = row
        if not isinstance(key, str) or not isinstance(ctype, str):
            raise ValueError("snapshot row key and content_type must be str")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError("snapshot row value must be bytes")
        checked.append((key, bytes(value), ctype))
    return checked


def encode_rows(rows: Sequence[Row]) -> bytes:
    return msgpack.packb([list(row) for row in rows], use_bin_type=True)


def decode_rows(data: bytes) -> list[Row]:
    try:
        rows = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises a zoo of exception types
        raise ValueError(f"{ROWS_FORMAT} chunk does not decode: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{ROWS_FORMAT} chunk must be a list of rows")
    return check_rows(rows)


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


def _put_row(conn: sqlite3.Connection, state: KvCounters, key: str, value: bytes, ctype: str) -> None:
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


def _apply_put(conn: sqlite3.Connection, state: KvCounters, op: Any) -> None:
    _put_row(conn, state, op.key, op.value, op.content_type)


def _apply_delete(conn: sqlite3.Connection, state: KvCounters, op: Any) -> None:
    rows = conn.execute(
        "DELETE FROM kv WHERE key = ? RETURNING length(value)", (op.key,)
    ).fetchall()
    for (length,) in rows:
        state.keys -= 1
        state.bytes -= int(length)


# One handler per operation type this engine takes (OPERATION_ENGINES[type] == ("kv",)):
# a new key-value operation is a class in torua.storage.operations and a line here.
HANDLERS: dict[type[Any], Callable[[sqlite3.Connection, KvCounters, Any], None]] = {
    KvPut: _apply_put,
    KvDelete: _apply_delete,
}


class KvEngine:
    """Keys, values and content types of one shard copy."""

    name: str = "kv"
    kind: EngineKind = "transactional"
    formats: tuple[str, ...] = (ROWS_FORMAT,)

    def __init__(self, context: EngineContext) -> None:
        self._reader = context.reader

    # ------------------------------------------------------------- writing

    def load(self, conn: sqlite3.Connection, create: bool) -> KvCounters:
        if create:
            conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, content_type TEXT NOT NULL)")
            conn.executemany("INSERT INTO meta(name, value) VALUES (?, ?)", [("keys", 0), ("bytes", 0)])
        meta = dict(conn.execute("SELECT name, value FROM meta WHERE name IN ('keys', 'bytes')").fetchall())
        return KvCounters(keys=int(meta["keys"]), bytes=int(meta["bytes"]))

    def apply(self, conn: sqlite3.Connection, state: KvCounters, batch: Sequence[tuple[int, Operation]]) -> None:
        for _, op in batch:
            handler = HANDLERS.get(type(op))
            if handler is None:
                raise TypeError(f"the kv engine cannot apply operation type {type(op).__name__}")
            handler(conn, state, op)

    def install(self, conn: sqlite3.Connection, state: KvCounters, chunk: Chunk) -> None:
        self.install_rows(conn, state, decode_rows(chunk.data))

    def install_rows(self, conn: sqlite3.Connection, state: KvCounters, rows: Sequence[Row]) -> None:
        for key, value, ctype in rows:
            _put_row(conn, state, key, value, ctype)

    def settled(self) -> None:
        pass  # nothing cached outside the transaction's state

    def save(self, conn: sqlite3.Connection, before: KvCounters, after: KvCounters) -> None:
        if after.keys != before.keys:
            conn.execute("UPDATE meta SET value = ? WHERE name = 'keys'", (after.keys,))
        if after.bytes != before.bytes:
            conn.execute("UPDATE meta SET value = ? WHERE name = 'bytes'", (after.bytes,))

    def holds_data(self) -> bool:
        return True  # its rows are what a release before chunk formats copies: always offered

    def close(self) -> None:
        pass  # its connections are the writer's

    # ------------------------------------------------------------- reading

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

    def rows(self, after: str | None, max_bytes: int = 4 << 20) -> tuple[list[Row], str | None]:
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
        rows: list[Row] = []
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

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int) -> tuple[list[Chunk], bytes | None]:
        try:
            after = None if cursor is None else cursor.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not a kv snapshot cursor") from None
        rows, nxt = self.rows(after, max_bytes)
        chunks = [Chunk(ROWS_FORMAT, encode_rows(rows))] if rows else []
        return chunks, None if nxt is None else nxt.encode("utf-8")

    def stats(self) -> dict[str, int]:
        row = self._reader().execute(
            "SELECT (SELECT value FROM meta WHERE name = 'keys'), (SELECT value FROM meta WHERE name = 'bytes')"
        ).fetchone()
        return {"keys": int(row[0]), "bytes": int(row[1])}
