"""What graph data may be (torua.graph.rules), the catalog's entries and what a create
answers (torua.graph.catalog), and an import's lines and batches (torua.graph.imports):
tables of cases."""

from __future__ import annotations

import json

import pytest

from torua.graph import rules
from torua.graph.catalog import CatalogEntry, GraphSettings, conflict_message, new_entry, on_create
from torua.graph.imports import ImportOutcome, ImportParser, LineSplitter, batches, split_lines
from torua.kv_rules import shard_for_key
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EdgeData, GraphRef, ImportProblem, VertexData
from torua.protocol.vocabulary import VectorMetric


@pytest.mark.parametrize("name,ok", [("g", True), ("a-B_9", True), ("x" * 64, True), ("x" * 65, False), ("", False), ("a b", False),
                                     ("a/b", False), ("ü", False), (3, False), (None, False)])
def test_graph_names(name, ok):
    if ok:
        assert rules.validate_graph_name(name) == name
    else:
        with pytest.raises(ToruaError) as refused:
            rules.validate_graph_name(name)
        assert refused.value.code == "bad_request"


@pytest.mark.parametrize(
    "vid,error",
    [("a", None), ("a/b c/数字", None), ("🚀" * 256, None), ("x" * 1024, None), ("x" * 1025, "1025 bytes"), ("", "must not be empty"),
     ("a\x00b", "NUL"), (7, "must be a string"), ("\ud800", "UTF-8")],
)
def test_vertex_ids_follow_the_key_rules(vid, error):
    if error is None:
        assert rules.validate_vertex_id(vid) == vid
    else:
        with pytest.raises(ToruaError, match=error):
            rules.validate_vertex_id(vid)


@pytest.mark.parametrize("vector", [[0.5, -2.0], [1, 2.5], [1e308, 1e308], [-1e308, -1e308]])
def test_vectors_of_finite_numbers_are_taken_as_floats(vector):
    """Whether checked in one pass (floats with a finite sum) or the long way (ints;
    finite numbers whose sum overflows)."""
    assert rules.validate_vector(vector, 2, "v") == [float(x) for x in vector]


def test_a_vertex_lives_in_the_shard_of_its_graph_and_id():
    for vid in ["a", "a/b", "数字"]:
        assert rules.vertex_shard("people", vid, 16) == shard_for_key(f"people/{vid}", 16)


@pytest.mark.parametrize(
    "call,code,words",
    [
        (lambda: rules.vertex("v", "L", {"text": "x" * rules.MAX_PROPERTIES_BYTES}, None, 0), "value_too_large", "properties of vertex 'v'"),
        (lambda: rules.vertex("v", "L", [1], None, 0), "bad_request", "JSON object"),
        (lambda: rules.vertex("v", "L", {}, [1.0, 2.0], 3), "bad_request", "has 2 numbers; graph vectors have 3"),
        (lambda: rules.vertex("v", "L", {}, [1.0, 2.0], 0), "bad_request", "no vectors"),
        (lambda: rules.vertex("v", "L", {}, [1.0, "x"], 2), "bad_request", "list of numbers"),
        (lambda: rules.vertex("v", "L", {}, [True, 1], 2), "bad_request", "list of numbers"),
        (lambda: rules.vertex("v", "L", {}, [1.0, float("nan")], 2), "bad_request", "finite numbers only"),
        (lambda: rules.vertex("v", "L", {}, [float("-inf"), 1.0], 2), "bad_request", "finite numbers only"),
        (lambda: rules.vertex("v", "x" * 257, {}, None, 0), "bad_request", "label must be at most 256"),
        (lambda: rules.vertex("v", "a\nb", {}, None, 0), "bad_request", "printable"),
        (lambda: rules.edge("a", "", "b"), "bad_request", "type must not be empty"),
        (lambda: rules.edge("a", "t", ""), "bad_request", "dst must not be empty"),
        (lambda: rules.edge("a", "t", "b", weight=float("nan")), "bad_request", "weight"),
        (lambda: rules.edge("a", "t", "b", weight="1"), "bad_request", "weight"),
        (lambda: rules.validate_hops(0), "bad_request", "1 to 6"),
        (lambda: rules.validate_hops(7), "bad_request", "1 to 6"),
        (lambda: rules.validate_direction("up"), "bad_request", "out, in or both"),
        (lambda: GraphSettings.checked(vector_dim=-1), "bad_request", "vector_dim"),
        (lambda: GraphSettings.checked(metric="dot"), "bad_request", "cosine or l2"),
        (lambda: GraphSettings.checked(text_properties=["a b"]), "bad_request", "property names"),
        (lambda: GraphSettings.checked(text_properties=["a", "a"]), "bad_request", "twice"),
    ],
)
def test_what_is_refused_and_how(call, code, words):
    with pytest.raises(ToruaError) as refused:
        call()
    assert refused.value.code == code and words in refused.value.message, refused.value.message


def test_what_is_taken():
    v = rules.vertex("v", None, None, [1, 2], 2)
    assert v == VertexData("v", "", {}, [1.0, 2.0])
    assert rules.edge("a", "t", "b", {"since": 2020}) == EdgeData("a", "t", "b", {"since": 2020}, 1.0)
    big_but_fits = {"text": "x" * (rules.MAX_PROPERTIES_BYTES - 20)}
    assert rules.validate_properties(big_but_fits, "v") is big_but_fits
    assert rules.validate_types(["b", "a", "b"]) == ["a", "b"]
    assert GraphSettings.checked(384, "l2", ["title", "text"]) == GraphSettings(384, VectorMetric.L2, ("text", "title"))


# ------------------------------------------------------------------ catalog


def test_a_create_answers_created_same_or_conflict():
    settings = GraphSettings(384, VectorMetric.COSINE, ("text",))
    entry = new_entry("docs", settings, "u1", now=1_800_000_000.0)
    assert on_create(None, settings) == "created"
    assert on_create(entry, GraphSettings.checked(384, "cosine", ["text"])) == "same"
    assert on_create(entry, GraphSettings(384, VectorMetric.L2, ("text",))) == "conflict"
    assert conflict_message(entry, GraphSettings(3, VectorMetric.COSINE, ("text",))) == (
        "graph docs exists with vector_dim 384, not 3; delete it first to change its settings"
    )


def test_a_catalog_entry_is_json_and_its_ref_goes_to_the_nodes():
    entry = new_entry("docs", GraphSettings(8, VectorMetric.L2, ("text",)), "u1", now=0.0)
    stored = json.loads(entry.to_json())
    assert stored == {"name": "docs", "uid": "u1", "vector_dim": 8, "metric": "l2", "text_properties": ["text"], "created_at": "1970-01-01T00:00:00+00:00"}
    assert CatalogEntry.from_json(entry.to_json()) == entry
    assert entry.ref() == GraphRef("docs", "u1", 8, VectorMetric.L2, ["text"])
    for garbage in [b"", b"[]", b'{"name": "docs"}', b'{"name": "a b", "uid": "u"}', b'{"name": "d", "uid": "u", "metric": "dot"}', b"\xff"]:
        with pytest.raises(ToruaError):
            CatalogEntry.from_json(garbage)


# ------------------------------------------------------------------ imports


def test_lines_are_numbered_however_the_body_is_cut():
    body = b'{"vertex": {"id": "a"}}\n\n{"vertex": {"id": "b"}}\r\nlast'
    whole = list(split_lines(body))
    for cut in range(len(body) + 1):
        splitter = LineSplitter()
        pieces = list(splitter.feed(body[:cut])) + list(splitter.feed(body[cut:])) + list(splitter.finish())
        assert pieces == whole
    assert [n for n, _ in whole] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "line,error",
    [
        (b'{"vertex": {"id": "a", "label": "L", "properties": {"x": 1}, "embedding": [1, 2]}}', None),
        (b'{"edge": {"src": "a", "type": "t", "dst": "b", "weight": 2, "properties": {}}}', None),
        (b"not json", "the line is not valid JSON"),
        (b'{"vertex": {"id": "a"}, "edge": {}}', 'a line must be {"vertex": {...}} or {"edge": {...}}'),
        (b'{"node": {"id": "a"}}', 'a line must be'),
        (b"[1]", "a line must be"),
        (b'{"vertex": 3}', "vertex must be an object"),
        (b'{"vertex": {"id": "a", "lable": "x"}}', "unknown field(s) lable of vertex"),
        (b'{"vertex": {"id": ""}}', "id must not be empty"),
        (b'{"vertex": {"id": "a", "embedding": [1]}}', "has 1 numbers; graph vectors have 2"),
        (b'{"edge": {"src": "a", "dst": "b"}}', "type must be a string"),
        (b'{"vertex": {"id": "a", "properties": {"x": 1e999}}}', "finite"),
        (('{"vertex": {"id": "a", "properties": {"t": "%s"}}}' % ("x" * 70000)).encode(), "the limit is 65536"),
    ],
)
def test_an_import_line(line, error):
    parsed = ImportParser(vector_dim=2)
    parsed.feed(7, line)
    if error is None:
        assert len(parsed.vertices) + len(parsed.edges) == 1 and not parsed.errors
        assert (parsed.vertices or parsed.edges)[0][0] == 7
    else:
        assert not parsed.vertices and not parsed.edges
        assert parsed.errors[0][0] == 7 and error in parsed.errors[0][1], parsed.errors


def test_batches_per_shard_bounded_by_lines_and_bytes():
    items = [(n, f"v{n % 3}", 10) for n in range(1, 11)]
    cut = batches(items, lambda v: int(v[1]), max_lines=2)
    assert [(b.shard, [n for n, _, _ in b.items]) for b in cut] == [
        (0, [3, 6]), (0, [9]), (1, [1, 4]), (1, [7, 10]), (2, [2, 5]), (2, [8])
    ]
    by_bytes = batches(items, lambda v: 0, max_bytes=25)
    assert [len(b.items) for b in by_bytes] == [2, 2, 2, 2, 2]
    huge = batches([(1, "a", 100), (2, "b", 1)], lambda v: 0, max_bytes=10)
    assert [len(b.items) for b in huge] == [1, 1]  # a line bigger than a batch goes alone


def test_node_problems_go_back_to_their_lines():
    parsed = ImportParser(vector_dim=0)
    for n, line in enumerate([b'{"vertex": {"id": "a"}}', b"oops", b'{"vertex": {"id": "b"}}', b'{"edge": {"src": "a", "type": "t", "dst": "zz"}}'], 1):
        parsed.feed(n, line)
    outcome = ImportOutcome(errors=list(parsed.errors))
    (vbatch,) = batches(parsed.vertices, lambda v: 0)
    (ebatch,) = batches(parsed.edges, lambda e: 0)
    outcome.applied(vbatch, "vertex", [])
    outcome.applied(ebatch, "edge", [ImportProblem("edge", 0, "not_found", "dst 'zz' does not exist")])
    assert outcome.view() == {
        "vertices": 2, "edges": 0,
        "errors": [{"line": 2, "error": "the line is not valid JSON"}, {"line": 4, "error": "dst 'zz' does not exist"}],
    }
    outcome.failed(vbatch, "shard 0 is unavailable")
    assert [e["line"] for e in outcome.view()["errors"]] == [1, 2, 3, 4]
