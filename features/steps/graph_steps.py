"""Steps for graphs (BRIEF section 8) through the gateway's REST API."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from behave import given, then, when

JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def send(context, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    context.response = context.gateway.request(method, path, data, headers if headers is not None else (JSON if data is not None else None))
    return context.response


def ok(resp, *statuses: int) -> Any:
    assert resp.status in statuses, f"expected {' or '.join(map(str, statuses))}, got {resp!r}"
    return resp.json()


def contains(got: Any, expected: Any, where: str = "") -> None:
    """Every field of `expected` is in `got` with that value (objects recursively, lists whole)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), f"{where or 'the answer'}: expected an object, got {got!r}"
        for name, value in expected.items():
            assert name in got, f"{where}.{name} missing from {got!r}"
            contains(got[name], value, f"{where}.{name}")
    else:
        assert got == expected, f"{where or 'the answer'}: expected {expected!r}, got {got!r}"


def vertex_path(graph: str, vid: str) -> str:
    return f"/graphs/{graph}/vertices/{quote(vid, safe='')}"


def triples(text: str) -> list[tuple[str, str, str]]:
    """"a knows b, c cites d" -> [("a", "knows", "b"), ("c", "cites", "d")]; "none" -> []."""
    if text.strip() == "none":
        return []
    return [tuple(part.split()) for part in text.split(",")]  # type: ignore[misc]


def wait_for(check, seconds: float, what: str):
    deadline, last = time.monotonic() + seconds, None
    while True:
        try:
            return check()
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} within {seconds:g}s: {last}")
        time.sleep(0.2)


# ------------------------------------------------------------------ givens


@given('the empty graph "{graph}"')
def step_graph(context, graph):
    ok(send(context, "PUT", f"/graphs/{graph}", {}), 200, 201)


@given('the graph "{graph}" with vectors of {dim:d}')
def step_graph_vectors(context, graph, dim):
    ok(send(context, "PUT", f"/graphs/{graph}", {"vector_dim": dim}), 200, 201)


@given('the graph "{graph}" with vertices "{ids}"')
def step_graph_vertices(context, graph, ids):
    step_graph(context, graph)
    for vid in (i.strip() for i in ids.split(",")):
        ok(send(context, "PUT", vertex_path(graph, vid), {"label": "V"}), 200, 201)


@given('the edges of "{graph}": "{edges}"')
def step_edges(context, graph, edges):
    for src, edge_type, dst in triples(edges):
        ok(send(context, "PUT", f"/graphs/{graph}/edges", {"src": src, "type": edge_type, "dst": dst}), 200, 201)


@given('the graph "{graph}" with the edges "{edges}"')
def step_graph_edges(context, graph, edges):
    ids = sorted({x for src, _, dst in triples(edges) for x in (src, dst)})
    step_graph_vertices(context, graph, ", ".join(ids))
    step_edges(context, graph, edges)


# ------------------------------------------------------------------ requests


@when('I {method:w} "{path}" with')
def step_send_json(context, method, path):
    send(context, method, path, json.loads(context.text))


@when('I {method:w} "{path}"')
def step_send(context, method, path):
    send(context, method, path)


@when('I import into "{graph}"')
def step_import(context, graph):
    context.imported = (graph, context.text.encode() + b"\n")
    send(context, "POST", f"/graphs/{graph}/import", context.imported[1], NDJSON)


@when('I import the same lines into "{graph}" again')
def step_import_again(context, graph):
    send(context, "POST", f"/graphs/{graph}/import", context.imported[1], NDJSON)


# ------------------------------------------------------------------ answers


@then("the answer is {status:d}")
def step_answer_status(context, status):
    assert context.response.status == status, f"expected {status}, got {context.response!r}"


@then("the answer is {status:d} with")
def step_answer_with(context, status):
    contains(ok(context.response, status), json.loads(context.text))


@then('the answer is {status:d} with error code "{code}"')
def step_answer_error(context, status, code):
    assert context.response.status == status and context.response.error_code() == code, f"expected {status} {code}, got {context.response!r}"


@then('the error message names "{words}"')
def step_error_names(context, words):
    message = context.response.json()["error"]["message"]
    assert words in message, f"{words!r} not in {message!r}"


@then('"/graphs" lists the graph "{graph}"')
def step_lists(context, graph):
    wait_for(lambda: contains(graph in [g["name"] for g in context.gateway.get_json("/graphs")["graphs"]], True), 10, f"{graph} listed")


@then('the import names the lines {lines} as not applied')
def step_import_errors(context, lines):
    errors = ok(context.response, 200)["errors"]
    assert [e["line"] for e in errors] == [int(n) for n in lines.split(",")], errors


@then('the graph "{graph}" counts {vertices:d} vertices and {edges:d} edges')
def step_counts(context, graph, vertices, edges):
    counts = context.gateway.get_json(f"/graphs/{graph}")["counts"]
    assert counts["vertices"] == vertices and counts["edges"] == edges, counts


def listed_edges(context, vid: str, graph: str, direction: str) -> list[tuple[str, str, str]]:
    page = ok(context.gateway.request("GET", vertex_path(graph, vid) + f"/edges?direction={direction}&limit=1000"), 200)
    return sorted((e["src"], e["type"], e["dst"]) for e in page["edges"])


@then('the edges of "{vid}" in "{graph}" going "{direction}" are "{edges}"')
def step_edges_are(context, vid, graph, direction, edges):
    got = listed_edges(context, vid, graph, direction)
    assert got == sorted(triples(edges)), got


@then('the edges of "{vid}" in "{graph}" going "{direction}" become "{edges}"')
def step_edges_become(context, vid, graph, direction, edges):
    """(Edges on other shards go by the deleting shard's outbox, a moment later.)"""
    wait_for(lambda: contains(listed_edges(context, vid, graph, direction), sorted(triples(edges))), 15, f"the edges of {vid}")


def reached(answer: dict) -> list[tuple[str, int]]:
    return [(v["id"], v["hops"]) for v in answer["vertices"]]


def expected_reach(text: str) -> list[tuple[str, int]]:
    pairs = [part.strip().split(":") for part in text.split(",")]
    return sorted(((vid, int(hops)) for vid, hops in pairs), key=lambda p: (p[1], p[0]))


@then('the traversal reaches "{vertices}" and is {truncated}')
def step_traversal(context, vertices, truncated):
    answer = ok(context.response, 200)
    assert reached(answer) == expected_reach(vertices), answer
    assert answer["truncated"] is (truncated == "truncated"), answer
    ids = {v["id"] for v in answer["vertices"]}
    assert all(e["src"] in ids and e["dst"] in ids for e in answer.get("edges", [])), answer


@then('the traversal from "{seed}" in "{graph}" reaches "{vertices}" within the deadline')
def step_traversal_after_failover(context, seed, graph, vertices):
    """Shards of a killed node fail over to their replicas; the gateway retries within its deadline."""

    def check():
        answer = ok(send(context, "POST", f"/graphs/{graph}/traverse", {"from": [seed], "max_hops": 6}), 200)
        assert reached(answer) == expected_reach(vertices) and not answer["truncated"], answer

    wait_for(check, 30, "the traversal")
