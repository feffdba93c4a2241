"""Replication on real processes: every write reaches each in-sync copy before it is
acknowledged; a silent replica leaves the in-sync set instead of blocking writes,
and catches up and rejoins when it returns; once in sync a returning node leads
its share of primaries again by planned hand-off, no copy moved."""

from __future__ import annotations

from tests.support import shard_db
from tests.support.processes import Cluster, wait_until
from tests.support.writer import Writer


def test_every_acknowledged_write_is_on_every_in_sync_copy(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    shards = c.json("GET", "/shards")[1]
    assert shards["replication_factor"] == 2
    for s in shards["shards"]:
        assert len(s["replicas"]) == 1 and s["primary"] not in s["replicas"]
        assert sorted(s["in_sync"]) == sorted([s["primary"], *s["replicas"]])
    for i in range(60):
        assert c.request("PUT", f"/data/r-{i}", f"v{i}".encode())[0] == 204
    # Acknowledged means on the replica's disk already: read its SQLite file now, no waiting.
    shard_map = {s["shard_id"]: s for s in c.json("GET", "/shards")[1]["shards"]}
    for i in range(60):
        loc = c.location(f"r-{i}")
        replica = shard_map[loc["shard_id"]]["replicas"][0]
        assert shard_db.copy_value(group.workdir, replica, loc["shard_id"], f"r-{i}") == f"v{i}".encode()
    counts = {n: 0 for n in c.nodes}
    for s in shard_map.values():
        for n in [s["primary"], *s["replicas"]]:
            counts[n] += 1
    assert max(counts.values()) - min(counts.values()) <= 1


def test_a_dead_replica_leaves_the_in_sync_set_and_catches_up_when_back(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    argv = c.nodes["n3"].argv
    c.nodes["n3"].kill()
    writer = Writer(c, "while-n3-dead")
    writer.start()
    try:
        wait_until(lambda: len(writer.acked) > 100, 30, "writes to go on without n3")
        wait_until(
            lambda: all("n3" not in s["in_sync"] for s in c.json("GET", "/shards")[1]["shards"] if "n3" in s["replicas"]),
            20,
            "n3 out of every in-sync set",
        )
        health = c.json("GET", "/cluster/health")[1]
        # n3's primaries are unavailable (no failover yet); its replica copies only make shards yellow
        assert health["status"] in ("yellow", "red")
    finally:
        writer.stop()
    failures_on_n3_primaries = {k for k, _ in writer.failures}
    n3_primary_shards = {s["shard_id"] for s in c.json("GET", "/shards")[1]["shards"] if s["primary"] == "n3"}
    assert all(c.location(k)["shard_id"] in n3_primary_shards for k in failures_on_n3_primaries)

    c.nodes["n3"] = c.group.start("node-n3", argv)
    wait_until(lambda: c.json("GET", "/cluster/health")[1]["status"] == "green", 30, "n3 back in every in-sync set")
    shard_map = {s["shard_id"]: s for s in c.json("GET", "/shards")[1]["shards"]}
    for key, value in writer.acked.items():
        loc = c.location(key)
        for node_id in [shard_map[loc["shard_id"]]["primary"], *shard_map[loc["shard_id"]]["replicas"]]:
            assert shard_db.copy_value(group.workdir, node_id, loc["shard_id"], key) == value, (key, node_id)


def primaries_of(c, node_id: str) -> set[int]:
    return {s["shard_id"] for s in c.json("GET", "/shards")[1]["shards"] if s["primary"] == node_id}


def copies_of(c, node_id: str) -> set[int]:
    return {s["shard_id"] for s in c.json("GET", "/shards")[1]["shards"] if node_id in [s["primary"], *s["replicas"]]}


def primaries_balanced(c) -> bool:
    """Primaries per node within one, every copy in sync, no hand-off left to do."""
    led = c.shards_per_node()
    return max(led.values()) - min(led.values()) <= 1 and c.json("GET", "/cluster/health")[1]["status"] == "green"


def test_kill_dash_nine_of_a_primary_fails_over_and_it_leads_again_once_back(group, nats_url):
    """A primary's node is killed while a writer goes on: its shards fail over and no
    acknowledged write is lost. It comes back as a replica of the same copies,
    catches up, and then takes its share of primaries back by planned hand-off (a
    role change: no copy moves), with no write failing from its return on."""
    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    victim_shards = primaries_of(c, "n1")
    victim_copies = copies_of(c, "n1")
    assert victim_shards
    argv = c.nodes["n1"].argv
    writer = Writer(c, "through-failover")
    writer.start()
    try:
        wait_until(lambda: len(writer.acked) > 50, 20, "writes before the kill")
        c.nodes["n1"].kill()
        wait_until(lambda: not primaries_of(c, "n1"), 20, "every shard of n1 failed over")
        before = len(writer.acked)
        wait_until(lambda: len(writer.acked) > before + 100, 30, "writes after the failover")
        for s in c.json("GET", "/shards")[1]["shards"]:
            assert s["primary"] != "n1" and s["state"] == "active"
        led = c.shards_per_node()
        assert max(led.values()) - min(led.values()) > 1, led  # n1 leads none, the others all
        failed_before_return = len(writer.failures)
        c.nodes["n1"] = c.group.start("node-n1", argv)
        wait_until(lambda: primaries_balanced(c) and primaries_of(c, "n1"), 30, "n1 back in sync, leading its share again")
        before = len(writer.acked)
        wait_until(lambda: len(writer.acked) > before + 20, 20, "writes after the hand-offs")
    finally:
        writer.stop()
    print(f"writes acknowledged: {len(writer.acked)}, refused during failover: {failed_before_return}")
    assert writer.failures[failed_before_return:] == [], "a planned hand-off failed a write"
    assert copies_of(c, "n1") == victim_copies  # no copy moved back or away: only roles changed
    for key, value in writer.acked.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value), key


def test_a_paused_primary_that_wakes_never_acknowledges_or_shows_a_write(group, nats_url):
    import asyncio

    import nats

    from torua.protocol.codec import decode, encode
    from torua.protocol.messages import KvReply, KvRequest

    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    old_shards = primaries_of(c, "n2")
    old_copies = copies_of(c, "n2")
    shard = min(old_shards)
    old_epoch = c.json("GET", "/shards")[1]["epoch"]
    c.nodes["n2"].pause()
    try:
        wait_until(lambda: not primaries_of(c, "n2"), 20, "n2's shards failed over")
        key = next(k for k in (f"paused-{i}" for i in range(10000)) if c.location(k)["shard_id"] == shard)
        assert c.request("PUT", f"/data/{key}", b"new-primary")[0] == 204
    finally:
        c.nodes["n2"].resume()

    async def ask_old_primary() -> list[KvReply]:
        nc = await nats.connect(c.nats_url)
        try:
            replies = []
            for request in (
                KvRequest("put", shard, old_epoch, key=key, value=b"from-a-stale-client"),
                KvRequest("get", shard, old_epoch, key=key),
            ):
                msg = await nc.request("torua.node.n2.kv", encode(request), timeout=10)
                replies.append(decode(KvReply, msg.data))
            return replies
        finally:
            await nc.close()

    # Straight after waking, before anyone tells it: it refuses both (no lease), never 'ok'.
    put_reply, get_reply = asyncio.run(ask_old_primary())
    assert not put_reply.ok and put_reply.error_code in ("stale_epoch", "moved"), put_reply
    assert not get_reply.ok and get_reply.error_code in ("stale_epoch", "moved"), get_reply
    assert c.request("GET", f"/data/{key}")[:2] == (200, b"new-primary")
    wait_until(lambda: c.json("GET", "/cluster/health")[1]["status"] == "green", 30, "n2 back in sync as a replica")
    assert c.request("GET", f"/data/{key}")[:2] == (200, b"new-primary")
    assert copies_of(c, "n2") == old_copies  # back as a replica of what it held; no copy moved


def test_a_fourth_node_takes_copies_while_writes_go_on(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    writer = Writer(c, "join-rf2")
    writer.start()
    try:
        c.start_node("n4")

        def copies_per_node() -> dict[str, int]:
            counts = {n: 0 for n in ("n1", "n2", "n3", "n4")}
            for s in c.json("GET", "/shards")[1]["shards"]:
                for n in [s["primary"], *s["replicas"]]:
                    counts[n] += 1
            return counts

        def settled() -> bool:
            shards = c.json("GET", "/shards")[1]["shards"]
            if any(len([s["primary"], *s["replicas"]]) != 2 for s in shards):
                return False  # a copy is still being added or removed
            counts = copies_per_node()
            return c.json("GET", "/cluster/health")[1]["status"] == "green" and counts["n4"] > 0 and max(counts.values()) - min(counts.values()) <= 1

        wait_until(settled, 60, "copies balanced over 4 nodes, two per shard, all in sync")
    finally:
        writer.stop()
    assert not writer.failures, writer.failures[:5]
    for s in c.json("GET", "/shards")[1]["shards"]:
        assert len([s["primary"], *s["replicas"]]) == 2 and sorted(s["in_sync"]) == sorted([s["primary"], *s["replicas"]])
    for key, value in writer.acked.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value), key


def test_a_node_gone_longer_than_node_left_delay_has_its_copies_rebuilt(group, nats_url):
    c = Cluster(group, nats_url, replicas=2)
    c.start_coordinator(expect_nodes=3, extra=["--node-left-delay", "2"])
    for node_id in ("n1", "n2", "n3"):
        c.start_node(node_id)
    c.start_gateway()
    c.wait_formed()
    for i in range(80):
        assert c.request("PUT", f"/data/gone-{i}", f"v{i}".encode())[0] == 204
    c.nodes["n3"].kill()
    wait_until(
        lambda: all("n3" not in [s["primary"], *s["replicas"]] for s in c.json("GET", "/shards")[1]["shards"])
        and c.json("GET", "/cluster/health")[1]["shards_under_replicated"] == 0,
        60,
        "every copy n3 held rebuilt on n1 and n2, in sync",
    )
    for s in c.json("GET", "/shards")[1]["shards"]:
        assert sorted([s["primary"], *s["replicas"]]) == ["n1", "n2"]
    for i in range(80):
        assert c.request("GET", f"/data/gone-{i}")[:2] == (200, f"v{i}".encode())


def test_sigterm_hands_primaries_over_first_so_no_request_fails(group, nats_url):
    """A node stopped with SIGTERM hands its primaries over first (no write fails) and
    is given none back while it stops; started again, it leads its share again."""
    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    assert primaries_of(c, "n2")
    argv = c.nodes["n2"].argv
    writer = Writer(c, "through-sigterm")
    writer.start()
    try:
        wait_until(lambda: len(writer.acked) > 30, 20, "writes before the stop")
        logged = len(c.coordinator.log())
        code = c.nodes["n2"].terminate(timeout=20)
        assert code == 0
        before = len(writer.acked)
        wait_until(lambda: len(writer.acked) > before + 50, 20, "writes after the stop")
        wait_until(lambda: c.json("GET", "/nodes/n2")[1]["status"] == "unhealthy", 20, "n2 silent long enough to be unhealthy")
    finally:
        writer.stop()
    assert not writer.failures, writer.failures[:5]
    assert not primaries_of(c, "n2")
    assert "hand-off done" in c.nodes["n2"].log()
    # While it stopped, n2 led fewer than the others but was stopping: no primary was handed back to it.
    assert "-> n2" not in c.coordinator.log()[logged:], c.coordinator.log()[logged:]
    for key, value in writer.acked.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value)
    # Started again (a new process, so no longer stopping), it leads its share once in sync.
    c.nodes["n2"] = c.group.start("node-n2", argv)
    wait_until(lambda: primaries_balanced(c) and primaries_of(c, "n2"), 30, "n2 leading its share again")


def test_drain_moves_every_copy_off_and_undo_lets_copies_come_back(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    c.start_node("n4")
    wait_until(lambda: c.json("GET", "/nodes/n4")[1]["shards"] > 0 and c.json("GET", "/cluster/health")[1]["status"] == "green", 60, "n4 holding copies")
    for i in range(50):
        assert c.request("PUT", f"/data/drain-{i}", f"v{i}".encode())[0] == 204
    writer = Writer(c, "through-drain")
    writer.start()
    try:
        status, body = c.json("POST", "/nodes/n4/drain")
        assert status == 202 and body["status"] in ("draining", "drained")
        wait_until(lambda: c.json("GET", "/nodes/n4")[1]["status"] == "drained", 60, "n4 drained")
    finally:
        writer.stop()
    assert not writer.failures, writer.failures[:5]
    assert all("n4" not in [s["primary"], *s["replicas"]] for s in c.json("GET", "/shards")[1]["shards"])
    for i in range(50):
        assert c.request("GET", f"/data/drain-{i}")[:2] == (200, f"v{i}".encode())
    status, body = c.json("DELETE", "/nodes/n4/drain")
    assert status == 200 and body["status"] == "healthy"
    wait_until(lambda: c.json("GET", "/nodes/n4")[1]["shards"] > 0, 60, "copies back on n4 after the undo")
    assert c.json("POST", "/nodes/ghost/drain")[0] == 404


def test_eventual_reads_may_come_from_a_replica(group, nats_url):
    import asyncio

    import nats

    from torua.protocol.codec import decode, encode
    from torua.protocol.messages import KvReply, KvRequest

    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    assert c.request("PUT", "/data/eventual", b"v1")[0] == 204
    assert c.request("GET", "/data/eventual?consistency=eventual")[:2] == (200, b"v1")
    assert c.request("GET", "/data/eventual?consistency=strong")[:2] == (200, b"v1")
    assert c.request("GET", "/data/eventual?consistency=sometimes")[0] == 400
    loc = c.location("eventual")
    replica = next(s for s in c.json("GET", "/shards")[1]["shards"] if s["shard_id"] == loc["shard_id"])["replicas"][0]

    async def ask(eventual: bool) -> KvReply:
        nc = await nats.connect(c.nats_url)
        try:
            request = KvRequest("get", loc["shard_id"], loc["epoch"], key="eventual", eventual=eventual)
            return decode(KvReply, (await nc.request(f"torua.node.{replica}.kv", encode(request), timeout=5)).data)
        finally:
            await nc.close()

    # The replica answers an eventual read itself, and refuses a strong one (only the primary may).
    assert (lambda r: r.ok and r.found and r.value == b"v1")(asyncio.run(ask(True)))
    assert asyncio.run(ask(False)).error_code == "moved"


def test_changing_the_replication_factor_adds_copies(group, nats_url):
    c = Cluster(group, nats_url, replicas=1).start(nodes=3)
    for i in range(40):
        assert c.request("PUT", f"/data/rf-{i}", f"v{i}".encode())[0] == 204
    c.coordinator.terminate()
    c.replicas = 2
    c.start_coordinator(expect_nodes=3)

    def two_copies_in_sync() -> bool:
        shards = c.json("GET", "/shards")[1]
        return shards["replication_factor"] == 2 and all(
            len(s["replicas"]) == 1 and sorted(s["in_sync"]) == sorted([s["primary"], *s["replicas"]]) for s in shards["shards"]
        )

    wait_until(two_copies_in_sync, 60, "a second, in-sync copy of every shard")
    shard_map = {s["shard_id"]: s for s in c.json("GET", "/shards")[1]["shards"]}
    for i in range(40):
        loc = c.location(f"rf-{i}")
        assert shard_db.copy_value(group.workdir, shard_map[loc["shard_id"]]["replicas"][0], loc["shard_id"], f"rf-{i}") == f"v{i}".encode()


def test_a_replica_behind_the_trimmed_log_copies_the_shard_again(group, nats_url):
    c = Cluster(group, nats_url, replicas=2)
    c.start_coordinator(expect_nodes=3)
    for node_id in ("n1", "n2", "n3"):
        c.start_node(node_id, extra=["--log-retain-ops", "10"])
    c.start_gateway()
    c.wait_formed()
    argv = c.nodes["n3"].argv
    c.nodes["n3"].kill()
    for i in range(400):  # far past the 10-op log the primaries keep
        assert c.request("PUT", f"/data/trim-{i}", f"v{i}".encode())[0] == 204

    def logs_trimmed() -> bool:
        for s in c.json("GET", "/shards")[1]["shards"]:
            db = shard_db.shard_db(group.workdir, s["primary"], s["shard_id"])
            if shard_db.query(db, "SELECT count(*) FROM oplog")[0][0] > 20:
                return False
        return True

    wait_until(logs_trimmed, 30, "every primary's log trimmed past what n3 has")
    c.nodes["n3"] = c.group.start("node-n3", argv)
    wait_until(lambda: c.json("GET", "/cluster/health")[1]["status"] == "green", 60, "n3 back in every in-sync set")
    assert "copying it again" in c.nodes["n3"].log() or "truncated" in c.nodes["n3"].log()
    shard_map = {s["shard_id"]: s for s in c.json("GET", "/shards")[1]["shards"]}
    for i in range(400):
        loc = c.location(f"trim-{i}")
        if "n3" in [shard_map[loc["shard_id"]]["primary"], *shard_map[loc["shard_id"]]["replicas"]]:
            assert shard_db.copy_value(group.workdir, "n3", loc["shard_id"], f"trim-{i}") == f"v{i}".encode()
