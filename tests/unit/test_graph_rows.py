"""The graph rows engine (torua.graph.rows) in a real shard store: what each operation
does to the tables, that copies fed the same operations hold the same rows, that a
fuzzy snapshot then the log converges, the reads (pages of edges, hops), and that
rows and log agree after a SIGKILL at any moment."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.graph_row_ops import IDS, TYPES, UIDS, graph_rows, random_ops
from tests.support.processes import wait_until
import torua.graph.rows as graph_rows_module
from torua.graph import support
from torua.graph.rows import (
    ROWS_FORMAT,
    EdgeRow,
    GraphRows,
    GraphSettings,
    OutboxTask,
    VertexRow,
    pack_vector,
    read_rows,
)
from torua.storage.engine import Chunk, EngineContext, EngineKind
from torua.storage.kv_engine import ROWS_FORMAT as KV_ROWS
from torua.storage.operations import (
    EdgeDelete,
    EdgePut,
    GraphDrop,
    GraphEnsure,
    KvPut,
    Operation,
    OutboxDone,
    SupportChange,
    VertexDelete,
    VertexPut,
)
from torua.storage.shard_store import ShardStore

REPO = Path(__file__).resolve().parents[2]


def open_store(directory: Path, create: bool = True, extra: Sequence[Any] = ()) -> ShardStore:
    return ShardStore.open(directory, 1, create=create, engines=[GraphRows, *extra])


def rows_of(store: ShardStore) -> GraphRows:
    engine = store.engine("graph")
    assert isinstance(engine, GraphRows)
    return engine


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ShardStore]:
    s = open_store(tmp_path / "s")
    try:
        yield s
    finally:
        await s.close()


# ------------------------------------------------------------ each operation

ENSURE = GraphEnsure("u1", "people", vector_dim=2, metric="l2", text_properties=["bio"])
ALICE = VertexPut("u1", "alice", "Person", '{"age":30}', [1.0, 0.5])
BOB = VertexPut("u1", "bob", "Person", "{}")
GRAPH_ROW = ("u1", "people", 2, "l2", '["bio"]', 0)
ALICE_ROW = ("u1", "alice", "Person", '{"age":30}', pack_vector([1.0, 0.5]))
BOB_ROW = ("u1", "bob", "Person", "{}", None)


def edge_row(src: str, dst: str, out: str | None, out_token: int, in_: str | None, in_token: int, props: str = "{}", weight: float = 1.0) -> tuple[Any, ...]:
    return ("u1", src, "knows", dst, out, out_token, in_, in_token, props, weight)


# (name, operations applied from seq 1, expected tables (those not named are empty))
CASES: list[tuple[str, list[Operation], dict[str, list[tuple[Any, ...]]]]] = [
    ("ensure", [ENSURE], {"g_graph": [GRAPH_ROW]}),
    ("ensure again with other settings: the last wins", [ENSURE, GraphEnsure("u1", "people", 3)], {"g_graph": [("u1", "people", 3, "cosine", "[]", 0)]}),
    ("vertex put", [ENSURE, ALICE, BOB], {"g_graph": [GRAPH_ROW], "g_vertex": [ALICE_ROW, BOB_ROW]}),
    ("vertex put replaces the whole vertex", [ALICE, VertexPut("u1", "alice", "Robot")], {"g_vertex": [("u1", "alice", "Robot", "{}", None)]}),
    ("vertex delete removes only the vertex", [ALICE, BOB, EdgePut("u1", "alice", "knows", "bob", "both"), VertexDelete("u1", "alice")],
     {"g_vertex": [BOB_ROW], "g_edge": [edge_row("alice", "bob", "committed", 3, "confirmed", 3)]}),
    ("vertex delete of a missing vertex", [VertexDelete("u1", "nobody")], {}),
    ("out-half pending: its token is its own seq", [ALICE, EdgePut("u1", "alice", "knows", "carol", "out", '{"since":1}', 2.0, "pending")],
     {"g_vertex": [ALICE_ROW], "g_edge": [edge_row("alice", "carol", "pending", 2, None, 0, '{"since":1}', 2.0)]}),
    ("out-half committed keeps the token named", [EdgePut("u1", "alice", "knows", "carol", "out", state="pending"), EdgePut("u1", "alice", "knows", "carol", "out", state="committed", token=1)],
     {"g_edge": [edge_row("alice", "carol", "committed", 1, None, 0)]}),
    ("out-half removing", [EdgePut("u1", "alice", "knows", "carol", "out", state="committed", token=7), EdgePut("u1", "alice", "knows", "carol", "out", state="removing", token=7)],
     {"g_edge": [edge_row("alice", "carol", "removing", 7, None, 0)]}),
    ("in-half attached, then confirmed", [EdgePut("u1", "zed", "knows", "bob", "in", state="pending", token=9)],
     {"g_edge": [edge_row("zed", "bob", None, 0, "attached", 9)]}),
    ("in-half confirmed", [EdgePut("u1", "zed", "knows", "bob", "in", state="pending", token=9), EdgePut("u1", "zed", "knows", "bob", "in", state="committed", token=9)],
     {"g_edge": [edge_row("zed", "bob", None, 0, "confirmed", 9)]}),
    ("both halves in one row", [EdgePut("u1", "alice", "knows", "bob", "both", '{"x":1}')],
     {"g_edge": [edge_row("alice", "bob", "committed", 1, "confirmed", 1, '{"x":1}')]}),
    ("an in-half write leaves the out-half as it is", [EdgePut("u1", "a", "knows", "a", "out", state="pending"), EdgePut("u1", "a", "knows", "a", "in", state="pending", token=1)],
     {"g_edge": [edge_row("a", "a", "pending", 1, "attached", 1)]}),
    ("delete one half of two: the row stays", [EdgePut("u1", "a", "knows", "a", "both"), EdgeDelete("u1", "a", "knows", "a", "out")],
     {"g_edge": [edge_row("a", "a", None, 0, "confirmed", 1)]}),
    ("delete the last half: the row goes", [EdgePut("u1", "alice", "knows", "carol", "out"), EdgeDelete("u1", "alice", "knows", "carol", "out")], {}),
    ("delete a half not held: nothing", [EdgePut("u1", "alice", "knows", "carol", "out"), EdgeDelete("u1", "alice", "knows", "carol", "in")],
     {"g_edge": [edge_row("alice", "carol", "committed", 1, None, 0)]}),
    ("delete both", [EdgePut("u1", "alice", "knows", "bob", "both"), EdgeDelete("u1", "alice", "knows", "bob", "both")], {}),
    ("delete with an outbox task: detach", [EdgePut("u1", "alice", "knows", "carol", "out"), EdgeDelete("u1", "alice", "knows", "carol", "out", token=1, outbox="detach")],
     {"g_outbox": [("u1", "detach", "alice", "knows", "carol", 1)]}),
    ("delete with an outbox task: drop", [EdgePut("u1", "zed", "knows", "bob", "in", state="pending", token=4), EdgeDelete("u1", "zed", "knows", "bob", "in", token=4, outbox="drop")],
     {"g_outbox": [("u1", "drop", "zed", "knows", "bob", 4)]}),
    ("tasks of two incarnations are two tasks; done removes its own",
     [EdgeDelete("u1", "a", "knows", "c", "out", token=3, outbox="detach"), EdgeDelete("u1", "a", "knows", "c", "out", token=8, outbox="detach"), OutboxDone("u1", "detach", "a", "knows", "c", token=3)],
     {"g_outbox": [("u1", "detach", "a", "knows", "c", 8)]}),
    ("outbox done twice", [EdgeDelete("u1", "a", "knows", "c", "out", token=3, outbox="detach"), OutboxDone("u1", "detach", "a", "knows", "c", 3), OutboxDone("u1", "detach", "a", "knows", "c", 3)], {}),
    ("a vertex delete as its primary logs it: halves, outbox tasks, the vertex",
     [ALICE, BOB, EdgePut("u1", "alice", "knows", "bob", "both"), EdgePut("u1", "alice", "knows", "carol", "out", state="committed", token=2),
      EdgePut("u1", "zed", "knows", "alice", "in", state="committed", token=5),
      EdgeDelete("u1", "alice", "knows", "bob", "both"), EdgeDelete("u1", "alice", "knows", "carol", "out", token=2, outbox="detach"),
      EdgeDelete("u1", "zed", "knows", "alice", "in", token=5, outbox="drop"), VertexDelete("u1", "alice")],
     {"g_vertex": [BOB_ROW], "g_outbox": [("u1", "detach", "alice", "knows", "carol", 2), ("u1", "drop", "zed", "knows", "alice", 5)]}),
    ("drop: every row of the graph goes, a tombstone stays; other graphs stay",
     [ENSURE, ALICE, EdgePut("u1", "alice", "knows", "bob", "out"), EdgeDelete("u1", "x", "knows", "y", "out", 1, "detach"),
      VertexPut("u2", "alice"), GraphDrop("u1")],
     {"g_graph": [("u1", "people", 2, "l2", '["bio"]', 1)], "g_vertex": [("u2", "alice", "", "{}", None)]}),
    ("drop of a graph never seen here: a tombstone", [GraphDrop("u9")], {"g_graph": [("u9", "", 0, "cosine", "[]", 1)]}),
    ("ensure after a drop brings it back (the node refuses to log that)", [ENSURE, GraphDrop("u1"), ENSURE], {"g_graph": [GRAPH_ROW]}),
    ("support: chunks added to a vertex and an edge, a note replaced, one removed, a removal of nothing",
     [SupportChange("u1", "alice", added={"c1": "{}", "c2": '{"a":1}'}), SupportChange("u1", "alice", "knows", "bob", added={"c1": '{"knows":1}'}),
      SupportChange("u1", "alice", added={"c2": '{"a":2}'}, removed=["c1", "c9"]), SupportChange("u1", "zed", removed=["c1"])],
     {"g_support": [("u1", "alice", "", "", "c2", '{"a":2}'), ("u1", "alice", "knows", "bob", "c1", '{"knows":1}')]}),
    ("support added twice is held once; removed twice is gone",
     [SupportChange("u1", "a", added={"c": "{}"}), SupportChange("u1", "a", added={"c": "{}"}), SupportChange("u1", "a", removed=["c"]),
      SupportChange("u1", "a", removed=["c"])], {}),
    ("drop takes the graph's support, not another graph's",
     [SupportChange("u1", "a", added={"c": "{}"}), SupportChange("u2", "a", added={"c": "{}"}), GraphDrop("u1")],
     {"g_graph": [("u1", "", 0, "cosine", "[]", 1)], "g_support": [("u2", "a", "", "", "c", "{}")]}),
]


@pytest.mark.parametrize("name, ops, expected", CASES, ids=[c[0] for c in CASES])
async def test_each_operation_writes_the_rows_it_names(tmp_path: Path, name: str, ops: list[Operation], expected: dict[str, list[tuple[Any, ...]]]) -> None:
    store = open_store(tmp_path / "s")
    try:
        for op in ops:
            await store.apply(op)
    finally:
        await store.close()
    tables = graph_rows(tmp_path / "s")
    assert tables == {t: sorted(expected.get(t, []), key=repr) for t in tables}


@pytest.mark.parametrize(
    "op, message",
    [
        (EdgePut("u1", "a", "knows", "b", "sideways"), "halves must be one of"),
        (EdgePut("u1", "a", "knows", "b", "out", state="maybe"), "state must be one of"),
        (EdgeDelete("u1", "a", "knows", "b", "out", outbox="shred"), "outbox must be one of"),
    ],
)
async def test_an_operation_out_of_its_vocabulary_is_refused_and_changes_nothing(store: ShardStore, op: Operation, message: str) -> None:
    await store.apply(ALICE)
    with pytest.raises(ValueError, match=message):
        await store.apply(op)
    assert store.last_seq() == 1
    assert graph_rows(store.directory)["g_edge"] == []


# ------------------------------------------------------------- determinism


@pytest.mark.parametrize("seed", range(5))
async def test_copies_fed_the_same_operations_hold_the_same_rows(tmp_path: Path, seed: int) -> None:
    """In batches (runs of edge puts go in one executemany), all at once as a replica,
    and one at a time: the same rows."""
    ops = random_ops(random.Random(seed), 400, supports=True)
    one, two, three = open_store(tmp_path / "one"), open_store(tmp_path / "two"), open_store(tmp_path / "three")
    try:
        for start in range(0, len(ops), 37):
            await one.apply_all(ops[start : start + 37])
        await two.apply_many_at([(seq, op) for seq, op in enumerate(ops, 1)])
        for op in ops:
            await three.apply(op)
        assert one.last_seq() == two.last_seq() == three.last_seq() == len(ops)
    finally:
        await one.close()
        await two.close()
        await three.close()
    assert graph_rows(tmp_path / "one") == graph_rows(tmp_path / "two") == graph_rows(tmp_path / "three")
    assert any(graph_rows(tmp_path / "one").values()) and graph_rows(tmp_path / "one")["g_support"]


# ----------------------------------------------------------------- snapshots


@pytest.mark.parametrize("late", [False, True], ids=["read-while-written", "read-after-all-writes"])
@pytest.mark.parametrize("seed", range(10))
async def test_a_fuzzy_snapshot_then_the_log_from_its_base_converges(tmp_path: Path, seed: int, late: bool) -> None:
    """Chunks read while writes go on, or (the fuzziest a snapshot can be) every chunk
    read after every write that follows its base: either way, installed and followed by
    the log from the base, they give the source's rows."""
    rng = random.Random(seed)
    source, target = open_store(tmp_path / "source"), open_store(tmp_path / "target")
    try:
        await source.apply_all(random_ops(rng, 300, supports=True))
        await source.apply(KvPut("k", b"v"))
        base = source.applied_seq()
        if late:
            await source.apply_all(random_ops(rng, 200, supports=True))
        cursor: bytes | None = None
        formats: set[str] = set()
        while True:
            chunks, cursor = source.snapshot_chunks(cursor, max_bytes=300)  # small: many chunks
            formats |= {c.format for c in chunks}
            await target.install_chunks(chunks)
            if not late:
                await source.apply_all(random_ops(rng, rng.randrange(1, 20), supports=True))  # writes go on meanwhile
            if cursor is None:
                break
        assert formats == {KV_ROWS, ROWS_FORMAT}
        await target.set_base_seq(base)
        await target.apply_encoded_at(source.read_log_encoded(base, max_ops=10**6, max_bytes=1 << 30))
        assert target.last_seq() == source.last_seq()
    finally:
        await source.close()
        await target.close()
    assert graph_rows(tmp_path / "target") == graph_rows(tmp_path / "source")


async def test_a_chunk_that_is_not_graph_rows_is_refused_and_nothing_installed(store: ShardStore) -> None:
    import msgpack

    good = msgpack.packb({"table": "g_vertex", "rows": [["u1", "a", "", "{}", None]]})
    for data, message in [
        (b"\xc1", "does not decode"),
        (msgpack.packb({"table": "kv", "rows": []}), "must be"),
        (msgpack.packb({"table": "g_vertex", "rows": [["u1", "a"]]}), "have 5 columns"),
    ]:
        with pytest.raises(ValueError, match=message):
            await store.install_chunks([Chunk(ROWS_FORMAT, good), Chunk(ROWS_FORMAT, data)])
    assert graph_rows(store.directory)["g_vertex"] == []
    with pytest.raises(ValueError, match="not a graph snapshot cursor"):
        rows_of(store).snapshot_chunks(b"nonsense", 100)


async def test_a_copy_without_graph_rows_offers_no_graph_chunks(store: ShardStore) -> None:
    """So a node of a release without the graph engine can still copy it."""
    assert store.held_formats() == (KV_ROWS,)
    await store.apply(KvPut("k", b"v"))
    assert store.held_formats() == (KV_ROWS,)
    await store.apply(ENSURE)
    assert store.held_formats() == (KV_ROWS, ROWS_FORMAT)


# ---------------------------------------------- the derived index's engines


class RecordingIndex:
    """A follower named like the Kuzu index: records what it is handed."""

    name = "graph_index"
    kind: EngineKind = "follower"
    formats: tuple[str, ...] = ()

    def __init__(self, context: EngineContext) -> None:
        self.context = context
        self.ops: list[tuple[int, Operation]] = []
        self.applied: int | None = None
        self.seen_at_apply: list[int] = []

    def applied_seq(self) -> int | None:
        return self.applied

    def apply(self, batch: Sequence[tuple[int, Operation]], through: int) -> None:
        with read_rows(self.context.reader()) as rows:  # the rows are committed before it runs
            self.seen_at_apply.append(rows.seq)
        self.ops.extend(batch)
        self.applied = through

    def install(self, chunk: Chunk) -> None:
        raise AssertionError("the index has no chunks")

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int) -> tuple[list[Chunk], bytes | None]:
        return [], None

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


async def test_graph_operations_go_to_the_rows_and_then_to_the_index_where_it_is_open(tmp_path: Path) -> None:
    with_index = open_store(tmp_path / "with", extra=[RecordingIndex])
    without = open_store(tmp_path / "without")
    try:
        for s in (with_index, without):
            await s.apply_all([ENSURE, ALICE, KvPut("k", b"v"), VertexDelete("u1", "alice")])
        index = with_index.engine("graph_index")
        assert isinstance(index, RecordingIndex)
        assert [(seq, type(op).__name__) for seq, op in index.ops] == [(1, "GraphEnsure"), (2, "VertexPut"), (4, "VertexDelete")]
        assert index.seen_at_apply == [4]
        assert without.get("k") == (b"v", "application/octet-stream")
    finally:
        await with_index.close()
        await without.close()
    assert graph_rows(tmp_path / "with") == graph_rows(tmp_path / "without")
    kv_only = ShardStore.open(tmp_path / "kv", 1, create=True)
    try:
        with pytest.raises(TypeError, match="no 'graph' engine"):
            await kv_only.apply(ALICE)
        assert kv_only.last_seq() == 0
    finally:
        await kv_only.close()


async def test_read_rows_is_one_view_at_one_seq(store: ShardStore) -> None:
    await store.apply_all([ENSURE, ALICE, BOB, EdgePut("u1", "alice", "knows", "bob", "both"), EdgePut("u1", "alice", "knows", "zed", "out", state="pending")])
    with read_rows(store.writer.reader()) as rows:
        await store.apply(VertexDelete("u1", "bob"))  # after the view began: not in it
        assert rows.seq == 5
        assert [g.name for g in rows.graphs()] == ["people"]
        assert [(v.id, v.vector()) for v in rows.vertex_rows("u1")] == [("alice", [1.0, 0.5]), ("bob", None)]
        edges = list(rows.edge_rows("u1"))
        assert [(e.dst, e.out_visible, e.in_visible) for e in edges] == [("bob", True, True), ("zed", False, False)]
    with read_rows(store.writer.reader()) as rows:
        assert rows.seq == 6 and [v.id for v in rows.vertex_rows("u1", with_embedding=False)] == ["alice"]


# -------------------------------------------------------------------- reads


async def test_edges_of_a_vertex_by_direction_and_type_only_visible_halves(store: ShardStore) -> None:
    await store.apply_all([
        EdgePut("u1", "a", "knows", "b", "both"),
        EdgePut("u1", "a", "likes", "x", "out", state="committed", token=1),
        EdgePut("u1", "a", "knows", "y", "out", state="pending"),  # not yet: invisible
        EdgePut("u1", "a", "knows", "z", "out", state="removing", token=1),  # going: invisible
        EdgePut("u1", "q", "knows", "a", "in", state="pending", token=3),  # attached: visible
        EdgePut("u1", "a", "knows", "a", "both"),  # a loop: out and in, listed once in both
    ])
    graph = rows_of(store)

    def page(direction: str, types: Sequence[str] = ()) -> list[tuple[str, str, str]]:
        return [e.key for e in graph.edges("u1", "a", direction, types)[0]]

    assert page("out") == [("a", "knows", "a"), ("a", "knows", "b"), ("a", "likes", "x")]
    assert page("in") == [("a", "knows", "a"), ("q", "knows", "a")]
    assert page("both") == [("a", "knows", "a"), ("a", "knows", "b"), ("a", "likes", "x"), ("q", "knows", "a")]
    assert page("both", ["likes"]) == [("a", "likes", "x")]
    edges, truncated = graph.neighbours("u1", ["a", "b", "a"], "both")
    assert [e.key for e in edges] == [("a", "knows", "a"), ("a", "knows", "b"), ("a", "likes", "x"), ("q", "knows", "a"), ("a", "knows", "b")] and not truncated
    edges, truncated = graph.neighbours("u1", ["a", "b"], "both", limit=2)
    assert len(edges) == 2 and truncated


async def test_pages_of_edges_never_repeat_or_skip_an_edge_that_exists_throughout(store: ShardStore) -> None:
    rng = random.Random(7)
    stable = {(f"t{rng.randrange(3)}", f"v{i:03}") for i in range(120)}
    ops: list[Operation] = [EdgePut("u1", "hub", t, d, "both") for t, d in stable]
    ops += [EdgePut("u1", d, t, "hub", "in", state="pending", token=1) for t, d in list(stable)[:40]]
    await store.apply_all(ops)
    graph = rows_of(store)
    for direction in ("out", "in", "both"):
        seen: list[tuple[str, str, str]] = []
        cursor = ""
        while True:
            page, cursor = graph.edges("u1", "hub", direction, limit=7, cursor=cursor)
            assert len(page) <= 7
            seen += [e.key for e in page]
            # others come and go between the pages
            churn = [f"w{rng.randrange(1000):03}" for _ in range(3)]
            await store.apply_all([EdgePut("u1", "hub", "t1", w, "both") for w in churn] + [EdgeDelete("u1", "hub", "t1", churn[0], "both")])
            if not cursor:
                break
        expected_out = {("hub", t, d) for t, d in stable}
        expected_in = {(d, t, "hub") for t, d in list(stable)[:40]}
        stable_seen = [k for k in seen if k in expected_out | expected_in]
        assert len(stable_seen) == len(set(stable_seen))  # none twice
        want = {"out": expected_out, "in": expected_in, "both": expected_out | expected_in}[direction]
        assert set(stable_seen) == want  # none skipped
    with pytest.raises(ValueError, match="not one this listing made"):
        graph.edges("u1", "hub", "out", cursor="@@@")
    _, cursor = graph.edges("u1", "hub", "both", limit=1)
    with pytest.raises(ValueError, match="another direction"):
        graph.edges("u1", "hub", "in", cursor=cursor)


async def test_what_repair_visits_and_counts(store: ShardStore) -> None:
    await store.apply_all([
        ENSURE, ALICE,
        EdgePut("u1", "alice", "knows", "p", "out", state="pending"),
        EdgePut("u1", "alice", "knows", "r", "out", state="removing", token=1),
        EdgePut("u1", "alice", "knows", "c", "out", state="committed", token=1),
        EdgePut("u1", "zed", "knows", "alice", "in", state="pending", token=2),
        EdgePut("u1", "yan", "knows", "alice", "in", state="committed", token=2),
        EdgeDelete("u1", "alice", "knows", "gone", "out", token=4, outbox="detach"),
    ])
    graph = rows_of(store)
    assert [(uid, e.key) for uid, e in graph.unsettled()] == [("u1", ("alice", "knows", "p")), ("u1", ("alice", "knows", "r")), ("u1", ("zed", "knows", "alice"))]
    assert [e.key for _, e in graph.unsettled(after=("u1", "alice", "knows", "p"))] == [("alice", "knows", "r"), ("zed", "knows", "alice")]
    assert graph.outbox() == [OutboxTask("u1", "detach", "alice", "knows", "gone", 4)]
    assert graph.graph_stats("u1") == {"vertices": 1, "edges": 1, "in_halves": 2, "unsettled": 3, "outbox": 1}
    assert sorted(e.key for e in graph.edges_of("u1", "alice")) == sorted(
        [("alice", "knows", "p"), ("alice", "knows", "r"), ("alice", "knows", "c"), ("zed", "knows", "alice"), ("yan", "knows", "alice")]
    )
    assert graph.edge("u1", "alice", "knows", "c") == EdgeRow("alice", "knows", "c", "{}", 1.0, "committed", 1, None, 0)
    assert graph.vertices("u1", ["alice", "nobody", "alice"]).keys() == {"alice"}
    assert graph.existing("u1", ["alice", "nobody", "alice"]) == {"alice"}
    assert graph.existing("u1", [f"v{i}" for i in range(1200)] + ["alice"]) == {"alice"}  # over several reads
    assert graph.existing("u2", ["alice"]) == set()
    assert graph.stats() == {"graphs": 1, "vertices": 1, "edges": 1, "outbox": 1}


async def test_a_vertex_and_whether_its_graph_was_deleted_in_one_read(store: ShardStore) -> None:
    await store.apply_all([ENSURE, ALICE, GraphEnsure("u2", "gone"), VertexPut("u2", "x", "L", "{}"), GraphDrop("u2")])
    graph = rows_of(store)
    assert graph.live_vertex("u1", "alice") == (False, graph.vertex("u1", "alice")) == (False, VertexRow("alice", "Person", '{"age":30}'))
    assert graph.live_vertex("u1", "alice", with_embedding=True)[1] == graph.vertex("u1", "alice", with_embedding=True) != graph.vertex("u1", "alice")
    assert graph.live_vertex("u1", "nobody") == (False, None)
    assert graph.live_vertex("never", "alice") == (False, None)
    assert graph.live_vertex("u2", "x") == (True, None)


async def test_graph_settings_read_from_memory_follow_ensure_drop_rollback_and_install(tmp_path: Path) -> None:
    """`GraphRows.graph` keeps what it read in memory: every change to a graph's row
    is seen once the write that made it returns, also by a reader that was reading
    at the same time; a rolled back ensure is never seen."""
    store, other = open_store(tmp_path / "a"), open_store(tmp_path / "b")
    try:
        graph = rows_of(store)
        assert graph.graph("u1") is None  # kept: not there
        await store.apply(ENSURE)
        assert graph.graph("u1") == GraphSettings("u1", "people", 2, "l2", ("bio",), False)
        with pytest.raises(ValueError):  # the second op is refused: the request, the ensure with it, is rolled back
            await store.apply_all([GraphEnsure("u3", "later"), EdgePut("u3", "a", "knows", "b", "sideways")])
        assert graph.graph("u3") is None
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                graph.graph("u2")

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for n in range(60):
                await store.apply(GraphEnsure("u2", "flip"))
                assert graph.graph("u2") == GraphSettings("u2", "flip", 0, "cosine", (), False), n
                await store.apply(GraphDrop("u2"))
                assert graph.graph("u2").dropped, n
        finally:
            stop.set()
            reader.join()
        assert rows_of(other).graph("u1") is None
        chunks, cursor = graph.snapshot_chunks(None, 1 << 20)
        assert cursor is None
        await other.install_chunks(chunks)
        assert rows_of(other).graph("u1") == graph.graph("u1")
    finally:
        await store.close()
        await other.close()


async def test_supported_edges_behind_their_support_are_listed_for_repair(store: ShardStore) -> None:
    """`stale_supports`: an edge whose out-half is missing, or committed and weighs
    other than its chunks; never a vertex's support, an edge in step, or one on its
    way (pending: the edge repair drives it)."""
    r = "RELATED"
    await store.apply_all([
        ENSURE,
        SupportChange("u1", "a", r, "b", added={"c1": "{}"}), EdgePut("u1", "a", r, "b", "both", "{}", 1.0),  # in step
        SupportChange("u1", "a", r, "c", added={"c1": "{}", "c2": "{}"}), EdgePut("u1", "a", r, "c", "out", "{}", 1.0, state="committed", token=2),  # behind
        SupportChange("u1", "a", r, "d", added={"c1": "{}"}),  # no edge
        SupportChange("u1", "a", r, "e", added={"c1": "{}", "c2": "{}"}), EdgePut("u1", "a", r, "e", "out", "{}", 1.0, state="pending", token=7),  # on its way
        SupportChange("u1", "a", "", "", added={"c1": "{}"}),  # a vertex's
    ])
    assert rows_of(store).stale_supports() == [("u1", ("a", r, k)) for k in ("c", "d")]
    assert len(rows_of(store).stale_supports(limit=1)) == 1


@pytest.mark.parametrize("at_once", [7, 300])
@pytest.mark.parametrize("seed", range(3))
async def test_a_read_of_many_edge_keys_finds_what_one_read_per_key_finds(
    tmp_path: Path, store: ShardStore, monkeypatch: pytest.MonkeyPatch, seed: int, at_once: int
) -> None:
    await store.apply_all(random_ops(random.Random(seed), 400))
    monkeypatch.setattr(graph_rows_module, "KEYS_AT_ONCE", at_once)
    graph = rows_of(store)
    keys = [(src, type, dst) for src in (*IDS, "nobody") for type in TYPES for dst in IDS]
    keys += keys[:10]  # asked twice
    for uid in UIDS:
        by_key = graph.edges_by_key(uid, keys)
        assert by_key == {k: row for k in keys if (row := graph.edge(uid, *k)) is not None}
        drops = graph.dropped_tokens(uid, keys)
        newest: dict[tuple[str, str, str], int] = {}
        for o_uid, kind, src, type, dst, token in graph_rows(tmp_path / "s")["g_outbox"]:
            if o_uid == uid and kind == "drop" and (src, type, dst) in keys:
                newest[(src, type, dst)] = max(token, newest.get((src, type, dst), 0))
        assert drops == newest
        assert by_key and drops  # the seeds leave edges and drop tasks to find
    assert graph.edges_by_key("u1", []) == {} and graph.dropped_tokens("u1", []) == {}


# ---------------------------------------------------------- crashes (SIGKILL)


async def test_rows_and_log_agree_after_kills_at_any_moment(tmp_path: Path, children: list) -> None:
    d = tmp_path / "s"
    acked: list[tuple[int, int]] = []
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.graph_store_child", str(d), str(round_)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        children.append(proc)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        wait_until(lambda: sum(line.startswith("ack") for line in lines) >= 30, 30, "batches acknowledged")
        proc.kill()
        proc.wait(10)
        reader.join(10)
        acked += [(int(a), int(b)) for a, b in (line.split()[1:] for line in lines if line.startswith("ack "))]
        store = open_store(d, create=False)
        try:
            log = store.read_log_encoded(0, max_ops=10**7, max_bytes=1 << 30)
            assert all(last <= store.last_seq() for _, last in acked)  # nothing acknowledged is lost
        finally:
            await store.close()
        replay = open_store(tmp_path / f"replay{round_}")
        try:
            await replay.apply_encoded_at(log)
        finally:
            await replay.close()
        assert graph_rows(d) == graph_rows(tmp_path / f"replay{round_}")  # the rows are exactly the log's
    assert json.dumps(graph_rows(d), default=repr) != json.dumps({"g_graph": [], "g_vertex": [], "g_edge": [], "g_outbox": []})


@pytest.mark.parametrize("seed", range(4))
async def test_the_support_a_change_reads_is_its_count_and_the_chunks_it_names(store: ShardStore, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """`support_held` (what a change of a vertex's support reads: a count, and only the
    chunks the change names) agrees with `supports` (every chunk), and `size_after` over
    it with `after` over the whole support; in pages smaller than the keys and pairs."""
    rng = random.Random(seed)
    chunks = [f"c{i}" for i in range(40)]
    keys = [(src, "", "") for src in IDS] + [(src, "RELATED", dst) for src in IDS[:3] for dst in IDS[:3]]
    await store.apply_all([
        SupportChange("u1", *key, added={c: json.dumps({"n": rng.randint(1, 3)}) for c in rng.sample(chunks, rng.randint(0, 30))})
        for key in keys
    ])
    monkeypatch.setattr(graph_rows_module, "KEYS_AT_ONCE", 3)
    monkeypatch.setattr(graph_rows_module, "CHUNK_PAIRS_AT_ONCE", 5)
    graph = rows_of(store)
    everything = graph.supports("u1", keys)
    for _ in range(20):
        asked = rng.sample(keys, rng.randint(1, len(keys)))
        changes = {}
        for key in asked:
            named = rng.sample(chunks, rng.randint(0, 12))
            cut = rng.randint(0, len(named))
            changes[key] = ({c: "{}" for c in named[:cut]}, named[cut:])
        held = graph.support_held("u1", {key: [*added, *removed] for key, (added, removed) in changes.items()})
        assert set(held) == {key for key in asked if everything.get(key)}
        for key, (added, removed) in changes.items():
            current = everything.get(key, {})
            count, notes = held.get(key, (0, {}))
            assert count == len(current)
            assert notes == {c: current[c] for c in [*added, *removed] if c in current}
            assert support.size_after(count, notes, added, removed) == len(support.after(current, added, removed))
            assert support.change("u1", key, notes, added, removed) == support.change("u1", key, current, added, removed)
    assert graph.support_held("u9", {keys[0]: ["c1"]}) == {}
