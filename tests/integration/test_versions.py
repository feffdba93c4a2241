"""Protocol versions on real processes: a heartbeat or command of an incompatible
version is refused with a reply every version reads, the refused node never joins,
and everything else keeps serving."""

from __future__ import annotations

import asyncio
import time

import msgpack
import nats
import pytest

from torua import __version__
from torua.protocol.codec import PROTOCOL_VERSION, Refused, decode, encode, encode_refusal
from torua.protocol.messages import Assignment, Heartbeat, LeaseGrant
from torua.protocol.versions import OLDEST_PROTOCOL_VERSION
from tests.support.processes import Cluster, wait_until


def versioned(msg, v) -> bytes:
    """`msg` as a build speaking protocol `v` would send it."""
    return msgpack.packb({**msgpack.unpackb(encode(msg)), "v": v}, use_bin_type=True)


def beat(node_id: str) -> Heartbeat:
    return Heartbeat(node_id, "9.9.9", 0, time.time(), time.time(), None, "elsewhere", 4242)


async def refusal_of(nc, subject: str, data: bytes, into: type) -> Refused:
    reply = await nc.request(subject, data, timeout=5)
    with pytest.raises(Refused) as err:
        decode(into, reply.data)
    return err.value


async def test_an_incompatible_heartbeat_is_refused_and_the_node_never_joins(cluster: Cluster):
    c = cluster
    nc = await nats.connect(c.nats_url)
    try:
        newer = await refusal_of(nc, "torua.cluster.heartbeat", versioned(beat("n9"), PROTOCOL_VERSION + 2), LeaseGrant)
        assert newer.code == "unsupported_version" and newer.by == "coordinator c1"
        assert f"protocol version {PROTOCOL_VERSION + 2} not supported (coordinator c1 speaks" in newer.message
        assert "upgrade coordinator c1 first" in newer.message
        older = await refusal_of(nc, "torua.cluster.heartbeat", versioned(beat("n8"), OLDEST_PROTOCOL_VERSION - 1), LeaseGrant)
        assert "upgrade node n8 to a release that speaks" in older.message
        # garbage with a reply subject is answered too, and changes nothing
        for garbage in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"v": PROTOCOL_VERSION, "node_id": "n7"})):
            assert (await refusal_of(nc, "torua.cluster.heartbeat", garbage, LeaseGrant)).code == "bad_request"
        # a node refuses a command of an incompatible version the same way
        assignment = Assignment(10**6, "n1", [], term=10**6)
        refused = await refusal_of(nc, "torua.node.n1.assign", versioned(assignment, PROTOCOL_VERSION + 2), LeaseGrant)
        assert refused.code == "unsupported_version" and refused.by == "node n1"
        assert f"protocol version {PROTOCOL_VERSION + 2} not supported (node n1 speaks" in refused.message
    finally:
        await nc.close()
    # The coordinator said why, naming the node and its software version.
    coordinator_log = wait_until(lambda: "refusing heartbeat of node n9 (torua 9.9.9)" in (log := c.coordinator.log()) and log, 10, "the refusal in the coordinator's log")
    assert "refusing heartbeat of node n8" in coordinator_log
    assert "refused torua.node.n1.assign" in c.nodes["n1"].log()
    # The refused nodes were never registered, placed or listed; the others show their versions.
    nodes = {n["id"]: n for n in c.json("GET", "/nodes")[1]["nodes"]}
    assert sorted(nodes) == ["n1", "n2", "n3"]
    assert all(n["version"] == __version__ and n["protocol"] == PROTOCOL_VERSION for n in nodes.values())
    assert c.json("GET", "/nodes/n9")[0] == 404
    assert all(s["primary"] in nodes for s in c.json("GET", "/shards")[1]["shards"])
    # A huge term in the refused assignment was not taken: the coordinator still commands n1.
    assert c.request("PUT", "/data/after-refusals", b"still here")[0] == 204
    assert c.request("GET", "/data/after-refusals")[:2] == (200, b"still here")
    assert c.json("GET", "/cluster/health")[1]["status"] == "green"


async def test_a_refused_node_says_why_and_keeps_asking(group, nats_url):
    """The node's side: it logs the coordinator's refusal once, stays up and keeps
    heartbeating. The refusal is made by the same function the coordinator uses."""
    c = Cluster(group, nats_url)
    nc = await nats.connect(nats_url)
    beats: list[Heartbeat] = []
    reason = "protocol version 1 not supported (coordinator c1 speaks 2..4); upgrade node n1 to a release that speaks one of 2..4"

    async def refuse(msg) -> None:
        beats.append(decode(Heartbeat, msg.data))
        await msg.respond(encode_refusal("unsupported_version", reason, by="coordinator c1"))

    sub = await nc.subscribe("torua.cluster.heartbeat", cb=refuse)
    try:
        node = c.start_node("n1")
        deadline = time.monotonic() + 20
        while len(beats) < 6 and time.monotonic() < deadline:  # poll; each refusal is answered at once
            await asyncio.sleep(0.05)
        assert len(beats) >= 6, f"only {len(beats)} heartbeats"
        assert node.alive()
        assert {b.node_id for b in beats} == {"n1"}
        log = wait_until(lambda: "refuses this node" in (text := node.log()) and text, 10, "the refusal in the node's log")
        assert f"coordinator c1 refuses this node: {reason}" in log
        assert log.count("refuses this node") == 1, "logged on every heartbeat"
    finally:
        await sub.unsubscribe()
        await nc.close()
