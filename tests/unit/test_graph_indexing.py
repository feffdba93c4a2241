"""The graph index's pure rules, as tables: which edge rows are visible, how halves
and states change, a vertex's text and embedding, Kuzu's query terms and IDF, the
catch-up plan, and the Cypher gate."""

from __future__ import annotations

import pytest

from torua.graph.cypher_gate import CypherRefused, map_labels, plan_refusal
from torua.graph.indexing import (
    apply_now,
    edge_visible,
    embedding_of,
    halves_after_delete,
    halves_after_put,
    idf,
    plan_catch_up,
    query_terms,
    state_after,
    vertex_text,
)

VISIBLE = [
    ("out", "pending", False),
    ("out", "removing", False),
    ("out", "committed", True),
    ("in", "", True),
    ("in", "pending", True),
    ("both", "pending", True),
    ("both", "committed", True),
]


@pytest.mark.parametrize("halves,state,visible", VISIBLE)
def test_visible_rows_hold_the_in_half_or_a_committed_out_half(halves, state, visible):
    assert edge_visible(halves, state) is visible


HALVES = [
    # before, put, after put, removed, after delete
    ("", "out", "out", "out", ""),
    ("", "both", "both", "in", "out"),
    ("in", "out", "both", "both", ""),
    ("out", "out", "out", "in", "out"),
    ("both", "in", "both", "out", "in"),
]


@pytest.mark.parametrize("before,put,after_put,removed,after_delete", HALVES)
def test_halves_are_a_set_of_out_and_in(before, put, after_put, removed, after_delete):
    assert halves_after_put(before, put) == after_put
    assert halves_after_delete(after_put, removed) == after_delete


STATES = [
    # halves after, state before, put halves, put state, state after
    ("out", "", "out", "pending", "pending"),
    ("both", "pending", "in", "committed", "pending"),  # an in-half put leaves the out-half's state
    ("both", "pending", "both", "committed", "committed"),
    ("in", "", "in", "committed", ""),  # no out-half, no state
]


@pytest.mark.parametrize("halves,before,put,put_state,after", STATES)
def test_the_state_is_the_out_halfs(halves, before, put, put_state, after):
    assert state_after(halves, before, put, put_state) == after


TEXTS = [
    ('{"title": "Fox", "body": "runs"}', ["title", "body"], "Fox runs"),
    ('{"title": "Fox", "body": 3}', ["title", "body"], "Fox 3"),
    ('{"title": ["x"], "body": true}', ["title", "body"], None),
    ('{"title": "42 !"}', ["title"], None),  # no word Kuzu indexes: no document
    ('{"title": "Fox"}', [], None),
    ("not json", ["title"], None),
    ("[1]", ["title"], None),
]


@pytest.mark.parametrize("props,names,text", TEXTS)
def test_vertex_text(props, names, text):
    assert vertex_text(props, names) == text


EMBEDDINGS = [
    ([1, 2], 2, [1.0, 2.0]),
    ([1.0], 2, None),
    (None, 2, None),
    ([1.0, 2.0], 0, None),
    ([float("nan"), 1.0], 2, None),
    (b"\x00\x00\x80\x3f\x00\x00\x00\x40", 2, [1.0, 2.0]),
    (b"\x00", 2, None),
    (b"\x00\x00\x80\x7f\x00\x00\x00\x40", 2, None),  # +inf
    ([1, None], 2, None),
    (["1.5", 2], 2, [1.5, 2.0]),
    ([[1.0], [2.0]], 2, None),
    ("ab", 2, None),
]


@pytest.mark.parametrize("embedding,dim,expected", EMBEDDINGS)
def test_embedding_of(embedding, dim, expected):
    assert embedding_of(embedding, dim) == expected


@pytest.mark.parametrize("query,terms", [
    ("The quick-brown FOX!", ["the", "quick", "brown", "fox"]),
    ("fox fox Fox", ["fox"]),
    ("über 3d naïve", ["über", "d", "naïve"]),
    ("a\\b", ["a\\b"]),  # a backslash is no separator to Kuzu
    ("", []),
])
def test_query_terms_split_like_kuzu(query, terms):
    assert query_terms(query) == terms


def test_idf_is_kuzus_log10_bm25():
    assert idf(3, 2) == pytest.approx(0.204120, abs=1e-6)  # Kuzu scored "fox" in "the fox" 0.244057 = this * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / 5))
    assert idf(1000, 1) > idf(1000, 10) > 0


PLANS = [
    # applied, committed, log base, gap, rows, vectors, must, how (gap vectors: 0)
    (10, 10, 0, 0, 100, 0, "", "current"),
    (None, 10, 0, 0, 0, 0, "", "rebuild"),
    (12, 10, 0, 0, 0, 0, "", "rebuild"),  # ahead of the rows
    (3, 10, 5, 0, 0, 0, "", "rebuild"),  # the log no longer holds the gap
    (8, 10, 0, 2, 10**6, 0, "", "replay"),
    (8, 10, 0, 2, 10**6, 0, "risky", "rebuild"),
    (0, 100000, 0, 100000, 1000, 0, "", "rebuild"),  # a long replay of a small graph
    (0, 100000, 0, 100000, 10**6, 10**5, "", "replay"),  # many vectors make a rebuild slow
]


@pytest.mark.parametrize("applied,committed,base,gap,rows,vectors,must,how", PLANS)
def test_plan_catch_up(applied, committed, base, gap, rows, vectors, must, how):
    plan = plan_catch_up(applied=applied, committed=committed, log_base=base, gap_ops=gap, rows=rows, vectors=vectors, must_rebuild=must)
    assert plan.how == how and (plan.reason or how == "current")


VECTOR_PLANS = [
    # gap ops (after an import), of which embeddings; rows and vectors a rebuild copies (the gap's included); how
    (100, 0, 100, 0, "replay"),  # a hundred vertices without vectors: replay
    (190, 190, 190, 190, "rebuild"),  # an import of 190 vertices with embeddings into a new graph
    (1000, 1000, 1000, 1000, "rebuild"),
    (20, 20, 10**5, 10**5, "replay"),  # a few vectors more in a large graph: replay
]


@pytest.mark.parametrize("gap,gap_vectors,rows,vectors,how", VECTOR_PLANS)
def test_plan_catch_up_counts_what_replaying_embeddings_costs(gap, gap_vectors, rows, vectors, how):
    plan = plan_catch_up(applied=5, committed=5 + gap, log_base=0, gap_ops=gap, rows=rows, vectors=vectors, gap_vectors=gap_vectors)
    assert plan.how == how, plan


NAMES = {"Vertex": "V_3", "Edge": "E_3", "Embedding": "Emb_3"}


def reserved(name: str) -> bool:
    return name.lower() in ("v_1", "v_3", "e_3", "indexmeta")


MAPPED = [
    ("MATCH (v:Vertex)-[e:Edge]->(w:Vertex) RETURN v", "MATCH (v:V_3)-[e:E_3]->(w:V_3) RETURN v"),
    ("MATCH (v : vertex)-[:EDGE|Edge*1..2]-(w) RETURN w", "MATCH (v : V_3)-[:E_3|E_3*1..2]-(w) RETURN w"),
    ("MATCH (v:`Vertex`) RETURN 'a:Vertex', \"(:Edge)\"", "MATCH (v:V_3) RETURN 'a:Vertex', \"(:Edge)\""),
    ("MATCH (v:Vertex) // :Edge\nRETURN v.id AS Vertex", "MATCH (v:V_3) // :Edge\nRETURN v.id AS Vertex"),
    ("MATCH (x:Embedding) RETURN x.id", "MATCH (x:Emb_3) RETURN x.id"),
    ("RETURN 'it''s' AS s, {k: 1} AS m", "RETURN 'it''s' AS s, {k: 1} AS m"),
]


@pytest.mark.parametrize("query,mapped", MAPPED)
def test_public_labels_become_the_graphs_tables(query, mapped):
    assert map_labels(query, NAMES, reserved) == mapped


@pytest.mark.parametrize("query", [
    "MATCH (v:V_1) RETURN v",
    "MATCH (v:`v_1`) RETURN v",
    "MATCH (v:Vertex) RETURN v UNION MATCH (w:E_3) RETURN w",
    "MATCH (IndexMeta:Vertex) RETURN 1",
    "RETURN 'open",
    "RETURN `open",
])
def test_names_of_the_index_itself_are_refused(query):
    with pytest.raises(CypherRefused):
        map_labels(query, NAMES, reserved)


def box(*lines: str) -> str:
    return "\n".join(f"│ {line} │" for line in lines)


PLAN_CASES = [
    (box("RESULT_COLLECTOR[1]", "SCAN_NODE_TABLE[0]", "Tables: V_3"), None),
    (box("RESULT_COLLECTOR[1]", "INSERT[0]"), "refused: INSERT"),
    (box("RESULT_COLLECTOR[1]", "COPY_TO[0]"), "refused: COPY_TO"),
    (box("TABLE_FUNCTION_CALL[0]", "Function: QUERY_FTS_INDEX"), "refused: QUERY_FTS_INDEX"),
    (box("TABLE_FUNCTION_CALL[0]", "Function: READ_FTABLE"), None),
    (box("SCAN_NODE_TABLE[0]", "Tables: V_3", "V_4", "IndexMeta"), "without a label"),
    ("", "only queries that read"),
    (box("STANDALONE_CALL[0]"), "refused: STANDALONE_CALL"),
]


@pytest.mark.parametrize("plan,refusal", PLAN_CASES)
def test_plans_of_reads_of_the_graphs_own_tables_only(plan, refusal):
    got = plan_refusal(plan, {"V_3", "E_3"}, {"V_3", "E_3", "V_4", "IndexMeta"})
    assert (got is None) if refusal is None else (refusal in (got or ""))


@pytest.mark.parametrize(
    "batch, recent, lazy_ops, busy_ops, now",
    [
        (1, 0, 8, 24, True),  # a write on a quiet shard: the index stays current
        (8, 16, 8, 24, True),  # up to both limits
        (9, 0, 8, 24, False),  # a bulk batch (an import's)
        (1, 24, 8, 24, False),  # a busy shard (a GraphRAG ingest): left to the catch-up
        (0, 100, 8, 24, True),  # no ops (the writer moves applied_seq on)
    ],
)
def test_apply_now(batch: int, recent: int, lazy_ops: int, busy_ops: int, now: bool) -> None:
    assert apply_now(batch, recent, lazy_ops=lazy_ops, busy_ops=busy_ops) is now
