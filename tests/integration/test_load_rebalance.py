"""Load-based rebalancing of hot shards on a real cluster (POST /cluster/rebalance).

Clients hammer the keys of the shards one node leads; the nodes report the
rates in their heartbeats; a rebalance spreads those shards over the nodes
without unbalancing shard counts, every key still reads back, and asking again
under the same load does nothing (no oscillation).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from collections import Counter

import nats
import pytest

from tests.support.processes import Cluster, wait_until
from torua.keys import shard_for_key

JSON = {"Content-Type": "application/json"}


class Load(threading.Thread):
    """PUTs then GETs its own keys round-robin over a keep-alive connection,
    remembering the last acknowledged value of each key and any failure."""

    def __init__(self, port: int, keys: list[str]) -> None:
        super().__init__(daemon=True)
        self.port, self.keys = port, keys
        self.acked: dict[str, bytes] = {}
        self.failures: list[tuple[str, str, int | str]] = []
        self.ops = 0
        self.stop_flag = threading.Event()

    def _call(self, conn: http.client.HTTPConnection, method: str, key: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn.request(method, f"/data/{key}", body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        for i in itertools.count():
            if self.stop_flag.is_set():
                break
            key = self.keys[i % len(self.keys)]
            value = f"{key}:{i}".encode()
            try:
                status, _ = self._call(conn, "PUT", key, value)
                if status != 204:
                    self.failures.append(("PUT", key, status))
                    continue
                self.acked[key] = value
                status, body = self._call(conn, "GET", key)
                if (status, body) != (200, value):
                    self.failures.append(("GET", key, status))
                self.ops += 2
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(("conn", key, repr(exc)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        conn.close()

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(30)


def keys_for(shard: int, num_shards: int, count: int, prefix: str) -> list[str]:
    return list(itertools.islice((k for i in itertools.count() if shard_for_key(k := f"{prefix}-{shard}-{i}", num_shards) == shard), count))


def spread(values) -> int:
    values = list(values)
    return max(values) - min(values)


def rebalance(c: Cluster, dry_run: bool) -> tuple[int, dict]:
    return c.json("POST", "/cluster/rebalance" + ("?dry_run=true" if dry_run else ""))


def idle(c: Cluster) -> dict:
    """The dry-run answer once no move, hand-off or catch-up is running and rates have settled."""
    status, body = rebalance(c, dry_run=True)
    assert status == 200, body
    return body if not body["reason"].startswith(("busy", "settling")) else {}


class HotLoad:
    """Cold data on every shard, and clients hammering three shards one node leads."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        shard_map = c.json("GET", "/shards")[1]
        n = shard_map["num_shards"]
        led: dict[str, list[int]] = {}
        for s in shard_map["shards"]:
            led.setdefault(s["primary"], []).append(s["shard_id"])
        self.node = min(led, key=lambda node: (-len(led[node]), node))
        self.shards = sorted(led[self.node])[:3]
        assert len(self.shards) == 3, led
        self.cold = {f"cold-{i}": f"c{i}".encode() for i in range(40)}
        for key, value in self.cold.items():
            assert c.request("PUT", f"/data/{key}", value)[0] == 204
        # each thread owns one key of every hot shard, so the hot shards are equally hot
        per_shard = {s: keys_for(s, n, 3, "hot") for s in self.shards}
        self.threads = [Load(c.http_port, [per_shard[s][t] for s in self.shards]) for t in range(3)]

    def __enter__(self) -> "HotLoad":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        for t in self.threads:
            t.stop()

    def hot_holders(self) -> Counter:
        m = self.c.json("GET", "/shards")[1]
        return Counter(m["shards"][s]["primary"] for s in self.shards)

    def check_after(self, replicas: int) -> None:
        """Counts balanced over every node, no client failure, every key reads back."""
        c = self.c
        copies = Counter({node: 0 for node in c.nodes})
        primaries = Counter({node: 0 for node in c.nodes})
        for s in c.json("GET", "/shards")[1]["shards"]:
            primaries[s["primary"]] += 1
            for node in [s["primary"], *s["replicas"]]:
                copies[node] += 1
            assert len(set([s["primary"], *s["replicas"]])) == replicas
        assert spread(copies.values()) <= 1, copies
        assert spread(primaries.values()) <= 1, primaries
        failures = [f for t in self.threads for f in t.failures]
        assert not failures, failures[:5]
        assert sum(t.ops for t in self.threads) > 100
        for t in self.threads:
            for key, value in t.acked.items():
                assert c.request("GET", f"/data/{key}")[:2] == (200, value), key
        for key, value in self.cold.items():
            assert c.request("GET", f"/data/{key}")[:2] == (200, value), key


@pytest.mark.parametrize("replicas", [1, 2])
def test_hot_shards_spread_and_stay_spread(group, nats_url, replicas):
    c = Cluster(group, nats_url, replicas=replicas).start(nodes=3)
    load = HotLoad(c)
    with load:
        seen = wait_until(lambda: (b := idle(c)) and b["actions"] and b, 30, "the heartbeats to show the hot shards")
        assert max(seen["loads"], key=seen["loads"].get) == load.node, seen
        assert all(seen["shard_rates"][str(s)] > 0 for s in load.shards), seen

        status, first = rebalance(c, dry_run=False)
        assert status == 202, first
        assert first["started"] and first["actions"], first
        assert first["actions"][0]["source"] == load.node
        assert {a["how"] for a in first["actions"]} == {"copy" if replicas == 1 else "primary"}

        wait_until(lambda: idle(c), 40, "the load moves to finish and rates to settle")
        epoch = c.json("GET", "/shards")[1]["epoch"]
        hot_on = load.hot_holders()
        assert hot_on[load.node] < 3 and max(hot_on.values()) < 3, hot_on
        if replicas == 1:
            assert max(hot_on.values()) == 1, hot_on  # copies can go anywhere: one hot shard per node

        # the same load again: nothing to do
        status, second = rebalance(c, dry_run=False)
        assert status == 200, second
        assert second["actions"] == [] and not second["started"], second
        assert second["reason"].startswith(("balanced", "nothing to do")), second
        assert c.json("GET", "/shards")[1]["epoch"] == epoch
    load.check_after(replicas)
    nodes = c.json("GET", "/nodes")[1]["nodes"]
    assert sum(x["ops_rate"] for x in nodes) > 0


def test_auto_rebalance_spreads_hot_shards_unasked(cluster):
    c = cluster
    status, body = c.json("PUT", "/cluster/config", {"auto_rebalance": True})
    assert status == 200 and body["settings"]["auto_rebalance"] is True, body
    load = HotLoad(c)
    with load:
        wait_until(lambda: max(load.hot_holders().values()) == 1, 45, "auto mode to spread the hot shards")
        balanced = wait_until(lambda: idle(c), 30, "the moves to finish and rates to settle")
        assert balanced["reason"].startswith("balanced") and balanced["actions"] == [], balanced
    load.check_after(1)


async def test_rebalance_over_http_and_nats_refuses_bad_input(cluster):
    c = cluster
    status, body = c.json("POST", "/cluster/rebalance?dry_run=maybe")
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = c.json("POST", "/cluster/rebalance")
    assert status == 200 and body["actions"] == [] and not body["started"], body
    assert body["reason"].startswith(("idle", "settling", "busy")), body  # no traffic yet
    assert set(body["loads"]) == set(c.nodes)
    nc = await nats.connect(c.nats_url)
    try:
        msg = await nc.request("torua.api.cluster.rebalance", b'{"dry_run": true}', timeout=5, headers=JSON)
        got = json.loads(msg.data)
        assert got["actions"] == [] and got["dry_run"] is True, got
        msg = await nc.request("torua.api.cluster.rebalance", b'{"dry_run": "yes"}', timeout=5, headers=JSON)
        assert json.loads(msg.data)["error"]["code"] == "bad_request"
        assert msg.headers["Nats-Service-Error-Code"] == "400"
    finally:
        await nc.close()
