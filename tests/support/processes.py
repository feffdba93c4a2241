"""Real processes for tests: a nats-server on a free port and `torua` roles.

Every process started here is tracked and killed (SIGKILL after a grace period)
when the owning fixture ends, also when the test failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from torua.cli.up import nats_config, nats_server_binary, torua_command, wait_for_port
from torua.ports import free_port


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # the thing polled is not there yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(10)

    def pause(self) -> None:
        psutil.Process(self.pid).suspend()

    def resume(self) -> None:
        psutil.Process(self.pid).resume()

    def terminate(self, timeout: float = 10) -> int:
        if self.alive():
            try:
                psutil.Process(self.pid).resume()
            except psutil.Error:
                pass
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# The environment of a test's gateways and nodes without API keys (they read TORUA_INSECURE).
OPEN = {"TORUA_INSECURE": "1"}


@dataclass
class ProcessGroup:
    """Owns every process a test starts."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start `argv` with this environment and `env` (by default `OPEN`: a gateway or node
        started for a test of something else takes requests without API keys)."""
        env = OPEN if env is None else env
        log_path = self.workdir / "logs" / f"{name}-{len(self.procs)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
            )
        proc = Proc(name, argv, popen, log_path)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        """SIGKILL everything (paused or not) and reap it: how a test's processes end once
        the test is over. A graceful stop there asserted nothing and took over a minute
        of the suite; stopping is tested where it is the subject (test_stop.py,
        test_up.py, the SIGTERM hand-over in test_replication.py)."""
        for proc in self.procs:
            if proc.alive():
                proc.popen.kill()
        for proc in self.procs:
            proc.popen.wait(10)


def start_nats(
    group: ProcessGroup, port: int | None = None, extra_conf: str = "", env: dict[str, str] | None = None, scheme: str = "nats"
) -> tuple[Proc, str]:
    """A nats-server like `torua up`'s, plus `extra_conf` (auth, TLS, ...) appended to its config."""
    port = port or free_port()
    conf = nats_config(group.workdir / f"nats-{port}", port)
    if extra_conf:
        conf.write_text(conf.read_text() + extra_conf)
    proc = group.start("nats-server", [nats_server_binary(), "-c", str(conf)], env=env)
    if not wait_for_port(port, time.monotonic() + 15, proc.popen):
        raise AssertionError(f"nats-server did not start:\n{proc.log()}")
    return proc, f"{scheme}://127.0.0.1:{port}"


class Cluster:
    """A cluster of real `torua` processes on a test's own nats-server."""

    def __init__(
        self, group: ProcessGroup, nats_url: str, shards: int = 8, heartbeat: float = 0.25, replicas: int = 1, leader_lease: float = 1.5
    ) -> None:
        self.group = group
        self.replicas = replicas
        self.nats_url = nats_url
        self.shards = shards
        self.heartbeat = heartbeat
        self.nodes: dict[str, Proc] = {}
        self.coordinator: Proc | None = None  # the first one started
        self.coordinators: dict[str, Proc] = {}
        self.leader_lease = leader_lease
        # extra arguments per process id ("c1", "n1", "gateway"): credentials, TLS
        self.extra_args: Callable[[str], list[str]] = lambda who: []
        self.gateway: Proc | None = None
        self.http_port = 0
        # How processes started from now on are run: this build's `torua`, or
        # another build's (tests/integration/test_rolling_upgrade.py) with its env.
        self.command: list[str] = torua_command()
        # API keys off (gateways and nodes read TORUA_INSECURE): tests of other things call
        # REST and torua.Client without keys; `secure()` turns them on
        self.env: dict[str, str] = dict(OPEN)
        self.admin_token = ""  # with secure(): the admin key every request of `request` carries
        self.admin_args: list[str] = []  # with secure(): a gateway's --admin-key-file

    def _common(self) -> list[str]:
        return ["--nats-url", self.nats_url, "--log-level", "info"]

    def start_coordinator(self, expect_nodes: int, extra: list[str] | None = None, coordinator_id: str = "c1") -> Proc:
        argv = self.command + [
            "coordinator", "--id", coordinator_id, "--shards", str(self.shards), "--replicas", str(self.replicas),
            "--expect-nodes", str(expect_nodes), "--heartbeat-interval", str(self.heartbeat), "--formation-timeout", "20",
            "--leader-lease", str(self.leader_lease),
        ] + self._common() + self.extra_args(coordinator_id) + (extra or [])
        proc = self.group.start(f"coordinator-{coordinator_id}", argv, env=self.env)
        self.coordinators[coordinator_id] = proc
        self.coordinator = self.coordinator or proc
        return proc

    def start_node(self, node_id: str, extra: list[str] | None = None) -> Proc:
        argv = self.command + [
            "node", "--id", node_id, "--data-dir", str(self.group.workdir / node_id),
            "--heartbeat-interval", str(self.heartbeat), "--commit", "relaxed",
        ] + self._common() + self.extra_args(node_id) + (extra or [])
        proc = self.group.start(f"node-{node_id}", argv, env=self.env)
        self.nodes[node_id] = proc
        return proc

    def secure(self) -> Cluster:
        """API keys on, from the processes started next: the gateways put an admin key in
        the store, which `request` sends from then on."""
        self.env.pop("TORUA_INSECURE", None)
        path = self.group.workdir / "admin.key"
        if not path.exists():
            from torua.key_ring import admin_key_token

            admin_key_token(path)
        self.admin_token = path.read_text().strip()
        self.admin_args = ["--admin-key-file", str(path)]
        return self

    def start_gateway(self, port: int = 0, use: bool = True) -> Proc:
        """A gateway on `port` (a free one if 0); with `use`, requests go to it from now on."""
        port = port or free_port()
        argv = self.command + ["gateway", "--port", str(port), "--request-timeout", "5"] + self._common() + self.extra_args("gateway")
        argv += [] if "TORUA_INSECURE" in self.env else self.admin_args
        proc = self.group.start("gateway", argv, env=self.env)
        if use:
            self.http_port, self.gateway = port, proc
        return proc

    def start_worker(self, worker_id: str, extra: list[str] | None = None) -> Proc:
        """A GraphRAG worker (`torua worker`), taking documents from the ingestion queue."""
        argv = self.command + ["worker", "--id", worker_id] + self._common() + self.extra_args(worker_id) + (extra or [])
        return self.group.start(f"worker-{worker_id}", argv, env=self.env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, nodes: int = 3, coordinators: int = 1) -> Cluster:
        for i in range(1, coordinators + 1):
            self.start_coordinator(expect_nodes=nodes, coordinator_id=f"c{i}")
        for i in range(1, nodes + 1):
            self.start_node(f"n{i}")
        self.start_gateway()
        self.wait_formed()
        return self

    def wait_formed(self, timeout: float = 30) -> dict:
        return wait_until(
            lambda: (h := self.json("GET", "/cluster/health")[1])["shards_unassigned"] == 0 and h["status"] == "green" and h,
            timeout,
            "the cluster to form",
        )

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 15):
        sent = ({"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}) | (headers or {})
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        status, raw, _ = self.request(method, path, data, {"Content-Type": "application/json"} if data else None)
        return status, json.loads(raw) if raw else None

    def idle(self) -> bool:
        """No move runs, and the gateway routes by the coordinator's latest map (an
        announced map reaches a gateway after it has read it from the store)."""
        info = self.json("GET", "/cluster/info")[1]
        return not info["moves"] and self.json("GET", "/shards")[1]["epoch"] >= info["epoch"]

    def shards_per_node(self) -> dict[str, int]:
        counts = {n: 0 for n in self.nodes}
        for shard in self.json("GET", "/shards")[1]["shards"]:
            if shard["primary"]:
                counts[shard["primary"]] = counts.get(shard["primary"], 0) + 1
        return counts

    def all_keys(self) -> list[str]:
        """Every key in the cluster, through the public listing."""
        from urllib.parse import quote

        keys: list[str] = []
        cursor = ""
        while True:
            status, page = self.json("GET", "/data?limit=1000" + (f"&cursor={quote(cursor)}" if cursor else ""))
            assert status == 200, page
            keys += page["keys"]
            cursor = page["next_cursor"]
            if not cursor:
                return sorted(keys)

    def location(self, key: str) -> dict:
        from urllib.parse import quote

        return self.json("GET", "/keys/" + quote(key, safe="") + "/location")[1]
