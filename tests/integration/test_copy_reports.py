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
async def test_primaries_a_node_stopped_serving_are_handed_to_in_sync_replicas(group, nats_url):
    """An assignment the coordinator did not send (here one that gives n1 nothing,
    one epoch ahead) makes n1 stop serving and refuse the real ones; the map still
    names it primary. Its heartbeats say so, and its shards go to their in-sync
    replicas instead of staying unserved behind a green health."""
    import nats

    from torua.protocol import subjects
    from torua.protocol.codec import encode
    from torua.protocol.messages import Assignment

    c = Cluster(group, nats_url, replicas=2).start(nodes=3)
    shards = c.json("GET", "/shards")
    led = {s["shard_id"] for s in shards[1]["shards"] if s["primary"] == "n1"}
    written = {}
    for shard in sorted(led):
        written |= keys_of_shard(c, shard, 3, f"led{shard}")
    info = c.json("GET", "/cluster/info")[1]

    nc = await nats.connect(nats_url)
    try:
        await nc.request(subjects.node("n1", "assign"), encode(Assignment(info["epoch"] + 1, "n1", [], term=info["term"])), timeout=5)
    finally:
        await nc.close()

    wait_until(lambda: not led & _primaries(c, "n1"), 30, "n1's shards to be handed to their replicas")
    wait_until(lambda: c.json("GET", "/cluster/health")[1]["status"] == "green", 60, "green once n1 follows again")
    for key, value in written.items():
        assert c.request("GET", "/data/" + quote(key, safe=""))[1] == value


def _primaries(c: Cluster, node_id: str) -> set[int]:
    return {s["shard_id"] for s in c.json("GET", "/shards")[1]["shards"] if s["primary"] == node_id}
