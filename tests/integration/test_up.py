"""`torua up`: one command runs the whole cluster, Ctrl-C stops all of it, data
survives; bad values are refused before anything starts; a data dir serves one
cluster; a restarted cluster gets its hand-added nodes back or says how."""

from __future__ import annotations

import json
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from torua.api_keys import admin_key_path, parse_token, worker_key_path
from torua.cli.up import torua_command
from tests.support.processes import free_port, wait_until


class Up:
    """A `torua up` whose output is read line by line on a thread, so every wait has a deadline."""

    def __init__(self, data_dir: Path, http_port: int, nats_port: int, *extra: str, nodes: int = 3, env: dict[str, str] | None = None) -> None:
        self.http_port, self.nats_port = http_port, nats_port
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            torua_command() + [
                "up", "--nodes", str(nodes), "--shards", "8", "--data-dir", str(data_dir), "--port", str(http_port),
                "--nats-port", str(nats_port), "--heartbeat-interval", "0.25", *extra,
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._children: dict[int, psutil.Process] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def http(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """A request with the admin API key `torua up` printed (none when it ran --insecure)."""
        key = admin_key_path(self.data_dir)
        return http(method, self.base + path, body, key.read_text().strip() if key.exists() else "")

    def get_json(self, path: str) -> dict:
        status, body = self.http("GET", path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def wait_line(self, pattern: str, timeout: float = 60) -> re.Match:
        """The first line from now on that matches `pattern` (a regex)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {timeout:g}s; output:\n{self.output}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"torua up exited ({self.proc.wait()}) before printing {pattern!r}; output:\n{self.output}")
            match = re.search(pattern, line)
            if match:
                return match

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_line(r"Torua is ready", timeout)
        self.remember_children()

    def remember_children(self) -> list[psutil.Process]:
        try:
            for c in psutil.Process(self.proc.pid).children(recursive=True):
                self._children.setdefault(c.pid, c)
        except psutil.Error:
            pass
        return list(self._children.values())

    def child(self, *words: str) -> psutil.Process:
        def has(cmdline: list[str], word: str) -> bool:
            return any(arg == word or arg.endswith("/" + word) for arg in cmdline)

        return next(c for c in psutil.Process(self.proc.pid).children() if all(has(c.cmdline(), w) for w in words))

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Stop it; every child it started has exited when it returns (not later, of
        the signal the kernel sends an orphan)."""
        self.remember_children()
        self.proc.send_signal(sig)
        code = self.proc.wait(60)
        left = [" ".join(c.cmdline()) for c in self._children.values() if _running(c)]
        assert not left, f"still running when torua up returned: {left}"
        return code

    def kill_all(self) -> None:
        self.remember_children()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for c in self._children.values():
            try:
                c.kill()
            except psutil.Error:
                pass


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def http(method: str, url: str, body: bytes | None = None, key: str = "") -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body and body.startswith(b"{") else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Hand:
    """Processes a test starts by hand beside `torua up`, all stopped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def run(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        self.procs.append(proc)
        return proc

    def node(self, node_id: str, data_dir: Path, nats_url: str, keys_in: Path) -> subprocess.Popen:
        """A node started by hand, with the key of it that `torua auth nats` gives from the
        data dir `keys_in` of the `torua up` whose NATS it joins."""
        argv = torua_command() + [
            "node", "--id", node_id, "--data-dir", str(data_dir), "--nats-url", nats_url, "--heartbeat-interval", "0.25",
            "--nats-nkey-seed", auth_nats(keys_in, "node", node_id),
        ]
        return self.run(argv, f"node-{node_id}")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def auth_nats(data_dir: Path, role: str, node_id: str = "") -> str:
    """`torua auth nats ROLE [ID]`: the seed file of that key (made if missing)."""
    done = subprocess.run(torua_command() + ["auth", "nats", role, *([node_id] if node_id else []), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done
    return done.stdout.strip()


def with_torua_on_path() -> dict[str, str]:
    """This environment, with the `torua` of this Python first on PATH (for a printed command)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture
def hand(tmp_path):
    h = Hand(tmp_path)
    try:
        yield h
    finally:
        h.stop_all()


def test_up_runs_a_cluster_and_ctrl_c_stops_every_process(tmp_path):
    up = Up(tmp_path / "data", free_port(), free_port())
    try:
        up.wait_ready()
        assert f"http://127.0.0.1:{up.http_port}" in up.output and up.nats_url in up.output
        cmdlines = [" ".join(c.cmdline()) for c in up.remember_children()]
        for role in ("coordinator", "node --id n1", "node --id n2", "node --id n3", "gateway"):
            assert any(f"torua {role}" in line for line in cmdlines), (role, cmdlines)
        assert any("nats-server" in line for line in cmdlines)
        # its GraphRAG worker reads and writes with a key of its own, of role write: not the admin key
        worker_key = worker_key_path(up.data_dir)
        assert any("torua worker" in line and f"--api-key-file {worker_key}" in line for line in cmdlines), cmdlines
        keys = {k["name"]: k for k in up.get_json("/auth/keys")["keys"]}
        assert keys["workers"]["role"] == "write" and keys["workers"]["id"] == parse_token(worker_key.read_text())[0], keys
        status, _ = http("POST", up.base + "/auth/keys", json.dumps({"name": "x", "role": "read"}).encode(), worker_key.read_text().strip())
        assert status == 403
        assert up.http("PUT", "/data/survives/restart", b"still here")[0] == 204
        assert up.stop() == 0
        # its worker was stopped while NATS still served (NATS goes last), not cut off by it
        worker_log = (up.data_dir / "logs" / "worker-w1.log").read_text()
        stopping = worker_log.find("SIGTERM received")
        assert stopping >= 0 and "disconnected from NATS" not in worker_log[:stopping], worker_log[-2000:]
        # each node limited its malloc arenas (--malloc-arenas, default 2) where glibc lets it
        arenas = "at most 2" if platform.libc_ver()[0] == "glibc" else "glibc's default or MALLOC_ARENA_MAX"
        for n in ("n1", "n2", "n3"):
            assert f"(malloc arenas: {arenas})" in (up.data_dir / "logs" / f"node-{n}.log").read_text()

        up = Up(tmp_path / "data", up.http_port, up.nats_port)
        up.wait_ready()
        assert up.http("GET", "/data/survives/restart") == (200, b"still here")
        # A child that dies is reported, with where its log is; the rest of the cluster keeps serving.
        n3 = up.child("node", "n3")
        n3.kill()
        up.wait_line(rf"node-n3 \(pid {n3.pid}\) exited with code -9; its log: .*node-n3\.log", 30)
        assert up.proc.poll() is None
        wait_until(lambda: up.http("GET", "/health")[0] == 200, 10, "the gateway to answer")
        # Paused processes (NATS, a node) do not hold the stop up: every process stops on its own.
        up.child("nats-server").suspend()
        up.child("node", "n1").suspend()
        started = time.monotonic()
        assert up.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 40, up.output
        assert "did not stop" not in up.output, up.output
    finally:
        up.kill_all()


def test_up_children_die_with_it_when_it_is_killed(tmp_path):
    up = Up(tmp_path / "data", free_port(), free_port())
    try:
        up.wait_line("Torua 3 nodes")
        children = wait_until(lambda: (ch := up.remember_children()) and len(ch) >= 6 and ch, 20, "children started")
        up.proc.kill()
        up.proc.wait(10)
        wait_until(lambda: not any(_running(c) for c in children), 20, "orphans to exit")
    finally:
        up.kill_all()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--replicas", "9"], "--replicas 9 needs at least 9 nodes (a shard's copies are on distinct nodes); this cluster has 3"),
        (["--nodes", "0"], "--nodes must be at least 1, not 0"),
        (["--coordinators", "0"], "--coordinators must be at least 1, not 0"),
        (["--shards", "0"], "shards must be between 1 and 4096 (for coordinator-c1)"),
        (["--port", "99999"], "--port must be from 1 to 65535, not 99999"),
        (["--nats-port", "0"], "--nats-port must be from 1 to 65535, not 0"),
        (["--heartbeat-interval", "0"], "heartbeat_interval must be > 0"),
        (["--metrics-port", "65534"], "--metrics-port 65534 needs 6 ports from it, up to 65539; ports end at 65535"),  # and a worker
        (["--log-level", "loud"], "log_level must be debug, info, warning or error, not 'loud'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_up_refuses_a_bad_value_before_starting_anything(tmp_path, flags, message):
    data_dir = tmp_path / "data"
    argv = torua_command() + ["up", "--data-dir", str(data_dir), "--port", str(free_port()), "--nats-port", str(free_port())] + flags
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done
    assert done.stderr.startswith("torua up: ") and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not data_dir.exists()  # nothing started, nothing written


def test_a_child_that_dies_while_starting_is_shown_with_its_log(tmp_path):
    """The node's own refusal is on the terminal, the not-ready report names real log
    files, and the cluster still says ready once it forms without that node."""
    data_dir = tmp_path / "data"
    (data_dir / "n1").mkdir(parents=True)
    (data_dir / "n1" / "node.json").write_text("{garbage")
    # the coordinator forms over n2 and n3 after its formation timeout (4 s here, 10 by
    # default), so the cluster is not ready at the ready timeout (2 s), which it reports
    up = Up(data_dir, free_port(), free_port(), "--ready-timeout", "2", env={"TORUA_FORMATION_TIMEOUT": "4"})
    try:
        up.wait_ready(60)
        out = up.output
        assert re.search(r"node-n1 \(pid \d+\) exited with code 1; the end of its log .*/logs/node-n1\.log:\n  \| torua node: .*node\.json is unreadable", out), out
        assert "the cluster is not ready after 2s (still running" in out
        logs = re.search(r"logs: (\S+)/<process>\.log, one per process: (.*)", out)
        assert logs, out
        for name in logs.group(2).split(", "):
            assert (Path(logs.group(1)) / f"{name}.log").is_file(), name
        assert "see the logs above" not in up.output
        assert up.stop() == 0
    finally:
        up.kill_all()


def test_a_data_dir_serves_one_cluster_and_a_node_dir_one_node(tmp_path, hand):
    """A second `torua up` on the same data dir (other ports) and a second `torua n1`
    on n1's dir are refused, naming the path and the holder, and change nothing:
    the first cluster stays green. A node killed with SIGKILL takes its dir again."""
    data_dir = tmp_path / "data"
    up = Up(data_dir, free_port(), free_port())
    try:
        up.wait_ready()
        assert up.http("PUT", "/data/mine", b"first")[0] == 204
        second = subprocess.run(
            torua_command() + ["up", "--data-dir", str(data_dir), "--port", str(free_port()), "--nats-port", str(free_port()), "--shards", "4"],
            capture_output=True, text=True, timeout=30,
        )
        assert second.returncode == 1, second
        assert second.stderr.strip() == f"torua up: {data_dir} is in use by torua up (pid {up.proc.pid}); one directory serves one process at a time"
        assert second.stdout == ""

        n1 = up.child("node", "n1")
        before = sorted((p.name, p.stat().st_mtime_ns) for p in (data_dir / "n1").iterdir())
        again = subprocess.run(
            torua_command() + ["node", "--id", "n1", "--data-dir", str(data_dir / "n1"), "--nats-url", up.nats_url],
            capture_output=True, text=True, timeout=30,
        )
        assert again.returncode == 1, again
        assert f"torua node: {data_dir / 'n1'} is in use by torua node --id n1 (pid {n1.pid})" in again.stderr, again.stderr
        assert sorted((p.name, p.stat().st_mtime_ns) for p in (data_dir / "n1").iterdir()) == before

        health = up.get_json("/cluster/health")
        assert health["status"] == "green" and health["nodes_total"] == 3, health
        # the map's epoch may still move as the new cluster settles: what must not change is who serves
        assert (_node(up, "n1")["pid"], _node(up, "n1")["health"]) == (n1.pid, "healthy")
        assert up.http("GET", "/data/mine") == (200, b"first")

        # kill -9 leaves no stale lock: the node started again takes its directory
        n4 = hand.node("n4", tmp_path / "elsewhere" / "n4", up.nats_url, data_dir)
        wait_until(lambda: _node(up, "n4")["health"] == "healthy", 30, "n4 healthy")
        n4.kill()
        n4.wait(10)
        again = hand.node("n4", tmp_path / "elsewhere" / "n4", up.nats_url, data_dir)
        wait_until(lambda: again.poll() is None and _node(up, "n4")["pid"] == again.pid and _node(up, "n4")["health"] == "healthy", 30, "n4 back")
        assert _node(up, "n4")["data_dir"] == str(tmp_path / "elsewhere" / "n4")
        assert up.stop() == 0
    finally:
        up.kill_all()


def _node(up: Up, node_id: str) -> dict:
    return next(n for n in up.get_json("/nodes")["nodes"] if n["id"] == node_id)


def _primaries(up: Up) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for shard in up.get_json("/shards")["shards"]:
        out.setdefault(shard["primary"], []).append(shard["shard_id"])
    return out


def test_a_restarted_cluster_gets_its_hand_added_nodes_back(tmp_path, hand):
    """The README tour adds n4 in the data dir by hand; another node, n5, runs from a
    directory elsewhere. Both get shards. After a stop, `torua up` starts n4 itself,
    says which shards wait for n5 and the exact command that starts it; run as
    printed, the cluster is ready and every key reads back."""
    data_dir = tmp_path / "data"
    up = Up(data_dir, free_port(), free_port())
    try:
        up.wait_ready()
        keys = {f"key-{i}": f"value-{i}".encode() for i in range(40)}
        for key, value in keys.items():
            assert up.http("PUT", f"/data/{key}", value)[0] == 204
        hand.node("n4", data_dir / "n4", up.nats_url, data_dir)
        hand.node("n5", tmp_path / "elsewhere" / "n5", up.nats_url, data_dir)
        # the new nodes take shards (rebalancing after a join), with their data
        wait_until(
            lambda: {"n4", "n5"} <= set(p := _primaries(up)) and up.get_json("/cluster/health")["status"] == "green"
            and not up.get_json("/cluster/info")["moves"] and p,
            60, "shards on n4 and n5",
        )
        on_n5 = _primaries(up)["n5"]
        hand.stop_all()
        assert up.stop() == 0

        up = Up(data_dir, up.http_port, up.nats_port)
        up.wait_line(rf"\+ node n4: its directory {re.escape(str(data_dir / 'n4'))} is in the data dir, so it is started too", 30)
        waits = up.wait_line(r"torua up: shards? ([\d, ]+) waits? for node n5, which this torua up does not start; start it with", 60)
        assert sorted(int(s) for s in waits.group(1).split(", ")) == sorted(on_n5)
        command = up.wait_line(r"^  (torua node .*)$", 5).group(1).strip()
        assert command == (f"torua node --id n5 --nats-url {up.nats_url} --data-dir {tmp_path / 'elsewhere' / 'n5'}"
                           f' --nats-nkey-seed "$(torua auth nats node n5 --data-dir {data_dir})"')
        assert "Torua is ready" not in up.output
        hand.run(["bash", "-c", "exec " + command], "n5-as-printed", env=with_torua_on_path())
        up.wait_ready(60)
        for key, value in keys.items():
            assert up.http("GET", f"/data/{key}") == (200, value), key
        assert up.stop() == 0
    finally:
        up.kill_all()


def test_the_embedded_nats_takes_only_the_keys_of_the_data_dir_each_role_its_own(tmp_path):
    """Security on from the first `torua up`: its nats-server refuses a connection
    without one of the data dir's keys (made on the first start, 0600, kept across
    restarts), each key may do what its role must and no more, and the tools find
    the client key from the data dir. `--insecure` runs it open, and says so."""
    import asyncio

    import nats

    from tests.integration.test_nats_security import Probe

    data_dir = tmp_path / "data"
    up = Up(data_dir, free_port(), free_port())
    try:
        up.wait_ready()
        secrets = data_dir / "secrets"
        assert f"NATS keys {secrets}" in up.output
        kept = {p.name: p.read_bytes() for p in secrets.iterdir()}
        assert set(kept) == {
            "nats-coordinator.nk", "nats-gateway.nk", "nats-client.nk", "nats-worker.nk", "nats-node-n1.nk", "nats-node-n2.nk", "nats-node-n3.nk",
            "admin.key", "worker.key",
        }
        assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in secrets.iterdir())

        async def probe() -> None:
            with pytest.raises(Exception, match="Authorization Violation"):
                await nats.connect(up.nats_url, allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0)
            async with Probe(up.nats_url, "", "", "torua-client", nkeys_seed=str(secrets / "nats-client.nk")) as client:
                await client.nc.publish("torua.cluster.map", b"forged")
                assert await client.refused('Publish to "torua.cluster.map"')
                await client.nc.publish("torua.node.n1.shard.drop", b"forged")
                assert await client.refused('Publish to "torua.node.n1.shard.drop"')
                # the gateway's own subject, whose callers it checked: an application sends on app.kv, with its API key
                await client.nc.publish("torua.node.n1.kv", b"forged")
                assert await client.refused('Publish to "torua.node.n1.kv"')
            async with Probe(up.nats_url, "", "", "torua-node-n1", nkeys_seed=str(secrets / "nats-node-n1.nk")) as n1:
                await n1.nc.subscribe("torua.node.n2.kv")
                assert await n1.refused('Subscription to "torua.node.n2.kv"')
                await n1.nc.publish("torua.node.n2.assign", b"forged")
                assert await n1.refused('Publish to "torua.node.n2.assign"')
                await n1.nc.publish("torua.cluster.heartbeat.n2", b"forged")
                assert await n1.refused('Publish to "torua.cluster.heartbeat.n2"')

        asyncio.run(probe())

        # a named application (one tenant's): its own NATS login, which reads only its own
        # replies, and a tenant API key, which the node checks on its one-hop requests
        acme_seed = auth_nats(data_dir, "client", "acme")
        kept[Path(acme_seed).name] = Path(acme_seed).read_bytes()  # kept across the restart below like the others
        status, made = up.http("POST", "/auth/keys", json.dumps({"name": "acme", "role": "write", "prefixes": ["acme/"]}).encode())
        assert status == 201, made
        tenant = json.loads(made)["token"]

        async def application() -> None:
            from torua.bus import NatsAuth
            from torua.client import Client
            from torua.protocol.errors import ToruaError

            async with Probe(up.nats_url, "", "", "torua-client-acme", nkeys_seed=acme_seed) as acme:
                await acme.nc.subscribe("_INBOX.>")
                assert await acme.refused('Subscription to "_INBOX.>"')
                await acme.nc.subscribe("_INBOX.torua-client.>")  # the shared login's replies
                assert await acme.refused('Subscription to "_INBOX.torua-client.>"')
                await acme.nc.publish("torua.coordinator.nodes", b"")
                assert await acme.refused('Publish to "torua.coordinator.nodes"')
            async with Client(up.nats_url, auth=NatsAuth(nkey_seed=acme_seed), name="acme", api_key=tenant) as db:
                await db.put("acme/doc", b"mine")
                assert await db.get("acme/doc") == b"mine"
                with pytest.raises(ToruaError) as err:
                    await db.get("keyed")
                assert err.value.code == "forbidden"

        asyncio.run(application())
        # the tools find the client key in the data dir
        env = {**os.environ, "TORUA_DATA_DIR": str(data_dir), "TORUA_NATS_URL": up.nats_url}
        put = subprocess.run(torua_command() + ["kv", "put", "keyed", "yes"], capture_output=True, text=True, timeout=60, env=env)
        assert put.returncode == 0, put
        assert subprocess.run(torua_command() + ["kv", "get", "keyed"], capture_output=True, timeout=60, env=env).stdout == b"yes"
        status = subprocess.run(torua_command() + ["status"], capture_output=True, text=True, timeout=60, env=env)
        assert status.returncode == 0 and "health green" in status.stdout, status
        # without them, a clear error
        elsewhere = {**env, "TORUA_DATA_DIR": str(tmp_path / "nowhere")}
        refused = subprocess.run(torua_command() + ["kv", "--timeout", "2", "get", "keyed"], capture_output=True, text=True, timeout=60, env=elsewhere)
        assert refused.returncode != 0 and "Authorization Violation" in refused.stderr and "no credentials were given" in refused.stderr, refused
        assert up.stop() == 0

        up = Up(data_dir, up.http_port, up.nats_port)
        up.wait_ready()
        assert {p.name: p.read_bytes() for p in secrets.iterdir()} == kept
        assert up.stop() == 0

        open_up = Up(tmp_path / "open", free_port(), free_port(), "--insecure")
        try:
            open_up.wait_ready()
            assert "WARNING   --insecure: this NATS takes any connection" in open_up.output
            assert "WARNING   --insecure: REST and the NATS API take requests without an API key" in open_up.output
            assert not (tmp_path / "open" / "secrets").exists()
            assert http("PUT", open_up.base + "/data/open", b"to anyone")[0] == 204
            # torua.Client's one hop to the node needs no key either (nodes run --insecure too)
            got = subprocess.run(
                torua_command() + ["kv", "get", "open"], capture_output=True, timeout=60,
                env={**os.environ, "TORUA_NATS_URL": open_up.nats_url, "TORUA_DATA_DIR": str(tmp_path / "open")},
            )
            assert got.returncode == 0 and got.stdout == b"to anyone", got

            async def anyone() -> bool:
                nc = await nats.connect(open_up.nats_url, allow_reconnect=False, connect_timeout=5)
                await nc.close()
                return True

            assert asyncio.run(anyone())
            assert open_up.stop() == 0
        finally:
            open_up.kill_all()
    finally:
        up.kill_all()


def test_up_with_tls_serves_https_and_tls_nats_that_clients_trust_through_its_ca(tmp_path):
    """`torua up --tls`: a local CA in the data dir; the gateway answers HTTPS that a
    client trusting the CA verifies (and plain HTTP not at all), the nats-server
    takes TLS connections only, and the tools find the CA for a tls:// URL."""
    import asyncio
    import ssl

    import nats

    data_dir = tmp_path / "data"
    up = Up(data_dir, free_port(), free_port(), "--tls")
    try:
        up.wait_ready()
        ca = data_dir / "secrets" / "tls" / "ca.pem"
        assert f"HTTP API  https://127.0.0.1:{up.http_port}   (TLS: trust {ca}" in up.output
        assert f"NATS      tls://127.0.0.1:{up.nats_port}" in up.output
        trusting = ssl.create_default_context(cafile=str(ca))
        keyed = urllib.request.Request(
            f"https://127.0.0.1:{up.http_port}/cluster/health", headers={"Authorization": f"Bearer {admin_key_path(data_dir).read_text().strip()}"},
        )
        with urllib.request.urlopen(keyed, timeout=10, context=trusting) as resp:
            assert json.loads(resp.read())["status"] == "green"
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"https://127.0.0.1:{up.http_port}/cluster/health", timeout=10, context=ssl.create_default_context())
        with pytest.raises((urllib.error.URLError, ConnectionError, http_client_errors())):
            urllib.request.urlopen(f"http://127.0.0.1:{up.http_port}/cluster/health", timeout=10)

        async def plain() -> None:
            await nats.connect(f"nats://127.0.0.1:{up.nats_port}", allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0,
                               nkeys_seed=str(data_dir / "secrets" / "nats-client.nk"))

        with pytest.raises(Exception):
            asyncio.run(plain())
        env = {**os.environ, "TORUA_DATA_DIR": str(data_dir), "TORUA_NATS_URL": f"tls://127.0.0.1:{up.nats_port}"}
        put = subprocess.run(torua_command() + ["kv", "put", "over-tls", "yes"], capture_output=True, text=True, timeout=60, env=env)
        assert put.returncode == 0, put
        assert subprocess.run(torua_command() + ["kv", "get", "over-tls"], capture_output=True, timeout=60, env=env).stdout == b"yes"
        assert up.stop() == 0
    finally:
        up.kill_all()


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException
