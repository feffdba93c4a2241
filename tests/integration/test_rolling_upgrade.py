"""A rolling upgrade on real processes, by the README's procedure: with two copies
per shard and writes going on, every node in turn is drained, stopped (SIGTERM),
started again on the same data dir and undrained, then both coordinators are
restarted, standby first, then the gateway. Nothing acknowledged is lost and no
write fails. Run twice: restarting on this build, and upgrading for real from the
previous release (its source taken from this checkout's git history) to this build.
And shards moved between the previous release and this build, each way (their
snapshots in the shape the older one knows)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from torua import __version__
from torua.cli.up import torua_command

from tests.support.history import Op, check_key, value_of
from tests.support.processes import OPEN, Cluster, free_port, wait_until


class OverwritingWriter(threading.Thread):
    """Puts over a fixed set of keys again and again, remembering every attempt and its outcome."""

    def __init__(self, c: Cluster, writer: int, keys: int = 200) -> None:
        super().__init__(daemon=True)
        self.c, self.writer, self.keys = c, writer, keys
        self.ops: dict[int, Op] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.stop_flag.is_set():
            seq += 1
            key, value = f"roll/{self.writer}/{seq % self.keys}", value_of(self.writer, seq)
            op = self.ops[seq] = Op(seq, "put", key, value, started=time.monotonic())
            try:
                status, body, _ = self.c.request("PUT", f"/data/{key}", value)
                op.outcome, op.detail = ("acked", "") if status == 204 else ("failed", f"{status} {body[:200]!r}")
            except Exception as exc:  # timeout: unknown
                op.outcome, op.detail = "failed", repr(exc)
            op.finished = time.monotonic()

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(30)
        assert not self.is_alive()

    def acked(self) -> int:
        return sum(op.outcome == "acked" for op in list(self.ops.values()))

    def started_since(self, t: float) -> bool:
        """Has this writer started a request at or after `t` (so none of it earlier is still on its way)?"""
        return any(op.started >= t for op in list(self.ops.values())[-3:])

    def failed(self) -> list[Op]:
        return [op for op in list(self.ops.values()) if op.outcome == "failed"]

    def problems(self) -> list[str]:
        by_key: dict[str, list[Op]] = {}
        for seq in sorted(self.ops):
            by_key.setdefault(self.ops[seq].key, []).append(self.ops[seq])
        out = []
        for key, ops in by_key.items():
            status, body, _ = self.c.request("GET", f"/data/{key}")
            problem = check_key(self.writer, self.ops, key, ops, body if status == 200 else None)
            if status not in (200, 404):
                problem = f"GET {key}: {status} {body[:200]!r}"
            if problem:
                out.append(problem)
        return out


def node(c: Cluster, node_id: str) -> dict:
    return c.json("GET", f"/nodes/{node_id}")[1]


def settled(c: Cluster) -> bool:
    info = c.json("GET", "/cluster/info")[1]
    return info["health"] == "green" and not info["moves"] and info["nodes_healthy"] == len(c.nodes)


def upgrade_node(c: Cluster, node_id: str) -> None:
    """The README's procedure for one node."""
    status, body = c.json("POST", f"/nodes/{node_id}/drain")
    assert status == 202, body
    wait_until(lambda: node(c, node_id)["status"] == "drained", 60, f"{node_id} to hold no copy")
    assert all(node_id not in [s["primary"], *s["replicas"]] for s in c.json("GET", "/shards")[1]["shards"])
    assert c.nodes[node_id].terminate(timeout=20) == 0
    proc = c.start_node(node_id)  # the "upgraded" build: same id, same data dir
    wait_until(lambda: (n := node(c, node_id))["pid"] == proc.pid and n["health"] == "healthy", 30, f"{node_id} back")
    status, body = c.json("DELETE", f"/nodes/{node_id}/drain")
    assert status == 200, body
    wait_until(lambda: node(c, node_id)["shards"] > 0 and settled(c), 60, f"copies back on {node_id} and the cluster green")


def upgrade_coordinators(c: Cluster) -> None:
    """Standbys first, then the leader. The stopped leader gives up its lease, so
    either coordinator may lead afterwards, at a new term."""
    before = c.json("GET", "/cluster/info")[1]
    for coordinator_id in sorted(c.coordinators, key=lambda i: i == before["leader"]):
        assert c.coordinators[coordinator_id].terminate(timeout=20) == 0
        proc = c.start_coordinator(expect_nodes=len(c.nodes), coordinator_id=coordinator_id)
        # its own log first: the old process's standby entry may still be listed for a moment
        wait_until(lambda: re.search(rf"coordinator {coordinator_id} (standing by|leading)", proc.log()), 30, f"{coordinator_id} campaigning")
        wait_until(lambda: all_coordinators_there(c) and settled(c), 30, f"{coordinator_id} back")
    assert c.json("GET", "/cluster/info")[1]["term"] > before["term"]


def all_coordinators_there(c: Cluster) -> bool:
    info = c.json("GET", "/cluster/info")[1]
    return sorted([info["leader"], *info["standbys"]]) == sorted(c.coordinators)


def upgrade_gateway(c: Cluster, writers: list[OverwritingWriter]) -> None:
    """Start the new gateway, move the clients to it (c.url), wait until no request
    can still be on its way to the old one, then stop it: as a load balancer drains a
    gateway it took out of rotation. (A request that read the old address just before
    the switch could otherwise connect while the old gateway closes: no answer.)"""
    old = c.gateway
    assert old is not None
    new_port = free_port()
    new = c.start_gateway(new_port, use=False)  # clients stay on the old one until the new one answers

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{new_port}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_until(answers, 30, "the new gateway to answer")
    c.http_port, c.gateway = new_port, new
    switched = time.monotonic()
    wait_until(lambda: all(w.started_since(switched) for w in writers), 20, "every writer sending to the new gateway")
    assert old.terminate(timeout=20) == 0


# The previous release, 0.2.0: the last commit of the coordinator HA work.
PREVIOUS_RELEASE = ("0.2.0", "5d56e1dcb8baeada6b5cd1c68c2cd9d97b8d3d62")


def previous_release(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """How to run the previous release: its `torua` package from git, on this venv's
    dependencies (it needs no other). Skips when the checkout has no such history."""
    version, commit = PREVIOUS_RELEASE
    root = Path(__file__).resolve().parents[2]
    try:
        archive = subprocess.run(["git", "-C", str(root), "archive", commit, "torua"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot run git to get release {version}: {exc}")
    if archive.returncode != 0:
        pytest.skip(f"release {version} ({commit[:7]}) is not in this checkout's history: {archive.stderr.decode()[:200]}")
    src = workdir / f"torua-{version}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(src, filter="data")
    # -P: no current directory first on sys.path, where this build's package would be found
    return [sys.executable, "-P", "-m", "torua"], {"PYTHONPATH": str(src), **OPEN}


def versions_in_use(c: Cluster) -> list[str]:
    return sorted({n["version"] for n in c.json("GET", "/nodes")[1]["nodes"]})


@pytest.mark.parametrize("start_from", ["this build", "previous release"])
def test_a_rolling_upgrade_under_writes_loses_nothing(group, nats_url, start_from):
    this_build = (torua_command(), dict(OPEN))
    if start_from == "previous release":
        assert PREVIOUS_RELEASE[0] != __version__, "bump PREVIOUS_RELEASE to the release before this one"
        old_build = previous_release(group.workdir)
    else:
        old_build = this_build
    c = Cluster(group, nats_url, replicas=2)
    c.command, c.env = old_build
    c.start(nodes=3, coordinators=2)
    old_version = PREVIOUS_RELEASE[0] if start_from == "previous release" else __version__
    assert versions_in_use(c) == [old_version]
    c.command, c.env = this_build  # every process started from now on runs this build
    writers = [OverwritingWriter(c, w) for w in (1, 2)]
    for w in writers:
        w.start()
    seen_versions: set[tuple[str, ...]] = set()
    try:
        wait_until(lambda: all(w.acked() > 20 for w in writers), 20, "writes before the upgrade")
        for node_id in sorted(c.nodes):
            before = sum(w.acked() for w in writers)
            upgrade_node(c, node_id)
            seen_versions.add(tuple(versions_in_use(c)))
            wait_until(lambda: sum(w.acked() for w in writers) > before + 20, 20, f"writes after {node_id}")
        upgrade_coordinators(c)
        upgrade_gateway(c, writers)
        before = sum(w.acked() for w in writers)
        wait_until(lambda: sum(w.acked() for w in writers) > before + 20, 20, "writes after the coordinators and the gateway")
    finally:
        for w in writers:
            w.stop()
    acked, failed = sum(w.acked() for w in writers), [op for w in writers for op in w.failed()]
    print(f"\nrolling upgrade from {start_from} ({old_version} -> {__version__}): {acked} writes acknowledged, {len(failed)} failed; versions seen {sorted(seen_versions)}")
    if start_from == "previous release":
        assert (old_version, __version__) in seen_versions, f"the two builds never ran side by side: {seen_versions}"
    assert versions_in_use(c) == [__version__]
    assert c.json("GET", "/cluster/info")[1]["versions"] == [__version__]
    assert not failed, [f"{op.key}: {op.detail}" for op in failed[:5]]
    problems = [p for w in writers for p in w.problems()]
    assert not problems, problems[:5]
    assert {n["id"]: n["health"] for n in c.json("GET", "/nodes")[1]["nodes"]} == {"n1": "healthy", "n2": "healthy", "n3": "healthy"}


def test_shards_move_between_the_previous_release_and_this_build_both_ways(group, nats_url):
    """A move copies a shard as snapshot chunks, then the log. This build asks with the
    chunk formats it installs and reads the previous release's key-value rows; the
    previous release asks without formats and gets rows from this build."""
    old_build, this_build = previous_release(group.workdir), (torua_command(), {})
    c = Cluster(group, nats_url, shards=4)
    c.command, c.env = old_build
    c.start_coordinator(expect_nodes=2)
    c.start_node("n1")
    c.command, c.env = this_build
    c.start_node("n2")
    c.command, c.env = old_build
    c.start_gateway()
    c.wait_formed()
    assert versions_in_use(c) == sorted([PREVIOUS_RELEASE[0], __version__])
    values = {f"moving/{i}": f"value {i} ".encode() * (i % 50) for i in range(300)}
    for key, value in values.items():
        assert c.request("PUT", f"/data/{key}", value)[0] == 204
    before = {s["shard_id"]: s["primary"] for s in c.json("GET", "/shards")[1]["shards"]}
    assert set(before.values()) == {"n1", "n2"}, before  # a move each way
    for shard_id, source in before.items():
        target = "n2" if source == "n1" else "n1"
        status, body = c.json("POST", "/shards/assign", {"shard_id": shard_id, "node_id": target})
        assert status == 202, body
        wait_until(lambda: c.json("GET", "/shards")[1]["shards"][shard_id]["primary"] == target and not c.json("GET", "/cluster/info")[1]["moves"], 30, f"shard {shard_id} on {target}")
    for key, value in values.items():
        assert c.request("GET", f"/data/{key}")[:2] == (200, value), key
