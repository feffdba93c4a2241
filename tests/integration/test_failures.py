"""Node and coordinator failures on real processes: kill -9, SIGSTOP, restarts."""

from __future__ import annotations

import json
import threading

from tests.support.processes import wait_until
from tests.support.writer import Writer
from torua.graph.rules import vertex_shard


def write_keys(c, n: int, prefix: str = "k") -> dict[str, bytes]:
    written = {}
    for i in range(n):
        key, value = f"{prefix}-{i}", f"value-{i}".encode()
        assert c.request("PUT", f"/data/{key}", value)[0] == 204
        written[key] = value
    return written


def node_status(c, node_id: str) -> str:
    return c.json("GET", f"/nodes/{node_id}")[1]["status"]


def test_killed_node_keeps_its_shards_which_answer_503_until_it_returns(cluster):
    c = cluster
    written = write_keys(c, 120)
    assert c.json("PUT", "/graphs/g", {})[0] == 201
    before = c.json("GET", "/shards")[1]["shards"]
    victim_shards = {s["shard_id"] for s in before if s["primary"] == "n2"}
    assert victim_shards
    argv = c.nodes["n2"].argv
    c.nodes["n2"].kill()
    wait_until(lambda: node_status(c, "n2") == "unhealthy", 10, "n2 to turn unhealthy")
    wait_until(
        lambda: all(s["state"] == "unavailable" for s in c.json("GET", "/shards")[1]["shards"] if s["shard_id"] in victim_shards),
        10,
        "n2's shards to be marked unavailable",
    )
    health = c.json("GET", "/cluster/health")[1]
    assert health["status"] == "red"
    for key, value in written.items():
        loc = c.location(key)
        status, body, headers = c.request("GET", f"/data/{key}")
        if loc["shard_id"] in victim_shards:
            assert status == 503, (key, status)
            assert json.loads(body)["error"]["code"] == "unavailable"
            assert "Retry-After" in headers
        else:
            assert (status, body) == (200, value)
    # A graph import: lines only for the dead node's shards are refused whole with its
    # error (503), not answered 200 with every line failed; beside a live shard's line,
    # that line is applied and the dead shard's named as not.
    on_dead = [v for v in (f"v{i}" for i in range(200)) if vertex_shard("g", v, c.shards) in victim_shards][:2]
    alive = next(v for v in (f"v{i}" for i in range(200)) if vertex_shard("g", v, c.shards) not in victim_shards)
    body = "".join(json.dumps({"vertex": {"id": v}}) + "\n" for v in on_dead).encode()
    status, answer, headers = c.request("POST", "/graphs/g/import", body, {"Content-Type": "application/x-ndjson"})
    assert status == 503 and json.loads(answer)["error"]["code"] == "unavailable" and "Retry-After" in headers, (status, answer)
    body = "".join(json.dumps({"vertex": {"id": v}}) + "\n" for v in (alive, on_dead[0])).encode()
    status, answer, _ = c.request("POST", "/graphs/g/import", body, {"Content-Type": "application/x-ndjson"})
    outcome = json.loads(answer)
    assert status == 200 and outcome["vertices"] == 1 and [e["line"] for e in outcome["errors"]] == [2], outcome
    assert c.json("GET", f"/graphs/g/vertices/{alive}")[0] == 200
    # Never opened empty elsewhere: the dead node still holds them.
    after = c.json("GET", "/shards")[1]["shards"]
    assert {s["shard_id"] for s in after if s["primary"] == "n2"} == victim_shards

    c.nodes["n2"] = c.group.start("node-n2", argv)
    wait_until(lambda: c.json("GET", "/cluster/health")[1]["status"] == "green", 20, "the cluster to be green again")
    for key, value in written.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value)


def test_sigstopped_node_turns_unhealthy_and_healthy_again(cluster):
    c = cluster
    c.nodes["n3"].pause()
    try:
        wait_until(lambda: node_status(c, "n3") == "unhealthy", 10, "n3 to turn unhealthy")
        assert c.json("GET", "/nodes/n3")[1]["missed_heartbeats"] >= 3
    finally:
        c.nodes["n3"].resume()
    wait_until(lambda: node_status(c, "n3") == "healthy", 10, "n3 to be healthy again")
    wait_until(lambda: c.json("GET", "/cluster/health")[1]["status"] == "green", 10, "green")


def test_kill_dash_nine_and_restart_keeps_every_key(cluster):
    c = cluster
    written = write_keys(c, 150, "durable")
    for node_id in list(c.nodes):
        argv = c.nodes[node_id].argv
        c.nodes[node_id].kill()
        c.nodes[node_id] = c.group.start(f"node-{node_id}", argv)

    def back() -> bool:
        # Green alone may be the coordinator's view from before it noticed the kills (a
        # restart faster than its heartbeat timeout): wait for the restarted processes.
        if c.json("GET", "/cluster/health")[1]["status"] != "green":
            return False
        nodes = {node_id: c.json("GET", f"/nodes/{node_id}")[1] for node_id in c.nodes}
        return all(n["status"] == "healthy" and n["pid"] == c.nodes[node_id].pid and n["missed_heartbeats"] == 0 for node_id, n in nodes.items())

    wait_until(back, 30, "green after restarts, every node the restarted process")
    for key, value in written.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value), key


def test_restarted_coordinator_resumes_the_map_without_reshuffling(cluster):
    c = cluster
    written = write_keys(c, 40, "coord")
    before = {s["shard_id"]: s["primary"] for s in c.json("GET", "/shards")[1]["shards"]}
    epoch = c.json("GET", "/shards")[1]["epoch"]
    writer = Writer(c, "through-coordinator-restart")
    writer.start()
    states_seen: set[str] = set()
    watching = threading.Event()

    def watch_states() -> None:
        while not watching.is_set():
            states_seen.update(s["state"] for s in c.json("GET", "/shards")[1]["shards"])

    watcher = threading.Thread(target=watch_states, daemon=True)
    watcher.start()
    try:
        c.coordinator.kill()
        # Data keeps flowing without a coordinator.
        for key, value in written.items():
            assert c.request("GET", f"/data/{key}")[:2] == (200, value)
        c.start_coordinator(expect_nodes=3)
        wait_until(lambda: c.json("GET", "/nodes")[0] == 200 and all(n["status"] == "healthy" for n in c.json("GET", "/nodes")[1]["nodes"]), 15, "nodes healthy")
        wait_until(lambda: len(writer.acked) > 50, 15, "writes after the restart")
    finally:
        writer.stop()
        watching.set()
        watcher.join(10)
    # The restart never made a shard unavailable: every write went through.
    assert not writer.failures, writer.failures[:5]
    assert states_seen == {"active"}, states_seen
    for key, value in writer.acked.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value)
    shards = c.json("GET", "/shards")[1]
    assert {s["shard_id"]: s["primary"] for s in shards["shards"]} == before
    assert shards["epoch"] >= epoch
    assert c.request("PUT", "/data/after-restart", b"yes")[0] == 204


def test_a_holder_that_does_not_answer_within_the_deadline_is_504(cluster):
    """A gateway with a short deadline, a paused node: 504 with a JSON error, before the
    node is even noticed as unhealthy; then 503 once it is."""
    import urllib.error
    import urllib.request

    from tests.support.processes import free_port, wait_until as _wait
    from torua.cli.up import torua_command

    c = cluster
    port = free_port()
    c.group.start("gateway-short", torua_command() + ["gateway", "--port", str(port), "--request-timeout", "0.5", "--nats-url", c.nats_url])
    base = f"http://127.0.0.1:{port}"

    def get(path: str):
        try:
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    _wait(lambda: get("/health")[0] == 200 and get("/shards")[0] == 200, 15, "the second gateway")
    key = next(k for k in (f"deadline-{i}" for i in range(1000)) if c.location(k)["primary"] == "n2")
    assert c.request("PUT", f"/data/{key}", b"v")[0] == 204
    c.nodes["n2"].pause()
    try:
        status, body = get(f"/data/{key}")
        assert status == 504, (status, body)
        assert json.loads(body)["error"]["code"] == "timeout"
        _wait(lambda: get(f"/data/{key}")[0] == 503, 10, "503 once n2 is known to be down")
    finally:
        c.nodes["n2"].resume()
