"""Shards moving with their data while clients keep writing."""

from __future__ import annotations

from tests.support.processes import wait_until
from tests.support.writer import Writer


def idle(c) -> bool:
    return c.idle()


def test_fourth_node_takes_shards_with_data_while_a_writer_writes(cluster):
    c = cluster
    for i in range(200):
        assert c.request("PUT", f"/data/old-{i}", f"old{i}".encode())[0] == 204
    writer = Writer(c, "during")
    writer.start()
    try:
        c.start_node("n4")
        wait_until(lambda: c.shards_per_node().get("n4", 0) > 0, 30, "n4 to get shards")
        wait_until(
            lambda: idle(c) and (lambda counts: max(counts.values()) - min(counts.values()) <= 1)(c.shards_per_node()),
            60,
            "shards balanced over 4 nodes",
        )
    finally:
        writer.stop()
    counts = c.shards_per_node()
    assert set(counts) == {"n1", "n2", "n3", "n4"} and max(counts.values()) - min(counts.values()) <= 1
    assert len(writer.acked) > 50
    assert not writer.failures, writer.failures[:5]
    for i in range(200):
        assert c.request("GET", f"/data/old-{i}")[:2] == (200, f"old{i}".encode())
    for key, value in writer.acked.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value), key
    nodes = {n["id"]: n for n in c.json("GET", "/nodes")[1]["nodes"]}
    assert nodes["n4"]["status"] == "healthy" and nodes["n4"]["keys"] > 0


def test_manual_assign_moves_a_shard_with_its_data_under_traffic(cluster):
    c = cluster
    for i in range(100):
        assert c.request("PUT", f"/data/m-{i}", b"x" * i)[0] == 204
    shard = c.json("GET", "/shards")[1]["shards"][3]
    target = next(n for n in sorted(c.nodes) if n != shard["primary"])
    writer = Writer(c, "assign")
    writer.start()
    try:
        status, body = c.json("POST", "/shards/assign", {"shard_id": 3, "node_id": target})
        assert status == 202, body
        assert body["status"] == "moving"
        wait_until(lambda: c.json("GET", "/shards")[1]["shards"][3]["primary"] == target and idle(c), 30, "shard 3 on its new node")
        wait_until(lambda: len(writer.acked) > 20, 10, "writes after the move")
    finally:
        writer.stop()
    assert not writer.failures, writer.failures[:5]
    for i in range(100):
        assert c.request("GET", f"/data/m-{i}")[:2] == (200, b"x" * i)
    for key, value in writer.acked.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value)
    assert c.json("POST", "/shards/assign", {"shard_id": 3, "node_id": target})[1]["status"] == "already_there"


def test_assign_rejects_bad_requests_and_changes_nothing(cluster):
    c = cluster
    before = c.json("GET", "/shards")[1]
    assert c.json("POST", "/shards/assign", {"shard_id": 0, "node_id": "ghost"})[0] == 404
    assert c.json("POST", "/shards/assign", {"shard_id": 999, "node_id": "n1"})[0] == 404
    assert c.json("POST", "/shards/assign", {"shard_id": "zero", "node_id": "n1"})[0] == 400
    assert c.request("POST", "/shards/assign", b"{not json", {"Content-Type": "application/json"})[0] == 400
    after = c.json("GET", "/shards")[1]
    assert [s["primary"] for s in after["shards"]] == [s["primary"] for s in before["shards"]]
