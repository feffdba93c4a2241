"""Torua on a three-server NATS cluster (deploy/nats/cluster.conf), its buckets at
JetStream replication 3: losing, pausing or separating one NATS server loses
nothing acknowledged, and the side of a partition without a JetStream majority
cannot change the shard map.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import nats
import pytest

from torua.coordinator.state_store import ClusterState
from torua.rag import queue as rag_queue
from torua.rag.claim_store import open_claims
from torua.rag.claims import CLAIMS_BUCKET
from torua.protocol import subjects
from torua.protocol.codec import decode
from torua.protocol.messages import ShardMap
from tests.support.nats_cluster import NatsCluster
from tests.support.processes import Cluster, wait_until
from tests.support.writer import Writer


@pytest.fixture
def nats3(group):
    cluster = NatsCluster(group).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def read_map(url: str) -> ShardMap:
    async def read() -> ShardMap:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            kv = await nc.jetstream(timeout=3).key_value(subjects.CLUSTER_BUCKET)
            return decode(ShardMap, (await kv.get(subjects.MAP_KEY)).value)
        finally:
            await nc.close()

    return asyncio.run(read())


def leader_is(c: Cluster, coordinator_id: str) -> bool:
    status, info = c.json("GET", "/cluster/info")
    return status == 200 and info["leader"] == coordinator_id


def writes_go_on(writer: Writer, more: int, timeout: float, what: str) -> None:
    target = len(writer.acked) + more
    wait_until(lambda: len(writer.acked) >= target, timeout, what)


def check_acked(c: Cluster, writer: Writer) -> None:
    """Once the cluster is green again, every acknowledged write reads back exactly."""
    wait_until(lambda: (h := c.json("GET", "/cluster/health"))[0] == 200 and h[1]["status"] == "green", 30, "the cluster to be green again")
    for key, value in writer.acked.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value), key


def copies(url: str) -> dict[str, int]:
    """The copies of each JetStream stream (the buckets' too) across the NATS cluster."""
    async def read() -> dict[str, int]:
        nc = await nats.connect(servers=url.split(","), connect_timeout=2, allow_reconnect=False)
        try:
            return {s.config.name: s.config.num_replicas for s in await nc.jetstream(timeout=3).streams_info()}
        finally:
            await nc.close()

    return asyncio.run(read())


def made_first_with_one_copy(url: str) -> None:
    """The GraphRAG queue and claims, as a worker that came before the coordinator makes them."""
    async def make() -> None:
        nc = await nats.connect(servers=url.split(","), connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=5)
            await rag_queue.ensure_stream(js)
            await open_claims(js)
            await js.publish(rag_queue.subject("early"), b"queued before the coordinator", stream=rag_queue.STREAM)
        finally:
            await nc.close()

    asyncio.run(make())


@pytest.mark.timeout(240)
def test_torua_keeps_serving_when_a_nats_server_is_killed_or_paused(group, nats3):
    made_first_with_one_copy(nats3.url())
    assert copies(nats3.url())[rag_queue.STREAM] == 1
    c = Cluster(group, nats3.url(), replicas=2)
    c.extra_args = lambda who: ["--kv-replicas", "3"] if who.startswith("c") else []
    c.start(nodes=3, coordinators=2)
    # Every stream has three copies: those the coordinator made, and the two a worker made first, raised.
    held = copies(nats3.url())
    assert held == {name: 3 for name in held} and {rag_queue.STREAM, f"KV_{CLAIMS_BUCKET}", "KV_torua_cluster", "KV_torua_leader"} <= set(held), held
    writer = Writer(c, "nats-loss")
    writer.start()
    report = []
    try:
        writes_go_on(writer, 50, 20, "writes before any fault")
        for fault in ("kill", "pause"):
            victim = "nats-b" if fault == "kill" else "nats-a"
            failed_before, t0 = len(writer.failures), time.monotonic()
            if fault == "kill":
                nats3.procs[victim].kill()
            else:
                nats3.procs[victim].pause()
            try:
                writes_go_on(writer, 100, 60, f"writes with {victim} {fault}ed")
                recovered = time.monotonic() - t0
            finally:
                if fault == "kill":
                    nats3.restart(victim)
                else:
                    nats3.procs[victim].resume()
            nats3.wait_jetstream()
            report.append(f"{fault} {victim}: 100 more writes acknowledged {recovered:.1f}s later, {len(writer.failures) - failed_before} failed meanwhile")
        writes_go_on(writer, 50, 30, "writes with all three servers back")
    finally:
        writer.stop()
    check_acked(c, writer)
    stored = wait_until(lambda: read_map(nats3.url("nats-a")), 30, "the map from JetStream")
    assert stored.num_shards == c.shards
    print("\n" + "\n".join(report) + f"\n{len(writer.acked)} acknowledged writes, all read back")


@pytest.mark.timeout(240)
def test_a_separated_nats_server_cannot_change_the_map_and_the_majority_goes_on(group, nats3):
    majority = nats3.url("nats-a", "nats-b")
    c = Cluster(group, majority, replicas=2)
    # c1 talks only to nats-c, the server that will be cut off; everything else to a and b.
    c.start_coordinator(expect_nodes=3, coordinator_id="c1", extra=["--kv-replicas", "3", "--nats-url", nats3.url("nats-c")])
    wait_until(lambda: "elected leader" in c.coordinators["c1"].log(), 20, "c1 to lead")
    c.start_coordinator(expect_nodes=3, coordinator_id="c2", extra=["--kv-replicas", "3"])
    for node_id in ("n1", "n2", "n3"):
        c.start_node(node_id)
    c.start_gateway()
    c.wait_formed()
    assert leader_is(c, "c1")
    writer = Writer(c, "partition")
    writer.start()
    try:
        writes_go_on(writer, 50, 20, "writes before the partition")
        epoch_before = wait_until(lambda: read_map(nats3.url("nats-a")), 30, "the map from JetStream").epoch
        t0 = time.monotonic()
        nats3.separate("nats-c")
        wait_until(lambda: leader_is(c, "c2"), 30, "c2 (majority side) to lead")
        took = time.monotonic() - t0
        # The majority goes on: writes, and a map change (n3 drained).
        writes_go_on(writer, 100, 30, "writes on the majority side")
        assert c.json("POST", "/nodes/n3/drain")[0] == 202
        wait_until(lambda: read_map(nats3.url("nats-a")).epoch > epoch_before + 1, 30, "the majority to change the map")
        # The minority cannot: a map write through nats-c is refused for want of a JetStream majority.
        assert not asyncio.run(try_to_write_the_map(nats3.url("nats-c")))
        wait_until(lambda: "stepped down" in c.coordinators["c1"].log(), 30, "c1 to step down")
        majority_map = wait_until(lambda: read_map(nats3.url("nats-a")), 30, "the map from JetStream")
        assert majority_map.leader == "c2"
        nats3.join("nats-c")
        nats3.wait_jetstream()
        # Back together: nats-c serves the majority's map, one coordinator leads and the
        # other stands by (JetStream's own recovery may move the lead again), nothing is lost.
        wait_until(lambda: read_map(nats3.url("nats-c")).epoch >= majority_map.epoch, 30, "nats-c to catch up")
        wait_until(
            lambda: (info := c.json("GET", "/cluster/info"))[0] == 200 and sorted([info[1]["leader"], *info[1]["standbys"]]) == ["c1", "c2"],
            30,
            "one coordinator to lead and the other to stand by",
        )
        writes_go_on(writer, 50, 30, "writes after the partition healed")
    finally:
        writer.stop()
    check_acked(c, writer)
    print(f"\nnats-c cut off: c2 led {took:.1f}s later; the minority could not write the map; "
          f"{len(writer.acked)} acknowledged writes all read back, {len(writer.failures)} failed during the switch")


async def try_to_write_the_map(url: str) -> bool:
    """Can a coordinator connected to `url` write the shard map? (compare-and-set on the
    current revision, of the next epoch as a coordinator writes it: a write of the map
    as it was would pass for its own lost answer when the server's stream leader, cut
    off but not yet stepped down, shows the map it holds, `ClusterState.save_map`)"""
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=2)
        state = ClusterState(await js.key_value(subjects.CLUSTER_BUCKET), js)
        current = await asyncio.wait_for(state.load_map(), 5)
        assert current is not None
        await asyncio.wait_for(state.save_map(dataclasses.replace(current, epoch=current.epoch + 1)), 5)
        return True
    except Exception:
        return False
    finally:
        await nc.close()
