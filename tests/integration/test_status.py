"""`torua status` as an operator runs it, against a real cluster."""

from __future__ import annotations

import re
import subprocess

from torua import __version__
from torua.cli.up import torua_command
from torua.protocol.codec import PROTOCOL_VERSION
from tests.support.processes import Cluster, wait_until


def status(c: Cluster) -> str:
    done = subprocess.run(torua_command() + ["status", "--nats-url", c.nats_url], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def row(out: str, node_id: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [node_id])


def test_status_names_the_leader_the_standby_and_every_node(group, nats_url):
    c = Cluster(group, nats_url, replicas=2).start(nodes=3, coordinators=2)
    info = c.json("GET", "/cluster/info")[1]
    leader, standby = info["leader"], ({"c1", "c2"} - {info["leader"]}).pop()
    wait_until(lambda: standby in c.json("GET", "/cluster/info")[1]["standbys"], 20, "the standby listed")
    out = status(c)
    assert out.startswith(f"cluster {info['cluster_id']}  health green  epoch ")
    assert re.search(rf"^coordinators: leader {leader} \(term \d+\), standing by: {standby}$", out, re.M), out
    assert f"nodes torua {__version__} (protocol {PROTOCOL_VERSION})" in out
    shards = c.json("GET", "/shards")[1]["shards"]
    for node_id in ("n1", "n2", "n3"):
        name, state, version, protocol, copies, primaries = row(out, node_id)[:6]
        assert (state, version, protocol) == ("healthy", __version__, str(PROTOCOL_VERSION)), out
        assert int(copies) == sum(node_id in [s["primary"], *s["replicas"]] for s in shards)
        assert int(primaries) == sum(node_id == s["primary"] for s in shards)
        assert re.search(rf"^  {node_id}  primary [\d ]+  replica [\d ]+$", out, re.M), out
    assert out.rstrip().endswith("moves: none")

    assert c.json("POST", "/nodes/n3/drain")[0] == 202
    wait_until(lambda: c.json("GET", "/nodes/n3")[1]["status"] == "drained", 60, "n3 drained")
    out = status(c)
    assert row(out, "n3")[1:2] == ["drained"] and re.search(r"^  n3  primary -  replica -$", out, re.M), out


def test_status_says_so_when_no_coordinator_answers(group, nats_url):
    done = subprocess.run(torua_command() + ["status", "--nats-url", nats_url], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "the coordinator does not answer" in done.stderr
