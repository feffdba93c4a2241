"""The REST front-end on a real cluster, beyond what test_kv_http.py covers: the JSON
error shape everywhere (aiohttp's own 404/405/413 included), Retry-After on every 503,
raw-path keys (every character a key may hold), the value limit (on an extra gateway
started with a 1 KiB limit), a node's refusal reaching the client as it is, what the
gateway says when the coordinator or a node is gone, and what a request must be to
get in: JSON bodies say they are JSON (415), no browser page from another origin
changes anything (403), values the wire cannot carry are named (400), and stored
values are served inert. (Below the handlers, from a raw socket: test_gateway_http_wire.py.)"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import socket
from pathlib import Path
from urllib.parse import quote

import aiohttp
import nats
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


@pytest.mark.parametrize(
    "query",
    [
        "limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=1.5", "limit=%201", "limit=99999999999999999999", "cursor=not-a-cursor", "cursor=!!",
        # the prefix follows the key rules (it may be empty): this used to answer 200 []
        "prefix=%FF", "prefix=%E6%95", "prefix=%00", "prefix=a%00b", "prefix=%ZZ", "prefix=" + "k" * 1025, "prefix=a&prefix=b", "cursor=%FF",
    ],
)
async def test_bad_listing_parameters(shared_cluster, http, query):
    await error_of(await http.get(URL(shared_cluster.url + "/data?" + query, encoded=True)), 400, "bad_request")


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
        # integers msgpack cannot carry (this one used to be a 500), and ids outside 0..num_shards-1
        (b'{"shard_id": 99999999999999999999, "node_id": "n1"}', 400, "bad_request"),
        (b'{"shard_id": 18446744073709551616, "node_id": "n1"}', 400, "bad_request"),
        (b'{"shard_id": -9223372036854775809, "node_id": "n1"}', 400, "bad_request"),
        (b'{"shard_id": 18446744073709551615, "node_id": "n1"}', 404, "unknown_shard"),
        (b'{"shard_id": -1, "node_id": "n1"}', 404, "unknown_shard"),
        (b'{"shard_id": 1.5, "node_id": "n1"}', 400, "bad_request"),
        (b'{"shard_id": NaN, "node_id": "n1"}', 400, "bad_request"),
        (b'{"shard_id": 1, "node_id": "\\ud800"}', 400, "bad_request"),
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


# ------------------------------------------- what a request must be to get in


def _nested(depth: int) -> bytes:
    return b'{"x": ' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    "method,path,body,names",
    [
        ("POST", "/shards/assign", b'{"shard_id": 99999999999999999999, "node_id": "n1"}', "shard_id: integer 99999999999999999999 is out of range"),
        ("POST", "/shards/assign", b'{"shard_id": 99, "node_id": "n1"}', "shard_id 99 does not exist: shards are 0 to 7"),
        ("POST", "/shards/assign", b'{"shard_id": 1, "node_id": "\\udcff"}', "node_id: text must be valid UTF-8"),
        ("PUT", "/cluster/config", b'{"max_moves": 99999999999999999999}', "max_moves: integer"),
        ("PUT", "/cluster/config", b'{"heartbeat_interval": 1e999}', "heartbeat_interval: numbers must be finite"),
        ("PUT", "/cluster/config", b'{"heartbeat_interval": NaN}', "heartbeat_interval: numbers must be finite"),
        ("PUT", "/cluster/config", b'{"log_level": "\\ud800"}', "log_level: text must be valid UTF-8"),
        ("POST", "/broadcast", b'{"kind": "ping", "body": {"n": [1, 99999999999999999999]}}', "body.n[1]: integer"),
        ("POST", "/broadcast", b'{"kind": "ping", "body": {"n": -Infinity}}', "body.n: numbers must be finite"),
        ("POST", "/broadcast", b'{"kind": "ping", "body": ' + _nested(150) + b"}", "body.x.x"),
        ("POST", "/nodes/maintenance", b'{"nodes": ["n1", "\\ud800"], "maintenance": true}', "nodes[1]: text must be valid UTF-8"),
    ],
)
async def test_values_the_wire_cannot_carry_are_400s_naming_them_and_change_nothing(shared_cluster, http, method, path, body, names):
    """Every int and float a user sends reaches msgpack: one out of its range was a 500."""
    status_by_code = {"bad_request": 400, "unknown_shard": 404}
    before = (shared_cluster.json("GET", "/cluster/config")[1]["revision"], shared_cluster.json("GET", "/shards")[1]["shards"],
              [n["maintenance"] for n in shared_cluster.json("GET", "/nodes")[1]["nodes"]])
    resp = await http.request(method, shared_cluster.url + path, data=body, headers={"Content-Type": "application/json"})
    code = "unknown_shard" if "does not exist" in names else "bad_request"
    error = (await error_of(resp, status_by_code[code], code))["error"]
    assert error["message"].startswith(names), error
    if code == "bad_request":  # the field is named in `fields` too, as a bad setting is
        assert list(error["fields"])[0].startswith(names.split(":")[0]), error
    after = (shared_cluster.json("GET", "/cluster/config")[1]["revision"], shared_cluster.json("GET", "/shards")[1]["shards"],
             [n["maintenance"] for n in shared_cluster.json("GET", "/nodes")[1]["nodes"]])
    assert after == before


@pytest.mark.parametrize("path", ["/nodes/%ED%A0%80/drain", "/nodes/%FF/evacuate", "/nodes/%FF"])
async def test_node_ids_that_are_not_utf8_are_refused_not_crashed_on(shared_cluster, http, path):
    resp = await http.request("GET" if path.count("/") == 2 else "POST", URL(shared_cluster.url + path, encoded=True))
    assert resp.status in (400, 404), await resp.text()
    assert (await resp.json())["error"]["code"] in ("bad_request", "unknown_node")


# Every character the key rules allow, percent-encoded as a client sends it (a newline used to be a 404 "no route").
NASTY_KEYS = ["line\nbreak", "\n", "cr\rlf\r\n", "tab\there", "%0A literally", "a#b", "a?b=c&d", "100%", "+plus+",
              "/leading", "trailing/", "a//b", "..", ".", "a/../b", "数字/é/🙂", "\u2028\u2029", "\x7f\x01", " "]


@pytest.mark.parametrize("key", NASTY_KEYS, ids=repr)
async def test_every_key_the_rules_allow_round_trips_over_rest(shared_cluster, http, key):
    base, encoded, value = shared_cluster.url, quote(key, safe=""), b"value of " + key.encode()
    url = URL(base + "/data/" + encoded, encoded=True)
    assert (await http.put(url, data=value)).status == 204
    resp = await http.get(url)
    assert resp.status == 200 and await resp.read() == value
    loc = await http.get(URL(base + "/keys/" + encoded + "/location", encoded=True))
    assert loc.status == 200 and (await loc.json())["key"] == key
    listed = await (await http.get(URL(base + "/data?prefix=" + encoded, encoded=True))).json()
    assert key in listed["keys"]
    assert (await http.delete(url)).status == 204
    await error_of(await http.get(url), 404, "not_found")


async def test_a_key_with_a_newline_written_over_nats_is_reachable_over_rest(shared_cluster, http):
    """(Any gateway of this module may answer the NATS request: the value is small enough for all.)"""
    conn = await nats.connect(shared_cluster.nats_url)
    try:
        put = json.dumps({"key": "from-nats\nline", "value": "hello"}).encode()
        reply = await conn.request("torua.api.kv.put", put, timeout=10, headers={"Content-Type": "application/json"})
        assert json.loads(reply.data) == {"ok": True}
        url = URL(shared_cluster.url + "/data/from-nats%0Aline", encoded=True)
        resp = await http.get(url)
        assert resp.status == 200 and await resp.read() == b"hello"
        assert (await http.delete(url)).status == 204
    finally:
        await conn.close()


JSON_BODIES = [
    ("POST", "/shards/assign", {"shard_id": 0, "node_id": "n1"}),
    ("POST", "/nodes/maintenance", {"nodes": ["n1"], "maintenance": True}),
    ("PUT", "/cluster/config", {"max_moves": 7}),
    ("POST", "/broadcast", {"kind": "ping"}),
]


@pytest.mark.parametrize("method,path,body", JSON_BODIES, ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None)
@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json", "application/jsonx", "application/+json"]
)
async def test_a_json_body_without_a_json_content_type_is_415_and_changes_nothing(shared_cluster, http, method, path, body, content_type):
    """What a browser page may send anywhere without asking (text/plain, forms) never reaches an operator endpoint."""
    before = (shared_cluster.json("GET", "/cluster/config")[1]["settings"], shared_cluster.json("GET", "/shards")[1]["shards"],
              [n["maintenance"] for n in shared_cluster.json("GET", "/nodes")[1]["nodes"]])
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await http.request(method, shared_cluster.url + path, data=json.dumps(body).encode(), headers=headers, skip_auto_headers=["Content-Type"])
    await error_of(resp, 415, "unsupported_media_type")
    after = (shared_cluster.json("GET", "/cluster/config")[1]["settings"], shared_cluster.json("GET", "/shards")[1]["shards"],
             [n["maintenance"] for n in shared_cluster.json("GET", "/nodes")[1]["nodes"]])
    assert after == before


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"])
async def test_json_content_types_are_accepted(shared_cluster, http, content_type):
    resp = await http.post(shared_cluster.url + "/broadcast", data=b'{"kind": "ping"}', headers={"Content-Type": content_type})
    assert resp.status == 200, await resp.text()


async def test_stored_values_are_served_inert(shared_cluster, http):
    """A value stored as text/html is never sniffed or run as a page of the gateway's origin."""
    url = shared_cluster.url + "/data/inert/page.html"
    assert (await http.put(url, data=b"<script>alert(1)</script>", headers={"Content-Type": "text/html"})).status == 204
    for resp in (await http.get(url), await http.get(shared_cluster.url + "/data/inert/absent"), await http.get(shared_cluster.url + "/health")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        policy = [p.strip() for p in resp.headers["Content-Security-Policy"].split(";")]
        assert "sandbox" in policy and "default-src 'none'" in policy
    resp = await http.get(url)
    assert resp.headers["Content-Type"] == "text/html" and await resp.read() == b"<script>alert(1)</script>"


CROSS_ORIGIN = [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},  # another port of the same host is another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},
]


@pytest.mark.parametrize("headers", CROSS_ORIGIN, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
async def test_a_page_from_another_origin_changes_nothing(shared_cluster, http, headers):
    """Even the body-less POSTs a page may send anywhere without asking (drain, evacuate, rebalance)."""
    base = shared_cluster.url
    before = (shared_cluster.json("GET", "/shards")[1]["shards"], [(n["draining"], n["evacuating"]) for n in shared_cluster.json("GET", "/nodes")[1]["nodes"]])
    for method, path, body, extra in (
        ("POST", "/nodes/n3/drain", None, {}),
        ("POST", "/nodes/n3/evacuate", None, {}),
        ("POST", "/cluster/rebalance", None, {}),
        ("PUT", "/data/csrf/written", b"x", {}),
        ("DELETE", "/data/csrf/written", None, {}),
        ("POST", "/broadcast", b'{"kind": "ping"}', {"Content-Type": "application/json"}),
    ):
        resp = await http.request(method, base + path, data=body, headers={**headers, **extra})
        await error_of(resp, 403, "cross_origin")
    await error_of(await http.get(base + "/data/csrf/written"), 404, "not_found")
    after = (shared_cluster.json("GET", "/shards")[1]["shards"], [(n["draining"], n["evacuating"]) for n in shared_cluster.json("GET", "/nodes")[1]["nodes"]])
    assert after == before


async def test_the_same_origin_and_clients_that_are_not_browsers_may_change_things(shared_cluster, http):
    base = shared_cluster.url
    for headers in ({"Origin": base}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {}):
        assert (await http.delete(base + "/nodes/n3/drain", headers=headers)).status == 200  # undrain: changes nothing here
        assert (await http.get(base + "/health", headers={"Origin": "http://evil.example"})).status == 200  # reading is not guarded


async def test_a_response_the_client_does_not_read_is_dropped_after_the_deadline(shared_cluster, http):
    """A reader that never reads cannot hold a connection, and the value, forever: after the
    request deadline (5 s here) the gateway drops it. The kernel buffers some of the 8 MiB
    (up to tcp_wmem's maximum on the gateway's side); the rest never leaves the gateway."""
    kernel_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2]) if Path("/proc/sys/net/ipv4/tcp_wmem").exists() else 4 << 20
    value = os.urandom(8 << 20)
    if kernel_max + (1 << 20) >= len(value):
        pytest.skip(f"the kernel could buffer the whole value (tcp_wmem max {kernel_max})")
    assert (await http.put(shared_cluster.url + "/data/slow-reader/big", data=value)).status == 204
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no window scaling up
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", shared_cluster.http_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(b"GET /data/slow-reader/big HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5 + 3)  # the slow reader: nothing read for longer than the deadline
        received = 0
        try:
            async with asyncio.timeout(30):
                while chunk := await reader.read(1 << 20):
                    received += len(chunk)
        except (ConnectionError, OSError):
            pass  # dropped: a reset, as aiohttp's abort does
        assert received < len(value), "the whole response arrived: the gateway waited for the slow reader"
    finally:
        writer.close()
    assert (await http.get(shared_cluster.url + "/health")).status == 200
