"""Health, explanations and failover follow what nodes report they hold, not the
map alone (torua.coordinator.copy_reports), on real processes: a copy deleted on
disk is not in sync, and a replica recreated empty is never promoted."""

from __future__ import annotations

import shutil
from urllib.parse import quote

import pytest

from tests.support.processes import Cluster, wait_until


def keys_of_shard(c: Cluster, shard_id: int, count: int, prefix: str) -> dict[str, bytes]:
    """`count` keys that live in `shard_id`, written through the gateway."""
    from torua.keys import shard_for_key

    written: dict[str, bytes] = {}
    i = 0
    while len(written) < count:
        key = f"{prefix}/{i}"
        i += 1
        if shard_for_key(key, c.shards) == shard_id:
            value = f"value of {key}".encode()
            assert c.request("PUT", "/data/" + quote(key, safe=""), value)[0] == 204
            written[key] = value
    return written


def node_info(c: Cluster, node_id: str) -> dict:
    return c.json("GET", f"/nodes/{node_id}")[1]


@pytest.mark.timeout(180)
def test_a_primary_whose_data_is_gone_on_disk_is_red_not_green(group, nats_url):
    c = Cluster(group, nats_url, replicas=1).start(nodes=3)
    shards = c.json("GET", "/shards")[1]["shards"]
    shard = next(s["shard_id"] for s in shards if s["primary"] == "n1")
    written = keys_of_shard(c, shard, 5, "gone")

    c.nodes["n1"].kill()
    shutil.rmtree(group.workdir / "n1" / "shards" / str(shard))
    c.start_node("n1")

    wait_until(lambda: node_info(c, "n1")["missing_shards"] == [shard], 30, f"n1 to report that it lacks shard {shard}")
    health = wait_until(lambda: (h := c.json("GET", "/cluster/health")[1])["status"] == "red" and h, 10, "red health")
    assert health["shards_unavailable"] == 1
    explained = c.json("GET", f"/cluster/allocation/explain?shard={shard}")[1]
    assert explained["status"] == "unavailable"
    assert "does not have" in explained["summary"]
    assert [copy["in_sync"] for copy in explained["copies"]] == [False]
    # never opened empty: its keys answer 503, not 404
    key = next(iter(written))
    status, _, headers = c.request("GET", "/data/" + quote(key, safe=""))
    assert status == 503 and "Retry-After" in headers
    # every other shard is served as before
    other = next(s["shard_id"] for s in shards if s["shard_id"] != shard)
    for k, v in keys_of_shard(c, other, 3, "fine").items():
        assert c.request("GET", "/data/" + quote(k, safe=""))[1] == v


@pytest.mark.timeout(240)
def test_a_replica_recreated_empty_is_never_promoted(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    shards = c.json("GET", "/shards")[1]["shards"]
    entry = next(s for s in shards if "n2" in s["replicas"] and "n2" in s["in_sync"])
    shard, primary = entry["shard_id"], entry["primary"]
    written = keys_of_shard(c, shard, 20, "kept")

    # n2 loses its copy on disk; its primary is paused before n2 comes back, so the
    # empty copy n2 makes cannot refill: the map still calls it in sync
    c.nodes["n2"].kill()
    shutil.rmtree(group.workdir / "n2" / "shards" / str(shard))
    c.nodes[primary].pause()
    try:
        c.start_node("n2")
        # n2's report shows in its node info only until the coordinator acts on it (the
        # copy is then no longer counted on); with its primary paused nothing but that
        # report takes n2 out of the in-sync set
        wait_until(lambda: shard in node_info(c, "n2")["missing_shards"] or "n2" not in _shard(c, shard)["in_sync"],
                   30, f"n2 to say its copy of shard {shard} is not whole")
        wait_until(lambda: "n2" not in _shard(c, shard)["in_sync"], 10, f"n2 to leave shard {shard}'s in-sync set")
        # the paused primary's other shards fail over: failover has run, and has left this one alone
        wait_until(lambda: all(s["primary"] != primary for s in c.json("GET", "/shards")[1]["shards"] if s["shard_id"] != shard and s["in_sync"] != [primary]),
                   30, f"{primary}'s other shards to fail over")
        now = _shard(c, shard)
        assert now["primary"] == primary, f"shard {shard} was handed to a copy that may miss writes: {now}"
        explained = c.json("GET", f"/cluster/allocation/explain?shard={shard}")[1]
        assert explained["status"] == "unavailable"
        status = c.json("GET", "/cluster/health")[1]["status"]
        assert status == "red"
    finally:
        c.nodes[primary].resume()
    # once the primary is back, n2 refills and every acknowledged write is there
    wait_until(lambda: c.json("GET", "/cluster/health")[1]["status"] == "green", 60, "green once n2 refilled")
    for key, value in written.items():
        assert c.request("GET", "/data/" + quote(key, safe=""))[1] == value
    assert "n2" in _shard(c, shard)["in_sync"]


def _shard(c: Cluster, shard_id: int) -> dict:
    return c.json("GET", "/shards")[1]["shards"][shard_id]


@pytest.mark.timeout(180)
async def test_an_assignment_the_stored_map_does_not_hold_is_refused(group, nats_url):
    """An assignment the coordinator did not send (one that gives n1 nothing, one
    epoch ahead, or one at the current epoch asking n1 to create a shard empty) is
    refused by n1 against the stored map (torua.node.command_checks): n1 keeps
    serving, no primary moves, every key reads back. Before the check, the first
    one made n1 stop serving and refuse the real assignments."""
    import nats

    from torua.protocol import subjects
    from torua.protocol.codec import decode, encode
    from torua.protocol.messages import AssignedShard, Assignment, ShardCommandReply

    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    shards = c.json("GET", "/shards")[1]["shards"]
    led = {s["shard_id"] for s in shards if s["primary"] == "n1"}
    written = {}
    for shard in sorted(led):
        written |= keys_of_shard(c, shard, 3, f"led{shard}")
    info = c.json("GET", "/cluster/info")[1]
    held = [AssignedShard(s["shard_id"], "primary" if s["primary"] == "n1" else "replica", primary=s["primary"])
            for s in shards if "n1" in [s["primary"], *s["replicas"]]]
    forged = [
        Assignment(info["epoch"] + 1, "n1", [], term=info["term"]),
        Assignment(info["epoch"], "n1", [], term=info["term"], num_shards=c.shards),
        Assignment(info["epoch"], "n1", [AssignedShard(a.shard_id, a.role, create=True, primary=a.primary) for a in held], term=info["term"], num_shards=c.shards),
    ]

    nc = await nats.connect(nats_url)
    try:
        replies = [decode(ShardCommandReply, (await nc.request(subjects.node("n1", "assign"), encode(a), timeout=5)).data) for a in forged]
    finally:
        await nc.close()
    assert [(r.ok, r.error_code) for r in replies] == [(False, "conflict")] * 3
    assert "that map was never stored" in replies[0].error_message
    assert "gives n1 shards" in replies[1].error_message
    assert "asks to create shard" in replies[2].error_message
    assert "refused the assignment at epoch" in c.nodes["n1"].log_path.read_text()
    assert led == _primaries(c, "n1") and c.json("GET", "/cluster/health")[1]["status"] == "green"
    assert c.json("GET", "/nodes/n1")[1]["missing_shards"] == []
    for key, value in written.items():
        assert c.request("GET", "/data/" + quote(key, safe=""))[1] == value


def _primaries(c: Cluster, node_id: str) -> set[int]:
    return {s["shard_id"] for s in c.json("GET", "/shards")[1]["shards"] if s["primary"] == node_id}
