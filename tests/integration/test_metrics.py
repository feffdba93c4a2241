"""/metrics on a real cluster: two coordinators (one leads, one stands by), two nodes
and a gateway, each with its own --metrics-port; the gateway also on its REST port.
Scraped with aiohttp and read with prometheus-client's own parser. Also: a node
started with --log-format json writes JSON lines."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import aiohttp
import nats
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Cluster, free_port
from torua import __version__

SHARDS = 8
NODES = ("n1", "n2")
COORDINATORS = ("c1", "c2")
KEYS = ["simple", "user@example.com", "path/to/resource", "数字", "very:long:key"]

Samples = dict[tuple[str, frozenset], float]


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape_when(http: aiohttp.ClientSession, url: str, ready, what: str, timeout: float = 15) -> Samples:
    """Scrape until `ready(samples)` holds (the port may open a moment after the process)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            samples = await scrape(http, url)
            if ready(samples):
                return samples
            last = samples
        except aiohttp.ClientError as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} at {url}; last: {last}")


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_metrics_of_a_running_cluster(group, nats_url):
    c = Cluster(group, nats_url, shards=SHARDS)
    ports = {who: free_port() for who in COORDINATORS + NODES + ("gateway",)}
    c.extra_args = lambda who: ["--metrics-port", str(ports[who]), "--metrics-host", "127.0.0.1"] + (
        ["--log-format", "json"] if who == "n1" else []
    )
    c.start(nodes=len(NODES), coordinators=len(COORDINATORS))
    metrics_url = {who: f"http://127.0.0.1:{port}/metrics" for who, port in ports.items()}

    async with aiohttp.ClientSession() as http:
        before = await scrape(http, c.url + "/metrics")
        for key in KEYS:
            status, _, _ = await asyncio.to_thread(c.request, "PUT", "/data/" + quote(key, safe="/"), key.encode())
            assert status == 204
        for key in KEYS:
            status, body, _ = await asyncio.to_thread(c.request, "GET", "/data/" + quote(key, safe="/"))
            assert (status, body) == (200, key.encode())
        status, _, _ = await asyncio.to_thread(c.request, "GET", "/data/no-such-key")
        assert status == 404
        nc = await nats.connect(nats_url)
        try:
            reply = await nc.request("torua.api.kv.get", json.dumps({"key": "simple"}).encode(), timeout=5, headers={"Content-Type": "application/json"})
            assert json.loads(reply.data)["value"] == "simple"
        finally:
            await nc.close()

        # The gateway, on its REST port: requests by operation and status.
        after = await scrape(http, c.url + "/metrics")
        for op, code, count in (("put", "204", len(KEYS)), ("get", "200", len(KEYS)), ("get", "404", 1)):
            counted = value(after, "torua_gateway_http_requests_total", op=op, status=code) - value(before, "torua_gateway_http_requests_total", op=op, status=code)
            timed = value(after, "torua_gateway_http_request_duration_seconds_count", op=op, status=code) - value(
                before, "torua_gateway_http_request_duration_seconds_count", op=op, status=code
            )
            assert (counted, timed) == (count, count), (op, code)
        assert value(after, "torua_gateway_nats_requests_total", op="kv.get", outcome="ok") == 1
        assert value(after, "torua_gateway_map_epoch") > 0
        # ... and on its own metrics port, from the same registry.
        own = await scrape_when(http, metrics_url["gateway"], lambda s: value(s, "torua_gateway_http_requests_total", op="put", status="204") >= len(KEYS), "the gateway's metrics port")
        assert value(own, "torua_build_info", role="gateway", version=__version__) == 1

        # The nodes: every shard once (one copy each), every key once.
        node_samples = {
            n: await scrape_when(http, metrics_url[n], lambda s: value(s, "torua_node_map_epoch", node=n) > 0, f"node {n}") for n in NODES
        }
        assert sum(value(s, "torua_node_shards", node=n, role="primary") for n, s in node_samples.items()) == SHARDS
        assert sum(value(s, "torua_node_keys", node=n) for n, s in node_samples.items()) == len(KEYS)
        assert sum(value(s, "torua_node_bytes", node=n) for n, s in node_samples.items()) == sum(len(k.encode()) for k in KEYS)
        assert sum(total(s, "torua_node_kv_requests_total", op="put", outcome="ok") for s in node_samples.values()) >= len(KEYS)

        # The coordinators: exactly one leads and reports the cluster; the standby reports 0.
        coordinator_samples = {
            who: await scrape_when(http, metrics_url[who], lambda s: ("torua_coordinator_leader", frozenset({("coordinator", who)})) in s, f"coordinator {who}")
            for who in COORDINATORS
        }
        leading = {who: value(s, "torua_coordinator_leader", coordinator=who) for who, s in coordinator_samples.items()}
        assert sorted(leading.values()) == [0, 1], leading
        leader = next(who for who, v in leading.items() if v == 1)
        standby = next(who for who in COORDINATORS if who != leader)
        s = coordinator_samples[leader]
        assert value(s, "torua_coordinator_map_epoch", coordinator=leader) > 0
        assert value(s, "torua_coordinator_term", coordinator=leader) > 0
        assert value(s, "torua_coordinator_nodes", coordinator=leader, status="healthy") == len(NODES)
        assert value(s, "torua_coordinator_shards", coordinator=leader, state="active") == SHARDS
        assert total(s, "torua_coordinator_shard_copies", role="primary") == SHARDS
        assert value(coordinator_samples[standby], "torua_coordinator_term", coordinator=standby) == 0
        assert not any(name == "torua_coordinator_map_epoch" for name, _ in coordinator_samples[standby])

    # n1 logs JSON lines, with its role and id, and the epoch where the call gave one.
    lines = [json.loads(line) for line in c.nodes["n1"].log().splitlines() if line.startswith("{")]
    assert lines and all(entry["role"] == "node" and entry["node_id"] == "n1" for entry in lines)
    assert any("epoch" in entry and entry["message"].startswith("epoch ") for entry in lines)
