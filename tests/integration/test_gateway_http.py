"""The REST front-end on a real cluster, beyond what test_kv_http.py covers: the JSON
error shape everywhere (aiohttp's own 404/405/413 included), Retry-After on every 503,
raw-path keys, the value limit (on an extra gateway started with a 1 KiB limit),
a node's refusal reaching the client as it is, and what the gateway says when the
coordinator or a node is gone."""

from __future__ import annotations

import datetime
import json
import os
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from tests.support.processes import Cluster, Proc, free_port, wait_until
from torua.cli.up import torua_command
from torua.config import DEFAULT_MAX_VALUE_BYTES
from torua.keys import shard_for_key

KEYS = ["simple", "user@example.com", "path/to/resource", "key-with-spaces here", "数字", "very:long:key:with:many:colons:and:segments"]

SMALL_LIMIT = 1024
# Above what a node accepts (DEFAULT_MAX_VALUE_BYTES), still under the nats-server's max_payload (16 MiB).
ABOVE_NODE_LIMIT = 12 << 20


def data_path(key: str) -> str:
    return "/data/" + quote(key, safe="/")


def start_gateway_process(c: Cluster, max_value_bytes: int) -> tuple[Proc, str]:
    """One more real gateway on `c`'s NATS, with its own HTTP port and value limit.

    Built as `Cluster.start_gateway` builds its argv, and started in `c`'s group so
    it is stopped with the cluster. It also joins the NATS API's queue group, so no
    test in this module uses the NATS API."""
    port = free_port()
    argv = torua_command() + [
        "gateway", "--port", str(port), "--request-timeout", "5", "--max-value-bytes", str(max_value_bytes),
        "--nats-url", c.nats_url, "--log-level", "info",
    ]
    return c.group.start(f"gateway-max-{max_value_bytes}", argv), f"http://127.0.0.1:{port}"


def gateway_ready(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url + "/health", timeout=2) as resp:
        return resp.status == 200 and json.loads(resp.read())["map_epoch"] is not None


@pytest.fixture(scope="module")
def limited_gateways(shared_cluster) -> dict[int, str]:
    """{max_value_bytes: base URL} of two extra gateways: a 1 KiB one and one above the nodes' limit."""
    started = {limit: start_gateway_process(shared_cluster, limit) for limit in (SMALL_LIMIT, ABOVE_NODE_LIMIT)}
    for limit, (proc, url) in started.items():
        wait_until(lambda: not proc.alive() or gateway_ready(url), 20, f"the gateway with limit {limit}")
        assert proc.alive(), proc.log()
    return {limit: url for limit, (_, url) in started.items()}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def error_of(resp: aiohttp.ClientResponse, status: int, code: str) -> dict:
    """`resp` is the JSON error `code` with `status`, and nothing else; a 503 says when to retry."""
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    if status == 503:
        assert int(resp.headers["Retry-After"]) >= 1
    return body


# ------------------------------------------------------------------- keys


@pytest.mark.parametrize("key", KEYS)
async def test_every_key_shape_keeps_its_exact_content_type_and_errors_are_json(shared_cluster, http, key):
    base = shared_cluster.url
    resp = await http.put(base + data_path(key), data=b"first", headers={"Content-Type": "text/plain"})
    assert resp.status == 204
    resp = await http.get(base + data_path(key))
    assert resp.status == 200 and await resp.read() == b"first" and resp.headers["Content-Type"] == "text/plain"
    assert (await http.delete(base + data_path(key))).status == 204
    await error_of(await http.get(base + data_path(key)), 404, "not_found")
    loc = await (await http.get(base + "/keys/" + quote(key, safe="") + "/location")).json()
    assert loc["key"] == key and loc["shard_id"] == shard_for_key(key, shared_cluster.shards) and loc["primary"] in shared_cluster.nodes


async def test_slash_and_percent_2f_are_the_same_key(shared_cluster, http):
    base = shared_cluster.url
    assert (await http.put(base + "/data/slash%2Fsame", data=b"v")).status == 204
    assert await (await http.get(base + "/data/slash/same")).read() == b"v"
    assert await (await http.get(base + "/data/slash/same?ignored=1")).read() == b"v"


async def test_default_content_type(shared_cluster, http):
    base = shared_cluster.url
    assert (await http.put(base + "/data/raw-no-type", data=b"\x00\x01", headers={"Content-Type": ""})).status == 204
    resp = await http.get(base + "/data/raw-no-type")
    assert resp.status == 200 and await resp.read() == b"\x00\x01"
    assert resp.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "path",
    ["/data/", "/data/bad%ZZescape", "/data/bad%FFutf8", "/data/nul%00inside", "/data/" + "k" * 1025, "/data/%E6%95"],
    ids=["empty", "bad-percent", "bad-utf8", "nul", "too-long", "cut-utf8"],
)
async def test_bad_keys_are_400_on_every_method_and_change_nothing(shared_cluster, http, path):
    before = shared_cluster.all_keys()
    # encoded=True: send the path exactly as written (yarl would turn %ZZ into %25ZZ)
    url = URL(shared_cluster.url + path, encoded=True)
    for method in ("GET", "PUT", "DELETE"):
        await error_of(await http.request(method, url, data=b"x"), 400, "bad_request")
    assert shared_cluster.all_keys() == before


# ----------------------------------------------------------- value limits


async def test_value_limit(limited_gateways, http):
    small = limited_gateways[SMALL_LIMIT]
    assert (await http.put(small + "/data/limit/edge", data=b"x" * SMALL_LIMIT)).status == 204
    assert await (await http.get(small + "/data/limit/edge")).read() == b"x" * SMALL_LIMIT
    await error_of(await http.put(small + "/data/limit/big", data=b"x" * (SMALL_LIMIT + 1)), 413, "value_too_large")

    async def chunks():  # chunked: no Content-Length to check up front
        for _ in range(3):
            yield b"y" * 600

    await error_of(await http.put(small + "/data/limit/big", data=chunks()), 413, "value_too_large")
    await error_of(await http.get(small + "/data/limit/big"), 404, "not_found")


async def test_expect_100_continue_refuses_early(limited_gateways, http):
    small = limited_gateways[SMALL_LIMIT]
    resp = await http.put(small + "/data/limit/expect-big", data=b"x" * 2048, headers={"Expect": "100-continue"})
    await error_of(resp, 413, "value_too_large")
    resp = await http.put(small + "/data/limit/expect-small", data=b"ok", headers={"Expect": "100-continue"})
    assert resp.status == 204
    await error_of(await http.get(small + "/data/limit/expect-big"), 404, "not_found")
    assert await (await http.get(small + "/data/limit/expect-small")).read() == b"ok"


async def test_a_nodes_refusal_reaches_the_client_as_it_is(limited_gateways, http):
    """A gateway that lets more through than the nodes take: the node's own error, code and message, comes back."""
    roomy = limited_gateways[ABOVE_NODE_LIMIT]
    size = DEFAULT_MAX_VALUE_BYTES + 1
    body = await error_of(await http.put(roomy + "/data/limit/node-refuses", data=os.urandom(size)), 413, "value_too_large")
    # The node's words: its limit, not this gateway's.
    assert body["error"]["message"] == f"value is {size} bytes; the limit is {DEFAULT_MAX_VALUE_BYTES}"
    await error_of(await http.get(roomy + "/data/limit/node-refuses"), 404, "not_found")


# --------------------------------------------------------- routes, listing


async def test_unknown_route_and_wrong_method_are_json(shared_cluster, http):
    base = shared_cluster.url
    await error_of(await http.get(base + "/nope"), 404, "not_found")
    await error_of(await http.get(base + "/keys/a/elsewhere"), 404, "not_found")
    resp = await http.post(base + "/data/some-key", data=b"x")
    await error_of(resp, 405, "method_not_allowed")
    assert "PUT" in resp.headers["Allow"]
    await error_of(await http.delete(base + "/shards"), 405, "method_not_allowed")
    await error_of(await http.get(base + "/data/some-key"), 404, "not_found")


async def test_empty_listing_parameters_mean_the_defaults(shared_cluster, http):
    for i in range(3):
        assert (await http.put(shared_cluster.url + f"/data/empty-params/{i}", data=b"v")).status == 204
    everything = shared_cluster.all_keys()
    resp = await http.get(shared_cluster.url + "/data?prefix=&limit=&cursor=")
    page = await resp.json()
    assert resp.status == 200
    # no prefix, the default limit (100), from the start
    assert len(page["keys"]) == min(100, len(everything)) and set(page["keys"]) <= set(everything)
    assert page == await (await http.get(shared_cluster.url + "/data?limit=100")).json()
    if len(everything) <= 100:
        assert sorted(page["keys"]) == everything and page["next_cursor"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=1.5", "limit=%201", "cursor=not-a-cursor", "cursor=!!"])
async def test_bad_listing_parameters(shared_cluster, http, query):
    await error_of(await http.get(shared_cluster.url + "/data?" + query), 400, "bad_request")


# ---------------------------------------------------------- cluster views


async def test_cluster_views(shared_cluster, http):
    c, base = shared_cluster, shared_cluster.url
    shards = await (await http.get(base + "/shards")).json()
    assert shards["num_shards"] == c.shards and isinstance(shards["epoch"], int) and shards["epoch"] >= 1
    assert set(shards["shards"][0]) >= {"shard_id", "primary", "replicas", "in_sync", "state", "target"}
    held = {n: sorted(s["shard_id"] for s in shards["shards"] if s["primary"] == n) for n in c.nodes}
    nodes = (await (await http.get(base + "/nodes")).json())["nodes"]
    assert [n["id"] for n in nodes] == sorted(c.nodes)
    now = datetime.datetime.now(datetime.timezone.utc)
    for n in nodes:
        assert n["shards"] == len(n["shard_ids"]) and sorted(n["shard_ids"]) == held[n["id"]]
        heartbeat = datetime.datetime.fromisoformat(n["last_heartbeat"])
        assert heartbeat.utcoffset() == datetime.timedelta(0) and abs((now - heartbeat).total_seconds()) < 10
    one = await (await http.get(base + "/nodes/n2")).json()
    assert one["id"] == "n2" and one["pid"] == c.nodes["n2"].pid and sorted(one["shard_ids"]) == held["n2"]
    await error_of(await http.get(base + "/nodes/ghost"), 404, "unknown_node")
    info = await (await http.get(base + "/cluster/info")).json()
    assert isinstance(info["cluster_id"], str) and info["cluster_id"]
    assert (info["coordinator"], info["nodes_healthy"], info["shards_assigned"], info["health"]) == ("c1", 3, c.shards, "green")
    assert (await (await http.get(base + "/cluster/info")).json())["cluster_id"] == info["cluster_id"]
    assert (await (await http.get(base + "/cluster/health")).json())["status"] == "green"
    health = await (await http.get(base + "/health")).json()
    assert health["status"] == "ok" and health["nats"] == "connected" and health["map_epoch"] == shards["epoch"]
    spec = await (await http.get(base + "/openapi.json")).json()
    assert spec["openapi"] == "3.1.0" and {"/data/{key}", "/data", "/keys/{key}/location", "/shards/assign"} <= set(spec["paths"])


@pytest.mark.parametrize(
    "body,status,code",
    [
        # a move to another node (202 "moving") is in test_moves.py
        (None, 202, "already_there"),
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
async def test_assign_that_moves_nothing(shared_cluster, http, body, status, code):
    before = shared_cluster.json("GET", "/shards")[1]["shards"]
    if body is None:  # shard 1 to the node that already holds it
        body = json.dumps({"shard_id": 1, "node_id": before[1]["primary"]}).encode()
    resp = await http.post(shared_cluster.url + "/shards/assign", data=body, headers={"Content-Type": "application/json"})
    if status == 202:
        assert resp.status == 202 and (await resp.json())["status"] == code
    else:
        await error_of(resp, status, code)
    after = shared_cluster.json("GET", "/shards")[1]["shards"]
    assert [(s["primary"], s["target"]) for s in after] == [(s["primary"], s["target"]) for s in before]


# ------------------------------------------------ a coordinator or node gone


async def test_no_coordinator_is_503_with_retry_after(cluster, http):
    c = cluster
    c.coordinator.kill()
    for path in ("/nodes", "/nodes/n1", "/cluster/info", "/cluster/health"):
        await error_of(await http.get(c.url + path), 503, "no_coordinator")
    assert (await http.get(c.url + "/shards")).status == 200  # the map needs no coordinator
    assert (await http.get(c.url + "/health")).status == 200


async def test_unavailable_shard_is_503_with_retry_after(cluster, http):
    c = cluster
    victim_shards = {s["shard_id"] for s in c.json("GET", "/shards")[1]["shards"] if s["primary"] == "n2"}
    assert victim_shards
    key = next(k for k in (f"gone-{i}" for i in range(1000)) if shard_for_key(k, c.shards) in victim_shards)
    c.nodes["n2"].kill()
    wait_until(
        lambda: all(s["state"] == "unavailable" for s in c.json("GET", "/shards")[1]["shards"] if s["shard_id"] in victim_shards),
        10,
        "n2's shards to be marked unavailable",
    )
    await error_of(await http.get(c.url + data_path(key)), 503, "unavailable")
    health = await (await http.get(c.url + "/cluster/health")).json()
    assert health["status"] == "red" and health["shards_unavailable"] == len(victim_shards)
