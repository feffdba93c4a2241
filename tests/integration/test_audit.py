"""Every admin call through the gateway, over REST or the NATS API, leaves one JSON
line saying who asked what and how it ended (torua.gateway.audit), in the log and
in `--audit-log`, and is counted in /metrics; data calls leave none."""

from __future__ import annotations

import asyncio
import json

import nats

from tests.support.processes import Cluster, wait_until


def test_admin_calls_leave_an_audit_line_each_and_a_count(group, nats_url):
    trail = group.workdir / "audit.jsonl"
    c = Cluster(group, nats_url, shards=4)
    c.extra_args = lambda who: ["--audit-log", str(trail)] if who == "gateway" else []
    c.start(nodes=2)

    assert c.request("PUT", "/data/plain", b"data")[0] == 204          # data: not audited
    assert c.json("POST", "/nodes/n2/drain")[0] == 202
    assert c.json("POST", "/nodes/ghost/evacuate")[0] == 404
    assert c.json("PUT", "/cluster/config", {"nonsense": 1})[0] == 400  # a refused attempt is in the trail too

    async def over_nats() -> dict:
        nc = await nats.connect(nats_url)
        try:
            msg = await nc.request("torua.api.cluster.rebalance", json.dumps({"dry_run": True}).encode(), timeout=10,
                                   headers={"Content-Type": "application/json"})
            return json.loads(msg.data)
        finally:
            await nc.close()

    assert "error" not in asyncio.run(over_nats())

    lines = wait_until(lambda: len(read := trail.read_text().splitlines()) >= 4 and read, 10, "four audit lines")
    records = [json.loads(line) for line in lines]
    assert [(r["op"], r["who"], r["outcome"]) for r in records] == [
        ("drain", "127.0.0.1", "ok"), ("evacuate", "127.0.0.1", "unknown_node"),
        ("set_cluster_config", "127.0.0.1", "bad_request"), ("rebalance", "nats", "ok"),
    ]
    assert records[0]["arguments"]["node_id"] == "n2" and records[0]["time"].endswith("Z")
    log = c.gateway.log_path.read_text()
    assert all(json.dumps(r) in log for r in records)  # the same lines in the gateway's log
    metrics = c.request("GET", "/metrics")[1].decode()
    assert 'torua_gateway_admin_calls_total{op="drain",outcome="ok"} 1.0' in metrics
    assert 'torua_gateway_admin_calls_total{op="evacuate",outcome="unknown_node"} 1.0' in metrics
    assert "kv_put" not in "".join(line for line in metrics.splitlines() if line.startswith("torua_gateway_admin_calls"))
