"""The REST front-end on an in-memory cluster: status codes, the JSON error shape
everywhere (aiohttp's own 404/405/413 included), Retry-After on 503, raw-path keys."""

import json
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from tests.unit.gateway_fakes import make_gateway, two_node_cluster, with_shard
from torua.gateway.http import make_app
from torua.keys import shard_for_key

KEYS = ["simple", "user@example.com", "path/to/resource", "key-with-spaces here", "数字", "very:long:key:with:many:colons:and:segments"]


@pytest.fixture
async def http():
    gw, nc = make_gateway()
    async with TestClient(TestServer(make_app(gw.config, gw))) as client:
        client.nc = nc
        client.gw = gw
        yield client


async def error_of(resp, status: int, code: str) -> dict:
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    if status == 503:
        assert int(resp.headers["Retry-After"]) >= 1
    return body


@pytest.mark.parametrize("key", KEYS)
async def test_put_get_delete_every_key_shape(http, key):
    path = "/data/" + quote(key, safe="/")
    resp = await http.put(path, data=b"first", headers={"Content-Type": "text/plain"})
    assert resp.status == 204
    resp = await http.get(path)
    assert resp.status == 200 and await resp.read() == b"first" and resp.headers["Content-Type"] == "text/plain"
    assert (await http.delete(path)).status == 204
    await error_of(await http.get(path), 404, "not_found")
    assert (await http.delete(path)).status == 204  # idempotent
    loc = await (await http.get("/keys/" + quote(key, safe="") + "/location")).json()
    assert loc["key"] == key and loc["shard_id"] == shard_for_key(key, 4) and loc["primary"] in ("n1", "n2")


async def test_slash_and_percent_2f_are_the_same_key(http):
    assert (await http.put("/data/a%2Fb", data=b"v")).status == 204
    assert await (await http.get("/data/a/b")).read() == b"v"
    assert await (await http.get("/data/a/b?ignored=1")).read() == b"v"


async def test_default_content_type(http):
    await http.put("/data/raw", data=b"\x00\x01", headers={"Content-Type": ""})
    resp = await http.get("/data/raw")
    assert resp.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize("path", ["/data/", "/data/bad%ZZescape", "/data/bad%FFutf8", "/data/nul%00inside", "/data/" + "k" * 1025, "/data/%E6%95"])
async def test_bad_keys_are_400(http, path):
    # encoded=True: send the path exactly as written (yarl would turn %ZZ into %25ZZ)
    url = URL(str(http.make_url("/")).rstrip("/") + path, encoded=True)
    for method in ("GET", "PUT", "DELETE"):
        await error_of(await http.session.request(method, url, data=b"x"), 400, "bad_request")
    assert not any(http.nc.store.values())


async def test_value_limit(http):
    assert (await http.put("/data/edge", data=b"x" * 1024)).status == 204
    await error_of(await http.put("/data/big", data=b"x" * 1025), 413, "value_too_large")

    async def chunks():  # chunked: no Content-Length to check up front
        for _ in range(3):
            yield b"y" * 600

    await error_of(await http.put("/data/big", data=chunks()), 413, "value_too_large")
    await error_of(await http.get("/data/big"), 404, "not_found")


async def test_expect_100_continue_refuses_early(http):
    resp = await http.put("/data/big", data=b"x" * 2048, headers={"Expect": "100-continue"})
    await error_of(resp, 413, "value_too_large")
    resp = await http.put("/data/small", data=b"ok", headers={"Expect": "100-continue"})
    assert resp.status == 204


async def test_unknown_route_and_wrong_method_are_json(http):
    await error_of(await http.get("/nope"), 404, "not_found")
    await error_of(await http.get("/keys/a/elsewhere"), 404, "not_found")
    resp = await http.post("/data/some-key", data=b"x")
    await error_of(resp, 405, "method_not_allowed")
    assert "PUT" in resp.headers["Allow"]
    await error_of(await http.delete("/shards"), 405, "method_not_allowed")


async def test_listing_pages_through_every_shard(http):
    keys = {f"list/{i:02d}" for i in range(23)}
    for key in keys:
        await http.put("/data/" + key, data=b"v")
    await http.put("/data/other", data=b"v")
    seen, cursor, pages = [], None, 0
    while True:
        resp = await http.get("/data", params={"prefix": "list/", "limit": "5", **({"cursor": cursor} if cursor else {})})
        page = await resp.json()
        assert resp.status == 200 and len(page["keys"]) <= 5
        seen += page["keys"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(keys) and len(seen) == len(keys) and pages >= 5
    assert len((await (await http.get("/data?prefix=&limit=&cursor=")).json())["keys"]) == 24


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=1.5", "limit=%201", "cursor=not-a-cursor", "cursor=!!"])
async def test_bad_listing_parameters(http, query):
    await error_of(await http.get("/data?" + query), 400, "bad_request")


async def test_cluster_views(http):
    shards = await (await http.get("/shards")).json()
    assert shards["num_shards"] == 4 and shards["epoch"] == 5
    assert set(shards["shards"][0]) >= {"shard_id", "primary", "replicas", "in_sync", "state", "target"}
    nodes = (await (await http.get("/nodes")).json())["nodes"]
    assert [n["id"] for n in nodes] == ["n1", "n2"] and nodes[0]["shards"] == 2
    assert nodes[0]["last_heartbeat"].startswith("2023-11-14T22:13:20") and nodes[1]["last_heartbeat"] is None
    one = await (await http.get("/nodes/n2")).json()
    assert one["id"] == "n2" and one["pid"] == 12 and one["shard_ids"] == [1, 3]
    await error_of(await http.get("/nodes/ghost"), 404, "unknown_node")
    info = await (await http.get("/cluster/info")).json()
    assert (info["cluster_id"], info["coordinator"], info["nodes_healthy"], info["shards_assigned"], info["health"]) == ("cluster-x", "c1", 2, 4, "green")
    assert (await (await http.get("/cluster/health")).json())["status"] == "green"
    health = await (await http.get("/health")).json()
    assert health["status"] == "ok" and health["nats"] == "connected" and health["map_epoch"] == 5
    spec = await (await http.get("/openapi.json")).json()
    assert spec["openapi"] == "3.1.0" and {"/data/{key}", "/data", "/keys/{key}/location", "/shards/assign"} <= set(spec["paths"])


async def test_no_coordinator_is_503_with_retry_after(http):
    http.nc.coordinator_up = False
    for path in ("/nodes", "/nodes/n1", "/cluster/info", "/cluster/health"):
        await error_of(await http.get(path), 503, "no_coordinator")
    assert (await http.get("/shards")).status == 200  # the map needs no coordinator
    assert (await http.get("/health")).status == 200


@pytest.mark.parametrize(
    "body,status,code",
    [
        (b'{"shard_id": 1, "node_id": "n1"}', 202, "moving"),
        (b'{"shard_id": 1, "node_id": "n2"}', 202, "already_there"),
        (b'{"shard_id": 99, "node_id": "n1"}', 404, "unknown_shard"),
        (b'{"shard_id": 1, "node_id": "ghost"}', 404, "unknown_node"),
        (b'{"shard_id": "zero", "node_id": "n1"}', 400, "bad_request"),
        (b'{"shard_id": true, "node_id": "n1"}', 400, "bad_request"),
        (b'{"shard_id": 1}', 400, "bad_request"),
        (b'{"shard_id": 1, "node_id": "n1", "force": true}', 400, "bad_request"),
        (b"[1, 2]", 400, "bad_request"),
        (b"{not json", 400, "bad_request"),
        (b"", 400, "bad_request"),
    ],
)
async def test_assign(http, body, status, code):
    resp = await http.post("/shards/assign", data=body, headers={"Content-Type": "application/json"})
    if status == 202:
        assert resp.status == 202 and (await resp.json())["status"] == code
    else:
        await error_of(resp, status, code)


async def test_unavailable_shard_is_503_with_retry_after():
    nc = two_node_cluster()
    key = "simple"
    with_shard(nc, shard_for_key(key, 4), state="unavailable")
    gw, _ = make_gateway(nc)
    async with TestClient(TestServer(make_app(gw.config, gw))) as client:
        await error_of(await client.get("/data/simple"), 503, "unavailable")
        health = await (await client.get("/cluster/health")).json()
        assert health["status"] == "red" and health["shards_unavailable"] == 1


async def test_unexpected_errors_are_500_json_without_a_trace(http, caplog):
    async def boom(*args, **kwargs):
        raise RuntimeError("secret detail")

    http.gw.kv_get = boom
    resp = await http.get("/data/a")
    body = await error_of(resp, 500, "internal")
    assert "secret" not in json.dumps(body)
    assert "secret detail" in caplog.text  # the traceback goes to the log
