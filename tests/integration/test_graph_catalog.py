"""The catalog of graphs on a real cluster (coordinator, nodes, gateway, nats-server):
create (201, 200, 409), list, delete, create again with a new uid, over REST and
the NATS API alike; and what the gateway refuses before any node is asked
(unknown graph, a wrong vector size, hop counts, ids, a property document or an
import over the limit)."""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

import nats
import pytest

from tests.support.processes import wait_until

JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def listed(c) -> list[str]:
    status, body = c.json("GET", "/graphs")
    return [g["name"] for g in body["graphs"]] if status == 200 else []


def test_create_is_201_then_200_with_the_same_settings_and_409_with_others(shared_cluster):
    c = shared_cluster
    settings = {"vector_dim": 3, "metric": "cosine", "text_properties": ["text", "title"]}
    status, created = c.json("PUT", "/graphs/cat-docs", settings)
    assert status == 201, created
    assert created["created"] is True and created["name"] == "cat-docs" and created["vector_dim"] == 3
    assert created["text_properties"] == ["text", "title"] and created["uid"]
    status, again = c.json("PUT", "/graphs/cat-docs", {"text_properties": ["title", "text"], "vector_dim": 3})
    assert status == 200 and again["created"] is False and again["uid"] == created["uid"], again
    status, refused = c.json("PUT", "/graphs/cat-docs", {"vector_dim": 4})
    assert status == 409 and refused["error"]["code"] == "conflict"
    assert "vector_dim 3, not 4" in refused["error"]["message"]
    # every setting optional, the body too
    status, bare = c.request("PUT", "/graphs/cat-bare")[:2]
    assert status == 201 and json.loads(bare)["vector_dim"] == 0 and json.loads(bare)["metric"] == "cosine"
    wait_until(lambda: {"cat-docs", "cat-bare"} <= set(listed(c)), 10, "the graphs listed")
    assert listed(c) == sorted(listed(c))


@pytest.mark.parametrize(
    "path,body,words",
    [
        ("/graphs/a%20b", {}, "graph must be"),
        ("/graphs/" + "x" * 65, {}, "graph must be"),
        ("/graphs/ok", {"vector_dim": -1}, "vector_dim"),
        ("/graphs/ok", {"vector_dim": 5000}, "vector_dim"),
        ("/graphs/ok", {"metric": "dot"}, "metric"),
        ("/graphs/ok", {"text_properties": ["a b"]}, "text_properties"),
        ("/graphs/ok", {"dims": 3}, "unknown field"),
    ],
)
def test_bad_settings_are_400_and_create_nothing(shared_cluster, path, body, words):
    status, refused = shared_cluster.json("PUT", path, body)
    assert status == 400 and words in refused["error"]["message"], refused
    assert "ok" not in listed(shared_cluster)


def test_delete_is_idempotent_and_a_graph_created_again_is_a_new_one(shared_cluster):
    c = shared_cluster
    status, first = c.json("PUT", "/graphs/cat-again", {})
    assert status == 201
    assert c.request("DELETE", "/graphs/cat-again")[0] == 204
    status, gone = c.json("PUT", "/graphs/cat-again/vertices/a", {"label": "x"})
    assert status == 404 and gone["error"]["code"] == "not_found" and "cat-again" in gone["error"]["message"]
    assert c.request("DELETE", "/graphs/cat-again")[0] == 204  # again: nothing there, still 204
    wait_until(lambda: "cat-again" not in listed(c), 10, "the graph gone from the list")
    status, second = c.json("PUT", "/graphs/cat-again", {"vector_dim": 8})  # other settings: fine, it is a new graph
    assert status == 201 and second["uid"] != first["uid"] and second["vector_dim"] == 8


async def test_the_nats_api_creates_lists_and_refuses_alike(shared_cluster):
    c = shared_cluster
    nc = await nats.connect(c.nats_url)

    async def ask(subject: str, body: dict) -> tuple[dict, dict]:
        msg = await nc.request(f"torua.api.{subject}", json.dumps(body).encode(), timeout=10, headers=JSON)
        return json.loads(msg.data), msg.headers or {}

    try:
        created, _ = await ask("graph.create", {"graph": "cat-nats", "vector_dim": 2, "metric": "l2"})
        assert created["created"] is True and created["metric"] == "l2"
        again, _ = await ask("graph.create", {"graph": "cat-nats", "vector_dim": 2, "metric": "l2"})
        assert again["created"] is False and again["uid"] == created["uid"]
        refused, headers = await ask("graph.create", {"graph": "cat-nats"})
        assert refused["error"]["code"] == "conflict" and headers.get("Nats-Service-Error-Code") == "409"
        # the REST API sees what the NATS API made, and the other way round
        assert c.json("PUT", "/graphs/cat-nats", {"vector_dim": 2, "metric": "l2"})[0] == 200
        seen = wait_until(lambda: (lambda names: "cat-nats" in names and names)(listed(c)), 10, "listed over REST")
        graphs, _ = await ask("graph.list", {})
        assert "cat-nats" in [g["name"] for g in graphs["graphs"]] and seen
        unknown, headers = await ask("graph.vertex.get", {"graph": "cat-nowhere", "id": "a"})
        assert unknown["error"]["code"] == "not_found" and headers.get("Nats-Service-Error-Code") == "404"
        wrong, _ = await ask("graph.vertex.put", {"graph": "cat-nats", "id": "a", "label": "L", "embedding": [1, 2, 3]})
        assert wrong["error"]["code"] == "bad_request" and "embedding of 'a' has 3 numbers; graph vectors have 2" in wrong["error"]["message"]
        typo, _ = await ask("graph.traverse", {"graph": "cat-nats", "from": ["a"], "hops": 2})
        assert typo["error"]["code"] == "bad_request" and "unknown field" in typo["error"]["message"]
    finally:
        await nc.close()


@pytest.mark.parametrize(
    "method,path,body,status,words",
    [
        ("PUT", "/graphs/cat-nowhere/vertices/a", {"label": "L"}, 404, "graph cat-nowhere does not exist"),
        ("PUT", "/graphs/cat-checks/vertices/a", {"label": "x" * 257}, 400, "label must be"),
        ("POST", "/graphs/cat-nowhere/traverse", {"from": ["a"]}, 404, "does not exist"),
        ("GET", "/graphs/cat-nowhere/vertices/a", None, 404, "does not exist"),
        ("PUT", "/graphs/cat-checks/vertices/a", {"label": "L", "embedding": [1, 2]}, 400, "embedding of 'a' has 2 numbers; graph vectors have 3 (vector_dim)"),
        ("PUT", "/graphs/cat-checks/vertices/a", {"label": "L", "properties": {"t": "x" * 70000}}, 413, "properties of vertex 'a' are 70008 bytes of JSON; the limit is 65536"),
        ("PUT", "/graphs/cat-checks/vertices/a%00b", {}, 400, "id must not contain NUL"),
        ("PUT", "/graphs/cat-checks/vertices/" + "x" * 1025, {}, 400, "id is 1025 bytes"),
        ("PUT", "/graphs/cat-checks/edges", {"src": "a", "type": "", "dst": "b"}, 400, "type must"),
        ("PUT", "/graphs/cat-checks/edges", {"src": "a", "type": "t"}, 400, "dst is required"),
        ("POST", "/graphs/cat-checks/traverse", {"from": ["a"], "max_hops": 7}, 400, "max_hops must be an integer from 1 to 6"),
        ("POST", "/graphs/cat-checks/traverse", {"from": ["a"], "max_hops": 0}, 400, "max_hops must be an integer from 1 to 6"),
        ("POST", "/graphs/cat-checks/traverse", {"from": ["a"], "limit": 0}, 400, "limit must be"),
        ("POST", "/graphs/cat-checks/traverse", {"from": [], "max_hops": 2}, 400, "from must be a list of 1 to 1000 vertex ids"),
        ("POST", "/graphs/cat-checks/traverse", {"from": ["a"], "direction": "up"}, 400, "direction must be out, in or both"),
        ("GET", "/graphs/cat-checks/vertices/a/edges?direction=sideways", None, 400, "direction must be out, in or both"),
        ("GET", "/graphs/cat-checks/vertices/a/edges?limit=0", None, 400, "limit must be"),
        ("POST", "/graphs/cat-checks/shortest-path", {"from": "a", "to": "b", "max_hops": 9}, 400, "max_hops"),
        ("POST", "/graphs/cat-checks/search/vector", {"vector": [1, 2]}, 400, "vector has 2 numbers"),
        ("POST", "/graphs/cat-checks/search/vector", {"vector": [1, 2, 3], "k": 0}, 400, "k must be"),
        ("POST", "/graphs/cat-checks/search/text", {"query": "x"}, 400, "no text_properties"),
        ("POST", "/graphs/cat-checks/cypher", {"query": ""}, 400, "query must be"),
        ("DELETE", "/graphs/cat-checks/edges?src=a&dst=b", None, 400, "type is required"),
    ],
)
def test_what_the_gateway_refuses_before_asking_a_node(shared_cluster, method, path, body, status, words):
    c = shared_cluster
    assert c.json("PUT", "/graphs/cat-checks", {"vector_dim": 3})[0] in (200, 201)
    got, answer = c.json(method, path, body)
    assert got == status and words in answer["error"]["message"], answer


def test_an_import_says_what_it_is_and_its_size_up_front(shared_cluster):
    c = shared_cluster
    assert c.json("PUT", "/graphs/cat-import", {})[0] in (200, 201)
    status, raw, _ = c.request("POST", "/graphs/cat-import/import", b'{"vertex": {"id": "a"}}\n', {"Content-Type": "text/plain"})
    assert status == 415 and b"application/x-ndjson" in raw
    status, raw, _ = c.request("POST", "/graphs/cat-nowhere/import", b'{"vertex": {"id": "a"}}\n', NDJSON)
    assert status == 404
    # a body announced over --max-import-bytes is refused before it is sent
    with socket.create_connection(("127.0.0.1", c.http_port), timeout=10) as s:
        s.sendall(
            b"POST /graphs/cat-import/import HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: 999999999\r\nConnection: close\r\n\r\n"
        )
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413") and b"the limit is 16777216 bytes" in answer, answer[:300]


def test_a_vertex_id_is_read_from_the_raw_path_like_a_key(shared_cluster):
    """(Routing only: an id with slashes, a '?', a '#' or a newline reaches the graph's rules whole.)"""
    c = shared_cluster
    assert c.json("PUT", "/graphs/cat-ids", {})[0] in (200, 201)
    too_big = {"label": "L", "properties": {"t": "x" * 70000}}
    for vid in ["a/b/c", "数字", "x?y", "x#y", "two\nlines", "a/edges"]:
        status, answer = c.json("PUT", "/graphs/cat-ids/vertices/" + quote(vid, safe=""), too_big)
        assert status == 413 and f"properties of vertex {vid!r}" in answer["error"]["message"], (vid, answer)
    # slashes sent raw are the id's too
    status, answer = c.json("PUT", "/graphs/cat-ids/vertices/a/b/c", too_big)
    assert status == 413 and "properties of vertex 'a/b/c'" in answer["error"]["message"], answer
