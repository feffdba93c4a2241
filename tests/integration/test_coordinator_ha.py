"""Coordinator high availability on real processes: two coordinators, one leads
through the lease in JetStream KV; kill -9 or SIGSTOP the leader and the standby
takes over, while a deposed leader that wakes up can change nothing.
"""

from __future__ import annotations

import asyncio
import time

import nats

from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.messages import ShardCommand, ShardCommandReply, ShardMap
from tests.support.processes import Cluster, wait_until
from tests.support.writer import Writer


def leading(c: Cluster, standby_wanted: bool = True) -> dict:
    """/cluster/info once a coordinator leads (and, if asked, another stands by)."""

    def ready():
        status, info = c.json("GET", "/cluster/info")
        return status == 200 and (info["standbys"] or not standby_wanted) and info

    return wait_until(ready, 30, "a leading coordinator" + (" and a standby" if standby_wanted else ""))


def led_by(c: Cluster, coordinator_id: str) -> dict:
    def ready():
        status, info = c.json("GET", "/cluster/info")
        return status == 200 and info["leader"] == coordinator_id and info

    return wait_until(ready, 30, f"{coordinator_id} to lead")


def stored_map(nats_url: str) -> ShardMap:
    async def read() -> ShardMap:
        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value(subjects.CLUSTER_BUCKET)
            return decode(ShardMap, (await kv.get(subjects.MAP_KEY)).value)
        finally:
            await nc.close()

    return asyncio.run(read())


def ask_node(nats_url: str, node_id: str, term: int) -> ShardCommandReply:
    """A harmless coordinator command (where is shard 0?) sent with `term`."""

    async def ask() -> ShardCommandReply:
        nc = await nats.connect(nats_url)
        try:
            msg = await nc.request(subjects.node(node_id, "shard.position"), encode(ShardCommand(0, 0, term=term)), timeout=5)
            return decode(ShardCommandReply, msg.data)
        finally:
            await nc.close()

    return asyncio.run(ask())


def primaries(c: Cluster) -> dict[int, str | None]:
    return {s["shard_id"]: s["primary"] for s in c.json("GET", "/shards")[1]["shards"]}


def test_the_standby_leads_after_kill_dash_nine_and_the_cluster_goes_on(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3, coordinators=2)
    first = leading(c)
    leader, standby = first["leader"], first["standbys"][0]
    assert {leader, standby} == {"c1", "c2"} and first["term"] > 0
    writer = Writer(c, "ha-kill")
    writer.start()
    try:
        wait_until(lambda: len(writer.acked) > 20, 15, "writes before the kill")
        killed_at = time.monotonic()
        c.coordinators[leader].kill()
        second = led_by(c, standby)
        took = time.monotonic() - killed_at
        assert second["term"] > first["term"]
        assert stored_map(nats_url).leader == standby
        print(f"\n{standby} leads {took:.2f}s after kill -9 of {leader} (lease {c.leader_lease}s), term {first['term']} -> {second['term']}")

        # The new leader does a leader's work: it fails a killed node's primaries over ...
        victim = next(p for p in primaries(c).values() if p)
        c.nodes[victim].kill()
        wait_until(lambda: all(p and p != victim for p in primaries(c).values()), 30, f"{victim}'s primaries to fail over")
        # ... and gives a joining node copies.
        c.start_node("n4")
        wait_until(lambda: any("n4" in [s["primary"], *s["replicas"]] for s in c.json("GET", "/shards")[1]["shards"]), 60, "n4 to get copies")
        wait_until(lambda: len(writer.acked) > 200, 30, "writes after the join")
    finally:
        writer.stop()
    assert not writer.failures, writer.failures[:5]
    for key, value in writer.acked.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value)
    print(f"{len(writer.acked)} acknowledged writes, all read back; 0 failed")


def test_a_paused_leader_that_wakes_changes_nothing(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3, coordinators=2)
    first = leading(c)
    old, new = first["leader"], first["standbys"][0]
    c.coordinators[old].pause()
    try:
        second = led_by(c, new)
        # While the old leader sleeps, the new one changes the map: drain n3.
        assert c.json("POST", "/nodes/n3/drain")[0] == 202
        wait_until(lambda: all("n3" not in [s["primary"], *s["replicas"]] for s in c.json("GET", "/shards")[1]["shards"]), 60, "n3 drained")
        before = stored_map(nats_url)
        log_before = len(c.coordinators[old].log())
    finally:
        c.coordinators[old].resume()
    wait_until(lambda: "stepped down" in c.coordinators[old].log()[log_before:], 30, f"{old} to step down")
    woke = c.coordinators[old].log()[log_before:]
    # It wrote no map after waking, and the map in JetStream is still the new leader's.
    assert "shard map epoch" not in woke, woke
    after = stored_map(nats_url)
    assert after.leader == new and after.term == second["term"] and after.epoch >= before.epoch
    # Nodes refuse the old term now and follow the new one.
    reply = ask_node(nats_url, "n1", first["term"])
    assert (reply.ok, reply.error_code) == (False, "stale_epoch"), reply
    assert ask_node(nats_url, "n1", second["term"]).ok
    # It stands by again (it announces itself at its next campaign round).
    wait_until(lambda: (i := led_by(c, new))["term"] == second["term"] and old in i["standbys"], 15, f"{old} to stand by")
    # Leading again after the new leader dies, the old one reads everything from JetStream,
    # the drain of n3 included: no copy moves back to n3.
    c.coordinators[new].kill()
    third = led_by(c, old)
    assert third["term"] > second["term"]
    n3 = wait_until(
        lambda: (n := next(n for n in c.json("GET", "/nodes")[1]["nodes"] if n["id"] == "n3"))["status"] != "unknown" and n,
        15,
        "n3 to beat under the third leadership",
    )
    assert n3["status"] == "drained" and n3["draining"], n3
    assert all("n3" not in [s["primary"], *s["replicas"]] for s in c.json("GET", "/shards")[1]["shards"])
    print(f"\n{old} paused, {new} led at term {second['term']}; {old} woke, stepped down, stood by, and leads again at term {third['term']}")


def test_a_new_leader_finishes_a_move_the_old_one_left_in_flight(group, nats_url):
    c = Cluster(group, nats_url, replicas=1).start(nodes=3, coordinators=2)
    first = leading(c)
    leader, standby = first["leader"], first["standbys"][0]
    shard = 0
    source = primaries(c)[shard]
    target = next(n for n in ("n1", "n2", "n3") if n != source)
    keys = {f"move-{i}": f"v{i}".encode() for i in range(400)}
    for key, value in keys.items():
        assert c.request("PUT", f"/data/{key}", value)[0] == 204
    # The target sleeps, so the move is surely still copying when the leader dies.
    c.nodes[target].pause()
    try:
        status, body = c.json("POST", "/shards/assign", {"shard_id": shard, "node_id": target})
        assert status == 202 and body["status"] == "moving", body
        assert stored_map(nats_url).shards[shard].target == target
        c.coordinators[leader].kill()
        led_by(c, standby)
    finally:
        c.nodes[target].resume()
    wait_until(lambda: primaries(c)[shard] == target, 60, f"shard {shard} to end on {target}")
    assert stored_map(nats_url).shards[shard].target is None
    for key, value in keys.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value)
    log = c.coordinators[standby].log()
    assert f"resuming the move of shard {shard}" in log and f"moved shard {shard} to {target}" in log, log[-3000:]
