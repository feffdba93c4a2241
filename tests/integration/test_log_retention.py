"""Each shard's operation log stays bounded, and a shard with a trimmed log still moves whole."""

from __future__ import annotations

from torua.keys import shard_for_key
from tests.support import shard_db
from tests.support.processes import Cluster, wait_until


def oplog_rows(db_path) -> int:
    return shard_db.query(db_path, "SELECT count(*) FROM oplog")[0][0]


def test_log_is_trimmed_and_a_trimmed_shard_still_moves_with_all_its_data(group, nats_url):
    c = Cluster(group, nats_url)
    c.start_coordinator(expect_nodes=2)
    for node_id in ("n1", "n2"):
        c.start_node(node_id, extra=["--log-retain-ops", "20"])
    c.start_gateway()
    c.wait_formed()

    keys = [k for k in (f"trim-{i}" for i in range(2000)) if shard_for_key(k, c.shards) == 0][:150]
    for i, key in enumerate(keys):
        assert c.request("PUT", f"/data/{key}", f"v{i}".encode())[0] == 204
    holder = c.location(keys[0])["primary"]
    db = group.workdir / holder / "shards" / "0" / "shard.db"
    wait_until(lambda: oplog_rows(db) <= 40, 30, "shard 0's log to be trimmed to its retention")

    other = "n2" if holder == "n1" else "n1"
    assert c.json("POST", "/shards/assign", {"shard_id": 0, "node_id": other})[0] == 202
    wait_until(lambda: c.json("GET", "/shards")[1]["shards"][0]["primary"] == other and not c.json("GET", "/cluster/info")[1]["moves"], 30, "shard 0 on its new node")
    for i, key in enumerate(keys):
        assert c.request("GET", f"/data/{key}")[:2] == (200, f"v{i}".encode()), key
