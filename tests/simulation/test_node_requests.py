"""What a node refuses and how it answers, whoever asks (the real coordinator, nodes
and gateway over the in-memory bus): requests naming a shard the cluster does not
have, once its assignment told it how many there are; content types stored before
nodes checked them."""

from __future__ import annotations

import asyncio

import pytest

from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.messages import (
    AssignedShard,
    Assignment,
    LogChunk,
    LogRequest,
    ShardCommand,
    ShardCommandReply,
    SnapshotChunk,
    SnapshotRequest,
)
from torua.storage.operations import KvPut
from tests.support.sim_cluster import SimCluster, sim_seed


@pytest.mark.timeout(60)
async def test_requests_naming_a_shard_the_cluster_does_not_have_are_refused(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=1)
    try:
        await cluster.start()
        async with asyncio.timeout(30):
            node = cluster.nodes["n1"]  # told the cluster has 2 shards by the coordinator's assignment
            assert cluster.gateway is not None
            nc, epoch, term = cluster.gateway.nc, cluster.map.epoch, node.term

            async def ask(call: str, message, reply_type):
                return decode(reply_type, (await nc.request(subjects.node("n1", call), encode(message), timeout=2)).data)

            before = (dict(node.holdings), node.epoch, sorted(p.name for p in node.shards_dir.iterdir()))
            for call in ("shard.copy", "shard.catch_up", "shard.freeze", "shard.unfreeze", "shard.drop", "shard.position"):
                reply = await ask(call, ShardCommand(2, epoch, source="n2", term=term), ShardCommandReply)
                assert (reply.ok, reply.error_code) == (False, "unknown_shard"), call
            snapshot = await ask("shard.snapshot", SnapshotRequest(7), SnapshotChunk)
            assert snapshot.error_code == "unknown_shard"
            for request in (LogRequest(7, 0), LogRequest(7, 0, replica="n2", wait=0.1)):
                assert (await ask("shard.log", request, LogChunk)).error_code == "unknown_shard"
            # an assignment naming such a shard is refused whole
            held = [AssignedShard(s, "primary") for s, h in node.holdings.items() if h.role == "primary"]
            bad = Assignment(epoch + 100, "n1", held + [AssignedShard(5, "primary", create=True)], term=term, num_shards=2)
            refusal = await ask("assign", bad, ShardCommandReply)
            assert (refusal.ok, refusal.error_code) == (False, "unknown_shard")
            assert (dict(node.holdings), node.epoch, sorted(p.name for p in node.shards_dir.iterdir())) == before
            assert await cluster.get("still/served") is None and cluster.green()
    finally:
        await cluster.stop()


@pytest.mark.timeout(60)
async def test_a_content_type_stored_before_the_rule_is_served_as_octet_stream(tmp_path):
    """A value stored with a CR/LF content type (before nodes checked it) is still
    served, as application/octet-stream: no HTTP header could carry the stored one."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=1, shards=1, replicas=1)
    try:
        await cluster.start()
        async with asyncio.timeout(30):
            store = cluster.nodes["n1"].holdings[0].store
            assert store is not None
            await store.apply(KvPut("legacy", b"old", "text/plain\r\nX-Injected: 1"))  # as an older node stored it
            assert cluster.gateway is not None
            assert await cluster.gateway.kv_get("legacy") == (b"old", "application/octet-stream")
            await cluster.put("legacy", b"new")
            assert await cluster.gateway.kv_get("legacy") == (b"new", "application/octet-stream")
    finally:
        await cluster.stop()


@pytest.mark.timeout(60)
async def test_a_copy_whose_store_is_closing_still_heartbeats_and_refuses_requests_as_moved(tmp_path):
    """A copy's store is closed before the holding lets go of it (a re-copy closes the
    old store, then opens the new one; a drop closes, then forgets): in that window a
    heartbeat still goes out, naming the copy, and a request for the shard is answered
    `moved` (the client asks the map again), not `internal`."""
    from torua.graph.rules import vertex_shard
    from torua.kv_rules import shard_for_key
    from torua.protocol.messages import GraphRef, GraphReply, GraphRequest, KvReply, KvRequest, VertexData
    from torua.protocol.vocabulary import GraphOp, KvOp

    key = next(k for k in (f"k{i}" for i in range(100)) if shard_for_key(k, 2) == 0)
    vertex = next(v for v in (f"v{i}" for i in range(100)) if vertex_shard("g", v, 2) == 0)

    cluster = SimCluster(tmp_path, sim_seed(), nodes=1, shards=2, replicas=1)
    try:
        await cluster.start()
        async with asyncio.timeout(30):
            node = cluster.nodes["n1"]
            assert cluster.gateway is not None
            nc, epoch = cluster.gateway.nc, cluster.map.epoch
            holding = node.holdings[0]
            assert holding.store is not None and holding.role == "primary"
            await holding.store.close()  # the holding still names it

            beat = node.heartbeat()
            assert [(r.shard_id, r.role) for r in beat.shards] == [(0, "primary"), (1, "primary")]

            async def ask(call: str, message, reply_type):
                return decode(reply_type, (await nc.request(subjects.node("n1", call), encode(message), timeout=2)).data)

            for request in (KvRequest(KvOp.PUT, 0, epoch, key=key, value=b"v"), KvRequest(KvOp.GET, 0, epoch, key=key)):
                reply = await ask("kv", request, KvReply)
                assert (reply.ok, reply.error_code) == (False, "moved"), (request.op, reply)
            graph = GraphRef("g", "uid-g")
            for request in (
                GraphRequest(GraphOp.VERTEX_PUT, 0, epoch, graph, vertex=VertexData(vertex, "V", {})),
                GraphRequest(GraphOp.VERTEX_GET, 0, epoch, graph, id=vertex),
            ):
                reply = await ask("graph", request, GraphReply)
                assert (reply.ok, reply.error_code) == (False, "moved"), (request.op, reply)
    finally:
        await cluster.stop()


@pytest.mark.timeout(60)
async def test_a_copy_that_told_a_failover_its_position_keeps_itself_whole_until_the_outcome(tmp_path):
    """`shard.position` (what a failover asks the in-sync replicas) records when and under
    which primary the copy answered: until a map names another primary (or the hold
    passes) the copy does not destroy itself to copy again (rejoin.may_recopy). Only a
    hand-off's freeze recorded it before; a CI run lost a corpus's first shard when a
    replica re-copied itself while the failover that promoted it was on its way."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=1, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(30):
            entry = cluster.map.shards[0]
            replica = next(n for n in entry.in_sync if n != entry.primary)
            holding = cluster.nodes[replica].holdings[0]
            assert holding.position_told is None
            assert cluster.gateway is not None
            msg = await cluster.gateway.nc.request(subjects.node(replica, "shard.position"), encode(ShardCommand(0, 0)), timeout=2)
            reply = decode(ShardCommandReply, msg.data)
            assert reply.ok and reply.last_seq == holding.store.last_seq()
            told = holding.position_told
            assert told is not None and told[0] == cluster.nodes[replica].epoch and told[2] == entry.primary
    finally:
        await cluster.stop()
