"""The REST API on a real cluster: every key shape, big values, listing, bad input."""

from __future__ import annotations

import json
import os
import threading
from urllib.parse import quote

import pytest

KEY_SHAPES = [
    "simple",
    "user@example.com",
    "path/to/resource",
    "key-with-spaces here",
    "数字",
    "very:long:key:with:many:colons:and:segments",
]


def data_path(key: str) -> str:
    return "/data/" + quote(key, safe="/")


@pytest.mark.parametrize("key", KEY_SHAPES)
def test_store_read_overwrite_delete_every_key_shape(shared_cluster, key):
    c = shared_cluster
    assert c.request("PUT", data_path(key), b"first", {"Content-Type": "text/plain"})[0] == 204
    status, body, headers = c.request("GET", data_path(key))
    assert (status, body) == (200, b"first")
    assert headers["Content-Type"].startswith("text/plain")
    assert c.request("PUT", data_path(key), b"second")[0] == 204
    assert c.request("GET", data_path(key))[1] == b"second"
    assert c.request("DELETE", data_path(key))[0] == 204
    status, body, _ = c.request("GET", data_path(key))
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"
    assert c.request("DELETE", data_path(key))[0] == 204  # idempotent


def test_missing_key_is_404_json(shared_cluster):
    status, body, headers = shared_cluster.request("GET", "/data/never-written")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"


def test_same_key_routes_to_the_shard_and_node_the_map_names(shared_cluster):
    c = shared_cluster
    from torua.keys import shard_for_key

    shards = c.json("GET", "/shards")[1]
    for key in KEY_SHAPES:
        loc = c.location(key)
        assert loc["shard_id"] == shard_for_key(key, shards["num_shards"])
        assert loc["primary"] == shards["shards"][loc["shard_id"]]["primary"]
        assert c.location(key) == loc


def test_values_up_to_8_mib_round_trip_byte_exact_and_9_mib_is_413(shared_cluster):
    c = shared_cluster
    big = os.urandom(8 << 20)
    assert c.request("PUT", "/data/big/eight", big)[0] == 204
    status, body, _ = c.request("GET", "/data/big/eight")
    assert status == 200 and body == big
    status, body, _ = c.request("PUT", "/data/big/nine", os.urandom(9 << 20))
    assert status == 413
    assert json.loads(body)["error"]["code"] == "value_too_large"
    assert c.request("GET", "/data/big/nine")[0] == 404


@pytest.mark.parametrize(
    "raw_path",
    ["/data/", "/data/bad%ZZescape", "/data/bad%FFutf8", "/data/nul%00inside", "/data/" + "k" * 1025],
    ids=["empty", "bad-percent", "bad-utf8", "nul", "too-long"],
)
def test_bad_keys_are_400_and_change_nothing(shared_cluster, raw_path):
    c = shared_cluster
    status, body, _ = c.request("PUT", raw_path, b"x")
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_key_of_exactly_1024_bytes_is_fine(shared_cluster):
    key = "é" * 512  # 1024 bytes of UTF-8
    assert shared_cluster.request("PUT", data_path(key), b"edge")[0] == 204
    assert shared_cluster.request("GET", data_path(key))[1] == b"edge"


def test_wrong_method_is_405_json(shared_cluster):
    status, body, _ = shared_cluster.request("POST", "/data/some-key", b"x")
    assert status == 405
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_list_keys_across_shards_with_pages(shared_cluster):
    c = shared_cluster
    keys = {f"list-test/{i:03d}" for i in range(57)}
    for key in keys:
        assert c.request("PUT", data_path(key), b"v")[0] == 204
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        path = "/data?prefix=list-test/&limit=10" + (f"&cursor={cursor}" if cursor else "")
        status, page = c.json("GET", path)
        assert status == 200
        assert len(page["keys"]) <= 10
        seen.extend(page["keys"])
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(keys)
    assert len(seen) == len(set(seen))
    assert pages >= 6
    assert c.json("GET", "/data?limit=0")[0] == 400
    assert c.json("GET", "/data?cursor=not-a-cursor")[0] == 400


def test_ten_concurrent_writers_and_readers(shared_cluster):
    c = shared_cluster
    errors: list[str] = []

    def writer(w: int) -> None:
        for i in range(30):
            key = f"concurrent/{w}/{i}"
            value = f"{w}-{i}".encode()
            if c.request("PUT", data_path(key), value)[0] != 204:
                errors.append(f"put {key}")
            status, body, _ = c.request("GET", data_path(key))
            if (status, body) != (200, value):
                errors.append(f"get {key}: {status} {body!r}")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for w in range(10):
        assert c.request("GET", data_path(f"concurrent/{w}/29"))[1] == f"{w}-29".encode()


def test_thousand_sequential_writes_then_reads(shared_cluster):
    c = shared_cluster
    for i in range(1000):
        assert c.request("PUT", f"/data/seq-{i}", str(i).encode())[0] == 204
    for i in range(0, 1000, 7):
        assert c.request("GET", f"/data/seq-{i}")[1] == str(i).encode()


def test_keys_spread_over_every_node(shared_cluster):
    c = shared_cluster
    holders = {c.location(f"spread-{i}")["primary"] for i in range(200)}
    assert holders == set(c.nodes)


def test_cluster_views_tell_the_truth(shared_cluster):
    c = shared_cluster
    shards = c.json("GET", "/shards")[1]
    assert shards["num_shards"] == c.shards and len(shards["shards"]) == c.shards
    assert all(s["state"] == "active" and s["primary"] in c.nodes for s in shards["shards"])
    nodes = c.json("GET", "/nodes")[1]["nodes"]
    assert {n["id"] for n in nodes} == set(c.nodes)
    assert all(n["status"] == "healthy" for n in nodes)
    assert sum(n["shards"] for n in nodes) == c.shards
    counts = [n["shards"] for n in nodes]
    assert max(counts) - min(counts) <= 1
    one = c.json("GET", "/nodes/n2")
    assert one[0] == 200 and one[1]["id"] == "n2" and one[1]["pid"] == c.nodes["n2"].pid
    assert c.json("GET", "/nodes/nope")[0] == 404
    info = c.json("GET", "/cluster/info")[1]
    assert info["num_shards"] == c.shards and info["nodes_total"] == 3 and info["nodes_healthy"] == 3
    assert c.json("GET", "/cluster/health")[1]["status"] == "green"
    assert c.json("GET", "/health")[0] == 200
    spec = c.json("GET", "/openapi.json")[1]
    assert spec["openapi"].startswith("3.") and "/data/{key}" in spec["paths"]
