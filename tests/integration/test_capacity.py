"""Capacity on real clusters: max_shards, disk watermarks, bulk maintenance,
evacuation, and the allocation explanation that says why."""

from __future__ import annotations

import asyncio
import json

import nats
import psutil
import pytest

from tests.support.processes import Cluster, wait_until


def idle(c: Cluster) -> bool:
    return c.idle()


def copies(c: Cluster) -> dict[str, list[int]]:
    """node -> shards it holds a copy of (primary or replica), from /shards."""
    out: dict[str, list[int]] = {n: [] for n in c.nodes}
    for s in c.json("GET", "/shards")[1]["shards"]:
        for n in ([s["primary"]] if s["primary"] else []) + s["replicas"]:
            out.setdefault(n, []).append(s["shard_id"])
    return out


def node(c: Cluster, node_id: str) -> dict:
    status, body = c.json("GET", f"/nodes/{node_id}")
    assert status == 200, body
    return body


def explain(c: Cluster, shard: int) -> dict:
    status, body = c.json("GET", f"/cluster/allocation/explain?shard={shard}")
    assert status == 200, body
    return body


def decision(explanation: dict, node_id: str) -> dict:
    return next(d for d in explanation["nodes"] if d["node"] == node_id)


def nats_explain(c: Cluster, body: dict) -> dict:
    """`torua.api.cluster.explain` in JSON, as the NATS CLI would send it."""

    async def ask() -> dict:
        nc = await nats.connect(c.nats_url)
        try:
            msg = await nc.request("torua.api.cluster.explain", json.dumps(body).encode(), timeout=5, headers={"Content-Type": "application/json"})
            return json.loads(msg.data)
        finally:
            await nc.close()

    return asyncio.run(ask())


def set_config(c: Cluster, **changes) -> None:
    status, body = c.json("PUT", "/cluster/config", changes)
    assert status == 200, body


def test_max_shards_is_kept_and_explain_names_primary_and_refuses_bad_shards(group, nats_url):
    c = Cluster(group, nats_url, shards=8)
    c.start_coordinator(expect_nodes=3)
    c.start_node("n1", ["--max-shards", "2"])
    c.start_node("n2")
    c.start_node("n3")
    c.start_gateway()
    c.wait_formed()
    held = copies(c)
    assert len(held["n1"]) == 2 and sorted(len(held[n]) for n in ("n2", "n3")) == [3, 3], held

    n1 = node(c, "n1")
    cap = n1["capacity"]
    assert (n1["max_shards"], cap["max_shards"], cap["shards"], cap["free_slots"]) == (2, 2, 2, 0)
    assert cap["disk_total_bytes"] > 0 and cap["disk_used_bytes"] > 0 and 0 < cap["disk_percent"] < 100
    assert cap["disk_level"] == "ok" and n1["maintenance"] is False and n1["evacuating"] is False
    assert n1["status"] == "healthy" and n1["uptime_seconds"] is not None and n1["version"] and n1["host"]

    shard = next(s for s in c.json("GET", "/shards")[1]["shards"] if s["primary"] != "n1")
    e = explain(c, shard["shard_id"])
    assert e["primary"] == shard["primary"] and e["status"] == "assigned" and shard["primary"] in e["summary"]
    assert e["copies"][0]["node"] == shard["primary"] and e["copies"][0]["role"] == "primary"
    assert decision(e, "n1")["decision"] == "cannot_take" and decision(e, "n1")["codes"] == ["max_shards"]

    for query, words in [("", "required"), ("?shard=", "required"), ("?shard=x", "shard number"), ("?shard=-1", "shard number"),
                         ("?shard=8", "from 0 to 7"), ("?shard=99999", "from 0 to 7")]:
        status, body = c.json("GET", "/cluster/allocation/explain" + query)
        assert status == 400 and words in body["error"]["message"], (query, body)
    assert nats_explain(c, {"shard": shard["shard_id"]}) == e
    assert nats_explain(c, {"shard": 8})["error"]["code"] == "bad_request"
    assert nats_explain(c, {})["error"]["code"] == "bad_request"

    # More nodes: n1 still never goes over 2, the others balance the rest.
    c.start_node("n4")
    wait_until(lambda: idle(c) and len(copies(c)["n4"]) == 2, 60, "n4 to take its share")
    held = copies(c)
    assert len(held["n1"]) <= 2 and sorted(len(held[n]) for n in ("n2", "n3", "n4")) == [2, 2, 2], held


def test_node_joining_above_the_low_watermark_gets_no_copies_and_explain_says_so(group, nats_url):
    if psutil.disk_usage(str(group.workdir)).percent < 2:
        pytest.skip("the test's disk is almost empty: no watermark can be set below its use")
    c = Cluster(group, nats_url, shards=8).start(nodes=3)
    before = copies(c)
    set_config(c, disk_low_watermark=1.0)  # below any real use: every node is now above it
    wait_until(lambda: all(n["capacity"]["disk_level"] == "above_low" for n in c.json("GET", "/nodes")[1]["nodes"]), 15, "levels above_low")
    c.start_node("n4")
    wait_until(lambda: node(c, "n4")["health"] == "healthy" and node(c, "n4")["capacity"]["disk_level"] == "above_low", 15, "n4 above_low")
    # explain runs the coordinator's own planner: no shard is planned onto n4, and n4 says why.
    for shard in range(8):
        e = explain(c, shard)
        assert "n4" not in e["planned"], e
        n4 = decision(e, "n4")
        assert n4["decision"] == "cannot_take" and "disk_low_watermark" in n4["codes"], n4
        assert "above the low watermark (1%)" in n4["reason"], n4
    assert idle(c) and copies(c) == before | {"n4": []}

    # Above the high watermark too: everything should leave, but there is no room anywhere, so nothing moves.
    set_config(c, disk_high_watermark=1.0)
    wait_until(lambda: all(n["capacity"]["disk_level"] == "above_high" for n in c.json("GET", "/nodes")[1]["nodes"]), 15, "levels above_high")
    e = explain(c, 0)
    assert e["copies"][0]["stays"] and "no other node may take it" in e["copies"][0]["reason"], e
    assert idle(c) and copies(c) == before | {"n4": []}

    # The watermarks were the only reason: back to the defaults, n4 takes its share.
    set_config(c, disk_high_watermark=90.0, disk_low_watermark=85.0)
    wait_until(lambda: idle(c) and len(copies(c)["n4"]) == 2, 60, "n4 to take copies once below the watermark")


def test_evacuate_moves_every_copy_off_and_keeps_the_data(group, nats_url):
    c = Cluster(group, nats_url, shards=8).start(nodes=3)
    for i in range(60):
        assert c.request("PUT", f"/data/evac-{i}", f"v{i}".encode())[0] == 204
    status, body = c.json("POST", "/nodes/n1/evacuate")
    assert status == 202 and body["evacuating"] is True and body["status"] in ("evacuating", "evacuated"), body
    wait_until(lambda: node(c, "n1")["status"] == "evacuated" and idle(c), 60, "n1 evacuated")
    assert copies(c)["n1"] == [] and node(c, "n1")["shards"] == 0
    for i in range(60):
        assert c.request("GET", f"/data/evac-{i}")[:2] == (200, f"v{i}".encode())
    assert decision(explain(c, 0), "n1")["codes"] == ["draining"]
    assert c.json("POST", "/nodes/n1/evacuate")[0] == 202  # again: nothing new
    assert c.json("POST", "/nodes/ghost/evacuate")[0] == 404

    status, body = c.json("DELETE", "/nodes/n1/evacuate")
    assert status == 200 and body["evacuating"] is False and body["status"] == "healthy", body
    wait_until(lambda: idle(c) and len(copies(c)["n1"]) >= 2, 60, "n1 to take copies again")


def test_evacuate_without_room_is_refused_and_changes_nothing(group, nats_url):
    c = Cluster(group, nats_url, shards=4, replicas=2).start(nodes=2)
    before = c.json("GET", "/shards")[1]
    status, body = c.json("POST", "/nodes/n1/evacuate")
    assert status == 409, body
    message = body["error"]["message"]
    assert "cannot evacuate n1" in message and "n2 already holds a copy of them" in message and "nothing changed" in message, message
    n1 = node(c, "n1")
    assert n1["evacuating"] is False and n1["status"] == "healthy" and n1["shards"] == 4
    after = c.json("GET", "/shards")[1]
    assert [(s["primary"], s["replicas"]) for s in after["shards"]] == [(s["primary"], s["replicas"]) for s in before["shards"]]


def test_bulk_maintenance_takes_nothing_new_survives_a_restart_and_can_drain(group, nats_url):
    c = Cluster(group, nats_url, shards=8).start(nodes=3)
    before = copies(c)

    for body, status, words in [
        ({"nodes": ["n3", "ghost", "ghost2"], "maintenance": True}, 404, "ghost, ghost2"),
        ({"nodes": [], "maintenance": True}, 400, "non-empty list"),
        ({"nodes": ["n1"]}, 400, "maintenance"),
        ({"nodes": ["n1"], "maintenance": "yes"}, 400, "true or false"),
        ({"nodes": ["n1"], "maintenance": False, "drain": True}, 400, "needs maintenance"),
        ({"nodes": ["n1"], "maintenance": True, "extra": 1}, 400, "unknown field"),
    ]:
        got, reply = c.json("POST", "/nodes/maintenance", body)
        assert got == status and words in reply["error"]["message"], (body, reply)
    assert not any(n["maintenance"] for n in c.json("GET", "/nodes")[1]["nodes"])  # all or nothing

    status, body = c.json("POST", "/nodes/maintenance", {"nodes": ["n1", "n2"], "maintenance": True})
    assert status == 200 and [(n["id"], n["maintenance"]) for n in body["nodes"]] == [("n1", True), ("n2", True)], body

    # The flag is stored with the node: a restarted coordinator still knows it.
    c.coordinator.terminate()
    c.start_coordinator(expect_nodes=3)
    wait_until(lambda: [n["maintenance"] for n in c.json("GET", "/nodes")[1]["nodes"]] == [True, True, False], 30, "maintenance after restart")

    c.start_node("n4")
    wait_until(lambda: idle(c) and len(copies(c)["n4"]) >= 1, 60, "n4 to take copies from n3")
    held = copies(c)
    assert held["n1"] == before["n1"] and held["n2"] == before["n2"], (before, held)  # kept, nothing new
    assert abs(len(held["n3"]) - len(held["n4"])) <= 1
    e = explain(c, held["n3"][0])
    assert decision(e, "n1")["codes"] == ["maintenance"] and decision(e, "n2")["codes"] == ["maintenance"]

    # With drain, n2's copies go to the nodes not in maintenance, never to n1.
    status, body = c.json("POST", "/nodes/maintenance", {"nodes": ["n2"], "maintenance": True, "drain": True})
    assert status == 200 and body["nodes"][0]["draining"] is True
    wait_until(lambda: node(c, "n2")["status"] == "drained" and idle(c), 60, "n2 drained")
    held = copies(c)
    assert held["n1"] == before["n1"] and held["n2"] == [] and len(held["n3"]) + len(held["n4"]) == 8 - len(before["n1"])

    status, body = c.json("POST", "/nodes/maintenance", {"nodes": ["n1", "n2"], "maintenance": False})
    assert status == 200 and all(not n["maintenance"] and not n["draining"] for n in body["nodes"]), body
    wait_until(lambda: idle(c) and len(copies(c)["n2"]) == 2, 60, "n2 to take copies again")
