"""Reading a node's shard.db straight from its file, from the test process.

The node may be writing the file, or replacing it (a copy copied again is
removed and made anew), while a test reads it: opening or reading then
fails now and then with `sqlite3.OperationalError` ("disk I/O error" once in CI,
on a copy re-copied a moment before). Such an error is retried until a deadline;
what the read returns is asserted by the caller as before."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

RETRY_S = 0.05


def query(db: Path, sql: str, params: tuple[Any, ...] = (), timeout: float = 10.0) -> list[tuple[Any, ...]]:
    """The rows of `sql` on the database file `db`, read-only (it is never created)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with closing(sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(RETRY_S)


def shard_db(workdir: Path, node_id: str, shard_id: int) -> Path:
    return Path(workdir) / node_id / "shards" / str(shard_id) / "shard.db"


def copy_value(workdir: Path, node_id: str, shard_id: int, key: str) -> bytes | None:
    """A key's value in one node's copy of a shard (None: not there)."""
    rows = query(shard_db(workdir, node_id, shard_id), "SELECT value FROM kv WHERE key = ?", (key,))
    return bytes(rows[0][0]) if rows else None
