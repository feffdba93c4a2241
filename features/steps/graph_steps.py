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


# ------------------------------------------------------------------ searches, Cypher, the NATS API


@when('{count:d} vertices labelled "{label}" with the embedding {embedding} are imported into "{graph}"')
def step_import_fillers(context, count, label, graph, embedding):
    """One import of many vertices: on each shard a batch large enough to leave the
    graph index behind (it catches up lazily), so a search right after must wait for it."""
    vector = json.loads(embedding)
    lines = "".join(json.dumps({"vertex": {"id": f"{label.lower()}/{i}", "label": label, "embedding": vector}}) + "\n" for i in range(count))
    answer = ok(send(context, "POST", f"/graphs/{graph}/import", lines.encode(), NDJSON), 200)
    assert answer["vertices"] == count and not answer["errors"], answer


@then("the hits, best first, are")
def step_hits(context):
    """Each hit with id, label, score (to 3 decimals) and properties; the scores falling."""
    hits = ok(context.response, 200)["hits"]
    for hit in hits:
        assert set(hit) == {"id", "label", "score", "properties"}, hit
    got = [(h["id"], h["label"], f"{h['score']:.3f}", h["properties"]) for h in hits]
    assert got == [(row["id"], row["label"], row["score"], json.loads(row["properties"])) for row in context.table], f"hits: {hits}"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True), hits


@then('the hits are "{ids}", best first')
def step_hits_ids(context, ids):
    hits = ok(context.response, 200)["hits"]
    assert [h["id"] for h in hits] == [i.strip() for i in ids.split(",")], hits
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True), hits


@then('the vertices "{ids}" of "{graph}" are on {count:d} different shards')
def step_on_shards(context, ids, graph, count):
    """The shard of vertex `id` of graph `g` is the key "g/id"'s (GET /keys/{key}/location)."""
    shards = {shard_of(context, graph, i.strip()) for i in ids.split(",")}
    assert len(shards) == count, shards


def shard_of(context, graph: str, vid: str) -> int:
    return context.gateway.get_json(f"/keys/{quote(f'{graph}/{vid}', safe='/')}/location")["shard_id"]


@then('the Cypher rows are "{values}", each from the shard of its first vertex in "{graph}"')
def step_cypher_rows(context, values, graph):
    """Rows as "ada V; grace V" (values split on spaces); each row's shard holds its first value."""
    answer = ok(context.response, 200)
    assert set(answer) == {"columns", "rows", "truncated"} and answer["truncated"] is False, answer
    got = sorted(tuple(str(v) for v in row["values"]) for row in answer["rows"])
    assert got == sorted(tuple(r.split()) for r in values.split(";")), answer
    for row in answer["rows"]:
        assert row["shard"] == shard_of(context, graph, row["values"][0]), row


@then('the Cypher rows are "{values}", each edge from the shards of both its ends in "{graph}"')
def step_cypher_edge_rows(context, values, graph):
    """Rows "src type dst": an edge whose ends are on two shards comes from each of them."""
    answer = ok(context.response, 200)
    got = sorted((tuple(str(v) for v in row["values"]), row["shard"]) for row in answer["rows"])
    expected = sorted({(tuple(r.split()), shard_of(context, graph, end)) for r in values.split(";") for end in (r.split()[0], r.split()[2])})
    assert got == expected, answer


@when('I PUT the vertex "{vid}" of "{graph}" with properties of {size:d} bytes')
def step_put_big(context, vid, graph, size):
    send(context, "PUT", vertex_path(graph, vid), {"label": "Big", "properties": {"text": "x" * (size - len('{"text":""}'))}})


def nats_request(context, subject: str, body: dict) -> Any:
    """A JSON request on the gateways' NATS API, as a Response: the status is the
    Nats-Service-Error-Code header of an error, 200 otherwise."""
    from email.message import Message

    from torua_bdd import Response, with_nats

    async def ask(nc):
        headers = {"Content-Type": "application/json", **context.cluster.gateway.auth}
        return await nc.request(subject, json.dumps(body).encode(), timeout=10, headers=headers)

    msg = with_nats(context.cluster.nats_url, ask, timeout=15, role="client")
    status = int((msg.headers or {}).get("Nats-Service-Error-Code", 200))
    context.response = Response(status, msg.data, Message())
    return context.response


@when('I request "{subject}" on the NATS API with')
def step_nats(context, subject):
    nats_request(context, subject, json.loads(context.text))
