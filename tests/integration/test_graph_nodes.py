"""Graph requests to real `torua node` processes (over NATS, routed by the shard map
as a gateway routes them): vertices and edges across shards, and an edge whose two
halves a kill -9 separates: its src's primary logged the out-half pending, could
not reach dst's (paused), and is killed; its replica, promoted, finishes the edge
by repair, and both halves agree."""

from __future__ import annotations

import asyncio
import shutil
import time

import nats
import pytest

from tests.integration.test_nats_security import AUTH_CONF, INCLUDE_AUTH, PASSWORDS, credentials
from tests.support.graph_client import GraphClient
from tests.support.processes import Cluster, start_nats
from torua.graph.rules import vertex_shard
from torua.protocol.errors import ToruaError
from torua.protocol.messages import GraphRef
from torua.protocol.vocabulary import GraphOp
from torua.routing import MapCache, ShardRouter

GRAPH = GraphRef("city", "uid-city")
SHARDS = 4


async def poll(predicate, timeout: float, what: str):
    """Await `predicate()` (async) until it is truthy, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = await predicate()
            if result:
                return result
        except ToruaError as exc:  # a shard failing over: not there yet
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}" + (f" (last: {last})" if last else ""))


def vertex_on(shard: int, prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(10000) if vertex_shard(GRAPH.name, f"{prefix}{i}", SHARDS) == shard)


async def test_edges_across_shards_and_a_primary_killed_between_the_halves(group, nats_url):
    c = Cluster(group, nats_url, shards=SHARDS, replicas=2)
    c.start_coordinator(expect_nodes=3)
    for n in ("n1", "n2", "n3"):
        c.start_node(n, ["--graph-peer-timeout", "0.2", "--graph-repair-interval", "0.3"])
    c.start_gateway()
    c.wait_formed()
    shard_map = {s["shard_id"]: s for s in c.json("GET", "/shards")[1]["shards"]}
    # src's shard led by X with its replica on Z, dst's shard led by Y: three nodes
    sa, sb = next(
        (a, b)
        for a in shard_map
        for b in shard_map
        if len({shard_map[a]["primary"], shard_map[a]["replicas"][0], shard_map[b]["primary"]}) == 3
    )
    x, z, y = shard_map[sa]["primary"], shard_map[sa]["replicas"][0], shard_map[sb]["primary"]
    a, b, b2 = vertex_on(sa, "a"), vertex_on(sb, "b"), vertex_on(sb, "c")

    nc = await nats.connect(nats_url)
    maps = MapCache(nc)
    await maps.start()
    try:
        g = GraphClient(ShardRouter(nc, maps), GRAPH, timeout=10.0)
        for v in (a, b, b2):
            await g.put_vertex(v, "Place", {"name": v})
        assert (await g.put_edge(a, "road", b, {"km": 3}, 3.0)).created
        assert [(e.dst, e.properties, e.weight) for e in await g.edges(a)] == [(b, {"km": 3}, 3.0)]
        assert [e.src for e in await g.edges(b, "in")] == [a]
        try:
            await g.put_edge(a, "road", "nowhere")
        except ToruaError as exc:
            assert exc.code == "not_found" and "'nowhere' (dst)" in exc.message
        else:
            raise AssertionError("an edge to a missing vertex was taken")

        # dst's primary stops answering: the put leaves the out-half pending (outcome unknown)
        c.nodes[y].pause()
        try:
            try:
                await g.put_edge(a, "road", b2)
            except ToruaError as exc:
                assert exc.code == "timeout" and "pending" in exc.message, exc
            else:
                raise AssertionError("the put was acknowledged with dst's primary paused")
            stats = (await g.call(sa, GraphOp.STATS)).counts
            assert stats["unsettled"] == 1
            c.nodes[x].kill()  # kill -9 of src's primary between the halves
        finally:
            c.nodes[y].resume()

        async def both_halves() -> bool:
            out = [e.dst for e in await g.edges(a)]
            into = [e.src for e in await g.edges(b2, "in")]
            settled = (await g.call(sa, GraphOp.STATS)).counts["unsettled"] == 0
            return out == sorted([b, b2]) and into == [a] and settled

        await poll(both_halves, 30, "the promoted replica to finish the edge with dst's shard")
        assert next(s for s in c.json("GET", "/shards")[1]["shards"] if s["shard_id"] == sa)["primary"] == z

        await g.delete_vertex(a)  # its halves on dst's shard go too

        async def gone() -> bool:
            outboxes = [(await g.call(s, GraphOp.STATS)).counts["outbox"] for s in (sa, sb)]
            return await g.edges(b, "in") == [] and await g.edges(b2, "in") == [] and outboxes == [0, 0]

        await poll(gone, 30, "the deleted vertex's edges gone from both shards")
    finally:
        await maps.stop()
        await nc.close()


@pytest.mark.timeout(120)
async def test_edges_across_shards_under_the_deployed_nats_permissions(group):
    """deploy/nats/auth.conf as it is: a node may read the shard map (to find the
    primary of an edge's other shard) and send it the other half; a client sends
    graph requests to nodes."""
    shutil.copy(AUTH_CONF, group.workdir / "auth.conf")
    _, url = start_nats(group, extra_conf=INCLUDE_AUTH, env=PASSWORDS)
    c = Cluster(group, url, shards=SHARDS)
    c.extra_args = credentials
    c.start(nodes=3)
    shard_map = {s["shard_id"]: s for s in c.json("GET", "/shards")[1]["shards"]}
    sa, sb = next((a, b) for a in shard_map for b in shard_map if shard_map[a]["primary"] != shard_map[b]["primary"])
    a, b = vertex_on(sa, "a"), vertex_on(sb, "b")
    nc = await nats.connect(url, user="client", password=PASSWORDS["TORUA_CLIENT_PASSWORD"], name="torua-client", inbox_prefix="_INBOX.torua-client")
    maps = MapCache(nc)
    await maps.start()
    try:
        g = GraphClient(ShardRouter(nc, maps, api_key=""), GRAPH, timeout=10.0)  # an application's requests: app.graph
        await g.put_vertex(a)
        await g.put_vertex(b)
        await g.put_edge(a, "road", b)
        assert [e.dst for e in await g.edges(a)] == [b] and [e.src for e in await g.edges(b, "in")] == [a]
        await g.delete_vertex(b)  # its in-half's drop task reaches a's shard
        await poll(lambda: _no_edges(g, a), 20, "the edge gone from src's shard")
    finally:
        await maps.stop()
        await nc.close()
    for proc in c.nodes.values():
        assert "permissions violation" not in proc.log().lower(), proc.log()[-2000:]


async def _no_edges(g: GraphClient, id: str) -> bool:
    return await g.edges(id) == []
