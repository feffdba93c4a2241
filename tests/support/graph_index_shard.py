"""A shard store with the graph index and the model rows engine, for the index's tests
(the test hands the index its ops, as the writer will once an op type goes to several
engines)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.support.graph_rows_model import SOURCE, ModelGraphRows, apply_op, expected_index
from torua.graph.index import GraphIndex
from torua.graph.indexing import IndexLimits
from torua.storage.operations import Operation, decode_operation
from torua.storage.shard_store import ShardStore

SMALL = IndexLimits(buffer_pool_bytes=32 << 20, max_db_bytes=512 << 20, threads=1)


def open_shard(directory: Path, shard_id: int = 1, *, create: bool = True, limits: IndexLimits = SMALL, **options: Any) -> tuple[ShardStore, GraphIndex]:
    store = ShardStore.open(directory, shard_id, create=create, durable=False, engines=(ModelGraphRows, GraphIndex.factory(SOURCE, limits, **options)))
    index = store.engine("graph_index")
    assert isinstance(index, GraphIndex)
    return store, index


async def write(store: ShardStore, index: GraphIndex | None, ops: Sequence[Operation]) -> list[int]:
    """Log and apply `ops` in one batch; give them to `index` too (None: it is not told)."""
    seqs = await store.apply_all(ops)
    if index is not None:
        index.apply(list(zip(seqs, ops)), seqs[-1])
    return seqs


def expected_now(store: ShardStore, uid: str) -> dict[str, set[tuple[Any, ...]]]:
    conn = store.writer.reader()
    conn.execute("BEGIN")
    try:
        return expected_index(conn, uid)
    finally:
        conn.execute("COMMIT")


def expected_at(directory: Path, seq: int, uid: str) -> dict[str, set[tuple[Any, ...]]]:
    """What the index must hold at `seq`: the log's ops up to it, applied to fresh rows."""
    with closing(sqlite3.connect(directory / "shard.db")) as shard, closing(sqlite3.connect(":memory:")) as rows:
        ModelGraphRows(None).load(rows, True)  # type: ignore[arg-type]
        for _, blob in shard.execute("SELECT seq, op FROM oplog WHERE seq <= ? ORDER BY seq", (seq,)):
            apply_op(rows, decode_operation(blob))
        return expected_index(rows, uid)
