"""Control messages a process with a valid login could forge change nothing
(docs/design/security.md): an announced shard map the store does not hold is
ignored by gateways and clients, a node refuses a drop or freeze the stored
map does not call for, and the coordinator takes a heartbeat only from the
subject of the node it names. Real processes on a real nats-server (open here: the
forger has every right a login could give)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import nats
import pytest

from tests.integration.test_copy_reports import keys_of_shard
from tests.support.processes import Cluster, wait_until
from torua import Client
from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua import __version__
from torua.protocol.messages import Heartbeat, ShardCommand, ShardCommandReply, ShardEntry, ShardMap


@pytest.mark.timeout(180)
def test_a_forged_map_and_forged_drops_and_freezes_change_nothing(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    entry = c.json("GET", "/shards")[1]["shards"][0]
    shard, primary, replica = entry["shard_id"], entry["primary"], next(n for n in entry["replicas"] if n != entry["primary"])
    written = keys_of_shard(c, shard, 10, "forged")
    info = c.json("GET", "/cluster/info")[1]
    epoch, term = info["epoch"], info["term"]

    async def forge() -> tuple[list[ShardCommandReply], list[bytes | None]]:
        nc = await nats.connect(nats_url)
        try:
            async with Client(nats_url) as client:
                # every shard to a node that does not exist, far ahead of the real map
                forged = ShardMap(epoch + 100, c.shards, 2, [ShardEntry(i, "n9", [], ["n9"]) for i in range(c.shards)], leader="c1", term=term)
                await nc.publish(subjects.MAP_ANNOUNCE, encode(forged))
                await nc.flush()
                wait_until(lambda: "ignoring a shard map announced at epoch" in c.gateway.log_path.read_text(), 15, "the gateway to ignore the forged map")
                reads = [await client.get(key) for key in written]
                replies = []
                for node, call in ((primary, "shard.freeze"), (primary, "shard.drop"), (replica, "shard.drop")):
                    command = ShardCommand(shard, epoch, term=term)
                    msg = await nc.request(subjects.node(node, call), encode(command), timeout=10)
                    replies.append(decode(ShardCommandReply, msg.data))
                # n2's heartbeat, sent by someone else: on n3's subject, and on the shared one
                now = time.time()
                forged_beat = encode(Heartbeat("n2", __version__, 0, now, now, host="forged", pid=4242))
                for subject in (subjects.heartbeat("n3"), subjects.HEARTBEAT):
                    await nc.publish(subject, forged_beat)
                await nc.flush()
                return replies, reads
        finally:
            await nc.close()

    replies, reads = asyncio.run(forge())
    assert reads == list(written.values())  # the client routed by the stored map, too
    assert [(r.ok, r.error_code) for r in replies] == [(False, "conflict")] * 3
    assert f"records no move of shard {shard} from {primary}" in replies[0].error_message
    assert f"has {primary} as the primary of shard {shard}" in replies[1].error_message
    assert f"has {replica} as a replica of shard {shard}" in replies[2].error_message
    for node in (primary, replica):
        assert f"refused shard.drop of shard {shard}" in c.nodes[node].log_path.read_text()
    coordinator_log = lambda: c.coordinator.log_path.read_text()  # noqa: E731
    wait_until(lambda: "ignoring a heartbeat on torua.cluster.heartbeat.n3: a heartbeat naming n2 came on the subject of n3" in coordinator_log()
               and "ignoring a heartbeat on torua.cluster.heartbeat: n2 heartbeats on its own subject" in coordinator_log(),
               15, "the coordinator to ignore both forged heartbeats")
    n2 = c.json("GET", "/nodes/n2")[1]
    assert (n2["pid"], n2["health"]) == (c.nodes["n2"].pid, "healthy")

    # nothing changed: the gateway's map, both copies, writes taken by the primary
    assert c.json("GET", "/cluster/info")[1]["epoch"] < epoch + 100
    assert c.json("GET", "/cluster/health")[1]["status"] == "green"
    for key, value in written.items():
        assert c.request("GET", "/data/" + quote(key, safe=""))[1] == value
    more = keys_of_shard(c, shard, 3, "after")
    for key, value in more.items():
        assert c.request("GET", "/data/" + quote(key, safe=""))[1] == value
    now = c.json("GET", "/shards")[1]["shards"][shard]
    assert (now["primary"], sorted(now["in_sync"])) == (primary, sorted([primary, replica]))
