"""A model of what an imported edge costs the two shards' SQLite files, for the bulk
path of docs/design/graph.md section 10: how far could a different way of logging
an import's edges take it?

    python -m torua.bench.edge_write_model [--edges 100000] [--vertices 20000] [--rounds 2]

Two shard files, A (every src) and B (every dst), with the schema and pragmas of a
shard (`torua.graph.rows`, WAL, synchronous NORMAL), each holding the vertices; the
edges come in batches of 500, as an import's do. For each batch, the reads the
protocol makes (which endpoints exist, which halves are there) and the writes of one
of three ways to log it:

- **per-edge ops** (what the nodes do today, section 4): A logs each out-half
  pending (one `EdgePut` per edge, encoded by the codec), B each in-half attached,
  A each out-half committed, B each in-half confirmed; four log rows and four row
  writes per edge, the halves read before each step;
- **ops of many edges**: the same four steps, each one log row for the batch, every
  edge of the batch taking the op's seq as its token; the commit and the confirm
  are updates of the batch's rows still in the state and token they name;
- **the floor**: each half written once, in its final state (no protocol at all:
  what no crash-safe two-shard write can go below with rows in SQLite).

It counts this process's CPU per edge: SQLite and the log rows' encoding, not the
messages between the shards, the decisions, the gateway or the index. Alternate
rounds, since these machines are noisy.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgpack

from torua.graph.rows import EDGE_PUT_SQL, SCHEMA, by_key_sql
from torua.storage.operations import EdgePut, encode_operation

BATCH = 500  # edges per import batch and per message between the shards (torua.node.peer_lanes)
UID = "u"
Edge = tuple[str, str, str]


class Shard:
    """One shard file: its rows and its log."""

    def __init__(self, path: Path, vertices: int) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        for statement in (*SCHEMA, "CREATE TABLE oplog (seq INTEGER PRIMARY KEY, op BLOB NOT NULL)"):
            self.conn.execute(statement)
        self.seq = 0
        with self.transaction():
            self.conn.executemany("INSERT INTO g_vertex VALUES (?, ?, 'V', '{}', NULL)", ((UID, f"v{i}") for i in range(vertices)))

    def transaction(self) -> "_Transaction":
        return _Transaction(self.conn)

    def log(self, blobs: Sequence[bytes]) -> int:
        """Log `blobs` (one op each); the first one's seq."""
        first = self.seq + 1
        self.seq += len(blobs)
        self.conn.executemany("INSERT INTO oplog VALUES (?, ?)", ((first + i, blob) for i, blob in enumerate(blobs)))
        return first

    def existing(self, ids: Sequence[str]) -> set[str]:
        unique, found = list(dict.fromkeys(ids)), set()
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            found |= {r[0] for r in self.conn.execute(f"SELECT id FROM g_vertex WHERE uid = ? AND id IN ({', '.join('?' for _ in part)})", (UID, *part))}
        return found

    def halves(self, keys: Sequence[Edge]) -> dict[Edge, tuple]:
        found = {}
        for start in range(0, len(keys), 300):
            part = keys[start : start + 300]
            sql = by_key_sql("SELECT g_edge.src, g_edge.type, g_edge.dst, out_state, out_token, in_state, in_token FROM", "g_edge", len(part))
            for row in self.conn.execute(sql, (*(x for key in part for x in key), UID)):
                found[row[:3]] = row
        return found

    def settled(self) -> tuple[int, int]:
        """(out-halves committed, in-halves confirmed)."""
        return self.conn.execute("SELECT sum(out_state = 'committed'), sum(in_state = 'confirmed') FROM g_edge").fetchone()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN")

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("COMMIT" if exc[0] is None else "ROLLBACK")


def _read_both_ends(a: Shard, b: Shard, batch: Sequence[Edge], dst_too: bool = True) -> None:
    a.existing([e[0] for e in batch])
    a.halves(batch)
    if dst_too:
        b.existing([e[2] for e in batch])
        b.halves(batch)


def per_edge_ops(a: Shard, b: Shard, batch: Sequence[Edge]) -> None:
    def ops(halves: str, state: str, tokens: Sequence[int]) -> list[bytes]:
        return [encode_operation(EdgePut(UID, s, t, d, halves, "{}", 1.0, state=state, token=token)) for (s, t, d), token in zip(batch, tokens)]

    a.existing([e[0] for e in batch])
    a.halves(batch)
    with a.transaction():
        first = a.log(ops("out", "pending", [0] * len(batch)))
        tokens = [first + i for i in range(len(batch))]
        a.conn.executemany(EDGE_PUT_SQL["out"], ((UID, *e, "pending", token, "{}", 1.0) for e, token in zip(batch, tokens)))
    b.existing([e[2] for e in batch])
    b.halves(batch)
    with b.transaction():
        b.log(ops("in", "pending", tokens))
        b.conn.executemany(EDGE_PUT_SQL["in"], ((UID, *e, "attached", token, "{}", 1.0) for e, token in zip(batch, tokens)))
    a.existing([e[0] for e in batch])
    a.halves(batch)
    with a.transaction():
        a.log(ops("out", "committed", tokens))
        a.conn.executemany(EDGE_PUT_SQL["out"], ((UID, *e, "committed", token, "{}", 1.0) for e, token in zip(batch, tokens)))
    b.halves(batch)
    with b.transaction():
        b.log(ops("in", "committed", tokens))
        b.conn.executemany(EDGE_PUT_SQL["in"], ((UID, *e, "confirmed", token, "{}", 1.0) for e, token in zip(batch, tokens)))


def _many(op: str, batch: Sequence[Edge], **fields: object) -> bytes:
    src, type, dst = (list(column) for column in zip(*batch))
    return msgpack.packb({"op": op, "uid": UID, "src": src, "type": type, "dst": dst, "properties": ["{}"] * len(batch), "weight": [1.0] * len(batch), **fields})


def ops_of_many_edges(a: Shard, b: Shard, batch: Sequence[Edge]) -> None:
    a.existing([e[0] for e in batch])
    a.halves(batch)
    with a.transaction():
        token = a.log([_many("graph.edge.put_many", batch, halves="out", state="pending")])
        a.conn.executemany(EDGE_PUT_SQL["out"], ((UID, *e, "pending", token, "{}", 1.0) for e in batch))
    b.existing([e[2] for e in batch])
    b.halves(batch)
    with b.transaction():
        b.log([_many("graph.edge.put_many", batch, halves="in", state="pending", token=token)])
        b.conn.executemany(EDGE_PUT_SQL["in"], ((UID, *e, "attached", token, "{}", 1.0) for e in batch))
    with a.transaction():  # every half B attached: those still pending this token are committed
        a.log([msgpack.packb({"op": "graph.edge.commit_many", "uid": UID, "token": token, "src": [e[0] for e in batch], "type": [e[1] for e in batch], "dst": [e[2] for e in batch]})])
        a.conn.executemany(
            "UPDATE g_edge SET out_state = 'committed' WHERE uid = ? AND src = ? AND type = ? AND dst = ? AND out_state = 'pending' AND out_token = ?",
            ((UID, *e, token) for e in batch),
        )
    with b.transaction():
        b.log([msgpack.packb({"op": "graph.edge.confirm_many", "uid": UID, "token": token, "src": [e[0] for e in batch], "type": [e[1] for e in batch], "dst": [e[2] for e in batch]})])
        b.conn.executemany(
            "UPDATE g_edge SET in_state = 'confirmed' WHERE uid = ? AND src = ? AND type = ? AND dst = ? AND in_state = 'attached' AND in_token = ?",
            ((UID, *e, token) for e in batch),
        )


def floor(a: Shard, b: Shard, batch: Sequence[Edge]) -> None:
    _read_both_ends(a, b, batch)
    with a.transaction():
        token = a.log([_many("graph.edge.put_many", batch, halves="out", state="committed")])
        a.conn.executemany(EDGE_PUT_SQL["out"], ((UID, *e, "committed", token, "{}", 1.0) for e in batch))
    with b.transaction():
        b.log([_many("graph.edge.put_many", batch, halves="in", state="committed", token=token)])
        b.conn.executemany(EDGE_PUT_SQL["in"], ((UID, *e, "confirmed", token, "{}", 1.0) for e in batch))


WAYS: dict[str, Callable[[Shard, Shard, Sequence[Edge]], None]] = {
    "per-edge ops (today)": per_edge_ops,
    "ops of many edges": ops_of_many_edges,
    "floor (each half written once)": floor,
}


def edges_of(vertices: int, count: int, seed: int = 1) -> list[Edge]:
    rng, found = random.Random(seed), dict[Edge, None]()
    while len(found) < count:
        found[(f"v{rng.randrange(vertices)}", "LINK", f"v{rng.randrange(vertices)}")] = None
    return list(found)


def run(way: str, directory: Path, vertices: int, edges: Sequence[Edge]) -> tuple[float, tuple[int, int]]:
    """CPU seconds per edge of writing `edges` the `way` named, and (committed, confirmed) after."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    a, b = Shard(directory / "a.db", vertices), Shard(directory / "b.db", vertices)
    try:
        started = time.process_time()
        for start in range(0, len(edges), BATCH):
            WAYS[way](a, b, edges[start : start + BATCH])
        seconds = time.process_time() - started
        return seconds / max(len(edges), 1), (a.settled()[0] or 0, b.settled()[1] or 0)
    finally:
        a.conn.close()
        b.conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--edges", type=int, default=100_000)
    p.add_argument("--vertices", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=2, help="rounds, each running every way once [default 2]")
    args = p.parse_args()
    edges = edges_of(args.vertices, args.edges)
    with tempfile.TemporaryDirectory(prefix="torua-edge-model-") as tmp:
        for round in range(1, args.rounds + 1):
            for way in WAYS:
                per_edge, (committed, confirmed) = run(way, Path(tmp) / "shards", args.vertices, edges)
                print(f"round {round}: {way:32s} {1e6 * per_edge:6.1f} us of CPU per edge ({committed} committed, {confirmed} confirmed)", flush=True)


if __name__ == "__main__":
    main()
