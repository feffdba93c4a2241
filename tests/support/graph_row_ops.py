"""Graph operations for storage tests: random sequences (every graph operation is a
blind write, so any sequence is one a log may hold), and a dump of a store's graph
rows to compare copies with."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path

from torua.storage.operations import EdgeDelete, EdgePut, GraphDrop, GraphEnsure, Operation, OutboxDone, SupportChange, VertexDelete, VertexPut
from torua.storage.writer import DB_FILENAME

UIDS = ("u1", "u2")
IDS = ("a", "b", "c", "ü/1", "d e")
TYPES = ("knows", "likes")


def random_op(rng: random.Random, ids: tuple[str, ...] = IDS, supports: bool = False) -> Operation:
    """One graph operation; with `supports`, one in ten is a `SupportChange` (GraphRAG's
    evidence) and the others are drawn as without."""
    if supports and rng.random() < 0.1:
        uid, vertex = rng.choice(UIDS), rng.random() < 0.5
        chunks = [f"c{rng.randrange(4)}" for _ in range(rng.randrange(3))]
        return SupportChange(
            uid, rng.choice(ids), "" if vertex else rng.choice(TYPES), "" if vertex else rng.choice(ids),
            added={c: f'{{"n":{rng.randrange(3)}}}' for c in chunks if rng.random() < 0.6},
            removed=[c for c in chunks if rng.random() < 0.4],
        )
    uid = rng.choice(UIDS)
    src, dst, kind = rng.choice(ids), rng.choice(ids), rng.choice(TYPES)
    roll = rng.random()
    if roll < 0.04:
        return GraphEnsure(uid, f"g-{uid}", vector_dim=2, metric="cosine", text_properties=["text"])
    if roll < 0.05:
        return GraphDrop(uid)
    if roll < 0.30:
        embedding = [rng.random(), rng.random()] if rng.random() < 0.5 else None
        return VertexPut(uid, src, label=rng.choice(("Person", "Doc")), properties=f'{{"n":{rng.randrange(100)}}}', embedding=embedding)
    if roll < 0.38:
        return VertexDelete(uid, src)
    if roll < 0.70:
        return EdgePut(
            uid, src, kind, dst,
            halves=rng.choice(("out", "in", "both")),
            properties=f'{{"w":{rng.randrange(10)}}}',
            weight=float(rng.randrange(1, 5)),
            state=rng.choice(("pending", "committed", "removing")),
            token=rng.choice((0, rng.randrange(1, 50))),
        )
    if roll < 0.92:
        return EdgeDelete(uid, src, kind, dst, halves=rng.choice(("out", "in", "both")), token=rng.randrange(1, 50), outbox=rng.choice(("", "detach", "drop")))
    return OutboxDone(uid, rng.choice(("detach", "drop")), src, kind, dst, token=rng.randrange(1, 50))


def random_ops(rng: random.Random, count: int, ids: tuple[str, ...] = IDS, supports: bool = False) -> list[Operation]:
    """`count` random graph operations over `ids` (few ids: many touch the same rows)."""
    return [random_op(rng, ids, supports) for _ in range(count)]


def graph_rows(directory: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every graph table of the shard.db in `directory`, in key order."""
    return graph_rows_at(directory)[1]


def graph_rows_at(directory: Path) -> tuple[int, dict[str, list[tuple[object, ...]]]]:
    """The log's last seq and every graph row of the shard.db in `directory`, read in
    one transaction (so the rows are those of that seq)."""
    with closing(sqlite3.connect(f"{(Path(directory) / DB_FILENAME).resolve().as_uri()}?mode=ro", uri=True)) as conn:
        conn.execute("BEGIN")
        base, last = conn.execute("SELECT (SELECT value FROM meta WHERE name = 'base_seq'), (SELECT max(seq) FROM oplog)").fetchone()
        rows = {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr) for table in ("g_graph", "g_vertex", "g_edge", "g_outbox", "g_support")}
        return max(int(base or 0), int(last or 0)), rows
