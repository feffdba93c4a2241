"""What the behave scenarios need to drive a real Torua cluster.

A `LocalCluster` runs `torua up` (nats-server, coordinator(s), 3 nodes, gateway,
each its own OS process): one with one copy per shard for the whole run, and one
of its own for each feature tagged `@replicas<N>` or `@coordinators<N>`. Steps
talk to it only as a user or an operator would: HTTP to the gateway, psutil to
find, pause, stop (SIGTERM) and kill a node or coordinator process by its command
line, and NATS to look at what the cluster keeps in JetStream or to send a node a
message straight on its own subject.

Every wait polls with a deadline through `wait_until`; nothing sleeps to
synchronise. Every process started here is tracked and stopped at the end.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psutil

from torua.cli.up import torua_command
from torua.ports import free_port, free_port_range

NUM_NODES = 3
NUM_SHARDS = 16
HEARTBEAT = 0.25
READY_TIMEOUT = 90.0
SETTLE_TIMEOUT = 60.0
STABLE_S = 4 * HEARTBEAT  # settled this long with one map: the nodes' heartbeats since agree with it
# How long restore() lets a node stopped with SIGTERM finish before it kills it.
STOP_TIMEOUT = 30.0
# Seconds between two looks at /cluster/info while waiting on the coordinators.
# Each answer makes the leader list the `torua_leader` bucket's keys, which leaves
# a JetStream consumer behind for 5 minutes; at 1000 of them /cluster/info answers
# 500 "maximum consumers limit reached" (a Torua bug), so waits on it poll gently.
LEADER_POLL = 0.2
# What `torua up` prints when one of its children exits.
CHILD_EXITED = re.compile(r"\(pid (\d+)\) exited with code (-?\d+)")


# ------------------------------------------------------------------ waiting


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` at the deadline.

    The failure message carries the predicate's last result or exception, so a
    wait that times out says what it saw instead.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last = result
        except Exception as exc:  # the thing polled is not there yet
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


class Seen:
    """A falsy value that still says what was observed, for wait_until's failure message."""

    def __init__(self, detail: Any) -> None:
        self.detail = detail

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return repr(self.detail)


# `torua up` prints "  node-n1      pid 123   metrics http://127.0.0.1:9111/metrics"
METRICS_LINE = re.compile(r"^\s+(\S+)\s+pid \d+\s+metrics http://[^/]+:(\d+)/metrics")


# --------------------------------------------------------------------- HTTP


def generated_value(key: str) -> bytes:
    """The value every generated key holds: "value of <key>"."""
    return f"value of {key}".encode()



@dataclass
class Response:
    status: int
    body: bytes
    headers: Message

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def error_code(self) -> str | None:
        try:
            return self.json()["error"]["code"]
        except Exception:
            return None

    def __repr__(self) -> str:
        body = self.body[:300]
        return f"<HTTP {self.status} {body!r}{'...' if len(self.body) > 300 else ''}>"


def data_path(key: str) -> str:
    """`/data/{key}`: the key percent-encoded, slashes left as they are."""
    return "/data/" + quote(key, safe="/")


def location_path(key: str) -> str:
    return "/keys/" + quote(key, safe="") + "/location"


class Gateway:
    """The only address a client of Torua needs: the gateway's base URL."""

    def __init__(self, base_url: str, api_key: str = "") -> None:
        self.base_url = base_url
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname, parts.port
        self.api_key = api_key  # the admin key `torua up` made, sent with every request

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30) -> Response:
        """One HTTP request on a fresh connection (stdlib http.client).

        A server may answer before reading the whole body (a 413 for a value that
        is too large) and close the connection; the answer is read all the same.
        """
        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            try:
                conn.request(method, path, body=body, headers=self.auth | (headers or {}))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the response, if the server sent one, is still there to read
            resp = conn.getresponse()
            return Response(resp.status, resp.read(), resp.headers)
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        resp = self.request("GET", path)
        assert resp.status == 200, f"GET {path}: {resp!r}"
        return resp.json()

    # Shorthands for the API the scenarios use.
    def put(self, key: str, value: bytes, content_type: str | None = None) -> Response:
        return self.request("PUT", data_path(key), value, {"Content-Type": content_type} if content_type else None)

    def get(self, key: str) -> Response:
        return self.request("GET", data_path(key))

    def delete(self, key: str) -> Response:
        return self.request("DELETE", data_path(key))

    def location(self, key: str) -> dict:
        return self.get_json(location_path(key))

    def shards(self) -> dict:
        return self.get_json("/shards")

    def nodes(self) -> list[dict]:
        return self.get_json("/nodes")["nodes"]

    def health(self) -> dict:
        return self.get_json("/cluster/health")

    def info(self) -> dict:
        return self.get_json("/cluster/info")


class BackgroundWriter:
    """A client storing new keys through the gateway from a thread of its own, one
    PUT at a time, each key once, with generated_value(key) as its value; it
    records the answer to every request (an exception counts as a failed one)."""

    def __init__(self, gateway: Gateway, keys: Iterable[str]) -> None:
        self.gateway = gateway
        self._keys = iter(keys)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # (key, HTTP status or None, what came back)
        self._results: list[tuple[str, int | None, str]] = []
        self._thread = threading.Thread(target=self._run, name="torua-bdd-writer", daemon=True)

    def start(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        for key in self._keys:
            if self._stop.is_set():
                return
            try:
                resp = self.gateway.put(key, generated_value(key))
                result = (key, resp.status, repr(resp))
            except Exception as exc:
                result = (key, None, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._results.append(result)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def results(self) -> list[tuple[str, int | None, str]]:
        with self._lock:
            return list(self._results)

    def acknowledged(self) -> list[str]:
        """The keys whose PUT was answered 204, in the order they were written."""
        return [key for key, status, _ in self.results() if status == 204]

    def failed(self) -> list[tuple[str, int | None, str]]:
        return [r for r in self.results() if r[1] != 204]

    def stop(self, timeout: float = 60) -> None:
        """Let the request in flight finish, then end the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the writer did not stop within {timeout:g}s"


# ------------------------------------------------------------------- NATS


# The data dir of the `torua up` serving each NATS URL: its NATS takes only the keys kept there.
DATA_DIRS: dict[str, Path] = {}


def with_nats(nats_url: str, work: Callable[[Any], Any], timeout: float = 5.0, role: str = "coordinator", node_id: str = "") -> Any:
    """Connect to the cluster's NATS with the key of `role` (a node's: of `node_id`) that
    `torua up` keeps in its data dir, run `await work(nc)`, close; return what it returned."""
    import nats

    from torua.nats_keys import seed_path

    seed = str(seed_path(DATA_DIRS[nats_url], role, node_id))
    # a node's key may read replies on its own inboxes only (torua.nats_roles)
    inbox = {"inbox_prefix": f"_INBOX.torua-node-{node_id}"} if role == "node" else {}

    async def run() -> Any:
        nc = await nats.connect(servers=[nats_url], name="torua-bdd", connect_timeout=timeout, nkeys_seed=seed, **inbox)
        try:
            return await work(nc)
        finally:
            await nc.close()

    return asyncio.run(run())


def node_kv_get(nats_url: str, asks: list[tuple[str, int, int, str]], timeout: float = 5.0) -> list[Any]:
    """Send a KvRequest get to each (node_id, shard_id, epoch, key) straight to the
    node, as torua.Client does: on its subject `torua.node.<id>.app.kv` with the admin
    API key `torua up` made; return the decoded KvReply of each."""
    from torua.api_keys import admin_key_path
    from torua.protocol import subjects
    from torua.protocol.codec import decode, encode
    from torua.protocol.messages import KvReply, KvRequest

    api_key = admin_key_path(DATA_DIRS[nats_url]).read_text().strip()

    async def ask(nc) -> list[Any]:
        replies = []
        for node_id, shard_id, epoch, key in asks:
            request = KvRequest(op="get", shard_id=shard_id, epoch=epoch, key=key, api_key=api_key)
            msg = await nc.request(subjects.node(node_id, "app.kv"), encode(request), timeout=timeout)
            replies.append(decode(KvReply, msg.data))
        return replies

    return with_nats(nats_url, ask, timeout, role="client")


def node_command(nats_url: str, node_id: str, call: str, command: Any, timeout: float = 5.0) -> Any:
    """Send a coordinator's ShardCommand straight to `torua.node.<id>.<call>`, as a
    coordinator would; return the node's ShardCommandReply."""
    from torua.protocol import subjects
    from torua.protocol.codec import decode, encode
    from torua.protocol.messages import ShardCommandReply

    async def ask(nc) -> Any:
        msg = await nc.request(subjects.node(node_id, call), encode(command), timeout=timeout)
        return decode(ShardCommandReply, msg.data)

    return with_nats(nats_url, ask, timeout)


@dataclass
class KvRecord:
    """One revision of a key in a JetStream KV bucket."""

    value: bytes
    revision: int


def kv_history(nats_url: str, bucket: str, key: str, timeout: float = 5.0) -> list[KvRecord]:
    """Every revision the bucket still keeps of `key`, oldest first ([] if none);
    deletes and expired entries are left out."""
    from nats.js.errors import NoKeysError, NotFoundError

    async def read(nc) -> list[KvRecord]:
        kv = await nc.jetstream().key_value(bucket)
        try:
            entries = await kv.history(key)
        except (NoKeysError, NotFoundError):  # no revision kept (or only expired ones)
            return []
        return [KvRecord(e.value, e.revision or 0) for e in entries if e.value and e.operation in (None, "PUT")]

    return with_nats(nats_url, read, timeout)


def kv_get(nats_url: str, bucket: str, key: str, timeout: float = 5.0) -> KvRecord | None:
    """The current value of `key` in a JetStream KV bucket, None if it has none."""
    from nats.js.errors import NotFoundError

    async def read(nc) -> KvRecord | None:
        kv = await nc.jetstream().key_value(bucket)
        try:
            entry = await kv.get(key)
        except NotFoundError:  # also KeyDeletedError
            return None
        return KvRecord(entry.value, entry.revision or 0) if entry.value else None

    return with_nats(nats_url, read, timeout)


def kv_keys(nats_url: str, bucket: str, timeout: float = 5.0) -> list[str]:
    """Every key the bucket holds now, sorted: the subjects its stream holds, each read
    (a deleted or purged key has none). Not nats-py's `KeyValue.keys()`: its watcher
    may report no keys at all when the server has sent them all before the consumer's
    info comes back (pending 0, none handled yet), as it did once on CI for a bucket
    that held two."""
    from nats.js.errors import NotFoundError

    async def read(nc) -> list[str]:
        js = nc.jetstream()
        kv = await js.key_value(bucket)
        prefix = f"$KV.{bucket}."
        info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
        held = []
        for subject in sorted(info.state.subjects or {}):
            try:
                await kv.get(subject[len(prefix):])
            except NotFoundError:  # also KeyDeletedError
                continue
            held.append(subject[len(prefix):])
        return held

    return with_nats(nats_url, read, timeout)


# ---------------------------------------------------------------- processes


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_role_cmdline(cmdline: list[str], role: str, process_id: str) -> bool:
    """`torua <role> --id <process_id> ...`: argv items "<role>", then "--id", "<process_id>"."""
    if role not in cmdline:
        return False
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "--id" and cmdline[i + 1] == process_id:
            return True
    return f"--id={process_id}" in cmdline


def is_node_cmdline(cmdline: list[str], node_id: str) -> bool:
    """`torua node --id <node_id> ...`."""
    return is_role_cmdline(cmdline, "node", node_id)


def is_coordinator_cmdline(cmdline: list[str], coordinator_id: str) -> bool:
    """`torua coordinator --id <coordinator_id> ...`."""
    return is_role_cmdline(cmdline, "coordinator", coordinator_id)


class LocalCluster:
    """`torua up` on free ports and a temp dir, plus the processes scenarios start by hand.

    `replicas` is the number of copies of each shard (`torua up --replicas`),
    `coordinators` the number of coordinator processes, c1 to cN, one of which
    leads while the others stand by (`torua up --coordinators`), `workers` the
    GraphRAG workers (`torua up --workers`).
    """

    def __init__(self, nodes: int = NUM_NODES, shards: int = NUM_SHARDS, replicas: int = 1, coordinators: int = 1, workers: int = 1) -> None:
        self.num_workers = workers
        self.num_nodes = nodes
        self.num_shards = shards
        self.replicas = replicas
        self.coordinator_ids = [f"c{i}" for i in range(1, coordinators + 1)]
        self.tmp = Path(tempfile.mkdtemp(prefix=f"torua-bdd-r{replicas}-c{coordinators}-"))
        self.http_port = free_port()
        self.nats_port = free_port()
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        self.gateway = Gateway(f"http://127.0.0.1:{self.http_port}")
        self.up: subprocess.Popen | None = None
        self.up_output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        # Everything started here besides `torua up` itself (restarted nodes, n4).
        self.extra: list[subprocess.Popen] = []
        # Every process seen under `torua up`, so none is left behind.
        self.known: dict[int, psutil.Process] = {}
        self.paused: list[psutil.Process] = []
        # Nodes killed or stopped (SIGTERM) by a scenario and not started again yet: id -> argv.
        self.killed: dict[str, list[str]] = {}
        # Coordinators killed by a scenario and not started again yet: id -> argv.
        self.killed_coordinators: dict[str, list[str]] = {}
        # The processes of nodes sent SIGTERM, which may still be handing off when restore() runs.
        self.stopped: dict[str, psutil.Process] = {}
        # Process name ("node-n4", "coordinator-c1") -> its /metrics port.
        self.metrics_ports: dict[str, int] = {}
        # Processes killed, stopped, paused or started here so far; and the map epoch
        # last seen settled for STABLE_S, with this count then (see _wait_settled).
        self.disturbances = 0
        self.stable_at: tuple[Any, int] | None = None

    @property
    def logs(self) -> Path:
        return self.tmp / "data" / "logs"

    # ---------------------------------------------------------- up / down

    def start(self) -> None:
        DATA_DIRS[self.nats_url] = self.tmp / "data"
        argv = torua_command() + [
            "up",
            "--nodes", str(self.num_nodes),
            "--shards", str(self.num_shards),
            "--replicas", str(self.replicas),
            "--coordinators", str(len(self.coordinator_ids)),
            "--workers", str(self.num_workers),
            "--data-dir", str(self.tmp / "data"),
            "--port", str(self.http_port),
            "--nats-port", str(self.nats_port),
            "--heartbeat-interval", str(HEARTBEAT),
            "--metrics-port", str(free_port_range(len(self.coordinator_ids) + self.num_nodes + 1 + self.num_workers)),
        ]
        self.up = subprocess.Popen(
            argv, cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"`torua up` did not print 'ready' within {READY_TIMEOUT:g}s:\n" + "".join(self.up_output))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"`torua up` exited with {self.up.wait()} before it was ready:\n" + "".join(self.up_output))
            if "ready" in line and "not ready" not in line:
                break
        self._remember_children()
        self.gateway.api_key = (self.tmp / "data" / "secrets" / "admin.key").read_text().strip()
        # "ready" says the shards are served; the standbys may not have announced themselves yet.
        self._wait_settled()

    def metrics_port_of(self, name: str) -> int:
        """The /metrics port of a process, e.g. ``node-n1`` or ``coordinator-c2``."""
        assert name in self.metrics_ports, f"no metrics port known for {name}: {self.metrics_ports}"
        return self.metrics_ports[name]

    def _read_output(self) -> None:
        assert self.up is not None and self.up.stdout is not None
        for line in self.up.stdout:
            match = METRICS_LINE.match(line)
            if match:
                self.metrics_ports[match.group(1)] = int(match.group(2))
            self.up_output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _remember_children(self) -> None:
        if self.up is None:
            return
        try:
            for child in psutil.Process(self.up.pid).children(recursive=True):
                self.known.setdefault(child.pid, child)
        except psutil.Error:
            pass
        for popen in self.extra:
            try:
                self.known.setdefault(popen.pid, psutil.Process(popen.pid))
            except psutil.Error:
                pass

    def stop(self) -> None:
        """Stop our own processes, SIGINT `torua up`, then kill whatever is left."""
        self.resume_paused()
        self._remember_children()
        for popen in self.extra:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for popen in self.extra:
            try:
                popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait(timeout=10)
        for proc in self.known.values():
            if _alive(proc):
                try:
                    proc.kill()
                except psutil.Error:
                    pass
        wait_until(lambda: not any(_alive(p) for p in self.known.values()), 15, "every Torua process to be gone")

    def remove(self) -> None:
        if os.environ.get("TORUA_BDD_KEEP"):
            print(f"torua-bdd: keeping {self.tmp} (TORUA_BDD_KEEP is set)")
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            out.append(f"---- {path.name} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(out)

    # ---------------------------------------------------------- node processes

    def node_process(self, node_id: str) -> psutil.Process | None:
        """The running `torua node --id <node_id>` process, under `torua up` or started here."""
        return self._process("node", node_id)

    def _process(self, role: str, process_id: str) -> psutil.Process | None:
        """The running `torua <role> --id <process_id>` process, under `torua up` or started here."""
        candidates: list[psutil.Process] = []
        if self.up is not None:
            try:
                candidates += psutil.Process(self.up.pid).children(recursive=True)
            except psutil.Error:
                pass
        for popen in self.extra:
            try:
                candidates.append(psutil.Process(popen.pid))
            except psutil.Error:
                pass
        found = []
        for proc in candidates:
            try:
                if _alive(proc) and is_role_cmdline(proc.cmdline(), role, process_id):
                    found.append(proc)
            except psutil.Error:
                continue
        assert len(found) <= 1, f"more than one process runs {role} {process_id}: {[p.pid for p in found]}"
        return found[0] if found else None

    def require_node_process(self, node_id: str) -> psutil.Process:
        proc = self.node_process(node_id)
        assert proc is not None, f"no running process for node {node_id}"
        return proc

    def kill_node(self, node_id: str) -> list[str]:
        """SIGKILL a node's process; remember its command line to start it again."""
        proc = self.require_node_process(node_id)
        argv = proc.cmdline()
        self.known.setdefault(proc.pid, proc)
        self.killed[node_id] = argv
        self.disturbances += 1
        proc.send_signal(signal.SIGKILL)
        wait_until(lambda: not _alive(proc), 10, f"node {node_id} (pid {proc.pid}) to die")
        return argv

    def terminate_node(self, node_id: str) -> psutil.Process:
        """SIGTERM a node's process (a planned stop); remember its command line to start it again.

        Returns at once: the node hands its primaries over before it exits (see exit_code).
        """
        proc = self.require_node_process(node_id)
        argv = proc.cmdline()
        self.known.setdefault(proc.pid, proc)
        self.killed[node_id] = argv
        self.stopped[node_id] = proc
        self.disturbances += 1
        proc.send_signal(signal.SIGTERM)
        return proc

    def exit_code(self, proc: psutil.Process) -> int | None:
        """The exit code of a node process once it has exited, else None.

        A process started here is our child (Popen); one under `torua up` is not, and
        its code is the one `torua up` prints when it reaps it.
        """
        for popen in self.extra:
            if popen.pid == proc.pid:
                return popen.poll()
        for line in reversed(list(self.up_output)):
            match = CHILD_EXITED.search(line)
            if match and int(match.group(1)) == proc.pid:
                return int(match.group(2))
        return None

    def restart_node(self, node_id: str) -> subprocess.Popen:
        """Start a killed or stopped node again with exactly the command line it had."""
        self._wait_stopped(node_id)
        argv = self.killed.pop(node_id)
        return self.spawn(f"node-{node_id}-restart", argv)

    def _wait_stopped(self, node_id: str) -> None:
        """A node sent SIGTERM may still be handing off: let it exit (SIGKILL at the deadline)."""
        proc = self.stopped.pop(node_id, None)
        if proc is None:
            return
        try:
            wait_until(lambda: not _alive(proc), STOP_TIMEOUT, f"node {node_id} (pid {proc.pid}) to exit after SIGTERM")
        except AssertionError:
            try:
                proc.kill()
            except psutil.Error:
                pass
            wait_until(lambda: not _alive(proc), 10, f"node {node_id} (pid {proc.pid}) to die")

    def log_sizes(self) -> dict[Path, int]:
        """How long each log is now, to read later only what was written after."""
        return {path: path.stat().st_size for path in self.logs.glob("*.log")}

    def node_log_since(self, node_id: str, sizes: dict[Path, int]) -> str:
        """What node `node_id` logged (under `torua up` or started here) since `sizes`."""
        return self.log_since(f"node-{node_id}", sizes)

    def log_since(self, name: str, sizes: dict[Path, int]) -> str:
        """What the process logging to `<name>.log` or `<name>-*.log` (started again
        here) wrote since `sizes`."""
        text = []
        for path in sorted(self.logs.glob("*.log")):
            if path.stem == name or path.stem.startswith(f"{name}-"):
                with open(path, "rb") as f:
                    f.seek(sizes.get(path, 0))
                    text.append(f.read().decode(errors="replace"))
        return "".join(text)

    def start_node(self, node_id: str, extra: list[str] = ()) -> subprocess.Popen:
        """A node started by hand against the cluster's NATS, as an operator would, with
        the key `torua auth nats node <id>` gives it (`extra`: more flags, e.g.
        ``["--max-shards", "1"]``)."""
        key = subprocess.run(
            torua_command() + ["auth", "nats", "node", node_id, "--data-dir", str(self.tmp / "data")],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()
        argv = torua_command() + [
            "node",
            "--id", node_id,
            "--nats-url", self.nats_url,
            "--nats-nkey-seed", key,
            "--data-dir", str(self.tmp / "data" / node_id),
            "--heartbeat-interval", str(HEARTBEAT),
            "--metrics-port", str(self.metrics_ports.setdefault(f"node-{node_id}", free_port())),
            *extra,
        ]
        return self.spawn(f"node-{node_id}", argv)

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as out:
            popen = subprocess.Popen(argv, cwd=self.tmp, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.extra.append(popen)
        self.known[popen.pid] = psutil.Process(popen.pid)
        self.disturbances += 1
        return popen

    def pause_node(self, node_id: str) -> psutil.Process:
        proc = self.require_node_process(node_id)
        proc.suspend()
        self.paused.append(proc)
        self.disturbances += 1
        return proc

    def resume_node(self, node_id: str) -> psutil.Process:
        """SIGCONT the paused process of one node."""
        found = [p for p in self.paused if is_node_cmdline(p.cmdline(), node_id)]
        assert len(found) == 1, f"node {node_id} is not paused (paused: {[p.pid for p in self.paused]})"
        proc = found[0]
        proc.resume()
        self.paused.remove(proc)
        return proc

    def resume_paused(self) -> None:
        while self.paused:
            proc = self.paused.pop()
            try:
                proc.resume()
            except psutil.Error:
                pass

    # ---------------------------------------------------- coordinator processes

    def coordinator_process(self, coordinator_id: str) -> psutil.Process | None:
        """The running `torua coordinator --id <coordinator_id>` process, under `torua up` or started here."""
        return self._process("coordinator", coordinator_id)

    def require_coordinator_process(self, coordinator_id: str) -> psutil.Process:
        proc = self.coordinator_process(coordinator_id)
        assert proc is not None, f"no running process for coordinator {coordinator_id}"
        return proc

    def kill_coordinator(self, coordinator_id: str) -> list[str]:
        """SIGKILL a coordinator's process; remember its command line to start it again."""
        proc = self.require_coordinator_process(coordinator_id)
        argv = proc.cmdline()
        self.known.setdefault(proc.pid, proc)
        self.killed_coordinators[coordinator_id] = argv
        self.disturbances += 1
        proc.send_signal(signal.SIGKILL)
        wait_until(lambda: not _alive(proc), 10, f"coordinator {coordinator_id} (pid {proc.pid}) to die")
        return argv

    def restart_coordinator(self, coordinator_id: str) -> subprocess.Popen:
        """Start a killed coordinator again with exactly the command line it had."""
        argv = self.killed_coordinators.pop(coordinator_id)
        return self.spawn(f"coordinator-{coordinator_id}-restart", argv)

    def pause_coordinator(self, coordinator_id: str) -> psutil.Process:
        proc = self.require_coordinator_process(coordinator_id)
        proc.suspend()
        self.paused.append(proc)
        self.disturbances += 1
        return proc

    def resume_coordinator(self, coordinator_id: str) -> psutil.Process:
        """SIGCONT the paused process of one coordinator."""
        found = [p for p in self.paused if is_coordinator_cmdline(p.cmdline(), coordinator_id)]
        assert len(found) == 1, f"coordinator {coordinator_id} is not paused (paused: {[p.pid for p in self.paused]})"
        proc = found[0]
        proc.resume()
        self.paused.remove(proc)
        return proc

    def coordinator_log_since(self, coordinator_id: str, sizes: dict[Path, int]) -> str:
        """What coordinator `coordinator_id` logged (under `torua up` or started here) since `sizes`."""
        return self.log_since(f"coordinator-{coordinator_id}", sizes)

    # ------------------------------------------------------------ clean state

    def restore(self) -> None:
        """After a scenario: resume, start again what was killed or stopped, wait until all is well."""
        self.resume_paused()
        # Coordinators first: a leader takes the returning nodes back in.
        for coordinator_id in list(self.killed_coordinators):
            self.restart_coordinator(coordinator_id)
        restarted = bool(self.killed)
        for node_id in list(self.killed):
            self.restart_node(node_id)
        self._remember_children()
        wait_until(self.undo_operator_flags, SETTLE_TIMEOUT, "every node out of maintenance, evacuation and drain")
        self._wait_settled()
        if restarted:
            # A node that came back (and copies sent to it again) builds its graph indexes
            # again; the next scenario's first search would wait for those of every graph.
            wait_until(self.graph_indexes_built, SETTLE_TIMEOUT, "every graph's index built on every shard (a Cypher query answered)")

    def graph_indexes_built(self) -> Any:
        """Whether a Cypher query on every graph answers (every shard's index is current)."""
        for graph in self.gateway.get_json("/graphs")["graphs"]:
            body = json.dumps({"query": "MATCH (v:Vertex) RETURN count(*)"}).encode()
            resp = self.gateway.request("POST", f"/graphs/{quote(graph['name'], safe='')}/cypher", body, {"Content-Type": "application/json"})
            if resp.status != 200:
                return Seen(f"{graph['name']}: {resp!r}")
        return True

    def undo_operator_flags(self) -> Any:
        """Take every node out of maintenance, evacuation and drain (a failed scenario may leave one in)."""
        try:
            nodes = self.gateway.nodes()
        except AssertionError as exc:  # no leader answering yet
            return Seen(str(exc))
        for n in nodes:
            if n.get("maintenance"):
                body = json.dumps({"nodes": [n["id"]], "maintenance": False}).encode()
                self.gateway.request("POST", "/nodes/maintenance", body, {"Content-Type": "application/json"})
            if n.get("evacuating"):
                self.gateway.request("DELETE", f"/nodes/{n['id']}/evacuate")
            if n.get("draining"):
                self.gateway.request("DELETE", f"/nodes/{n['id']}/drain")
        left = [n["id"] for n in self.gateway.nodes() if n.get("maintenance") or n.get("evacuating") or n.get("draining")]
        return not left or Seen(left)

    def _wait_settled(self) -> None:
        """Until `settled` holds, and still holds with the same map `STABLE_S` later: after
        a hand-off, the old primary's next heartbeats may say its copy must be filled
        again (yellow a moment after green). A map already seen settled that long (by the
        restore before), with no process killed, stopped, paused or started since, need
        not be watched again: it is settled now, and nothing changed it."""
        since: list[tuple[Any, float]] = []  # (map epoch, when first seen settled at it)
        if self.stable_at is not None and self.stable_at[1] == self.disturbances:
            since.append((self.stable_at[0], float("-inf")))
        self.stable_at = None

        def stable() -> Any:
            state = self.settled()
            if state is not True:
                since.clear()
                return state
            epoch, now = self.gateway.health().get("epoch"), time.monotonic()
            if not since or since[0][0] != epoch:
                since[:] = [(epoch, now)]
            if now - since[0][1] >= STABLE_S:
                self.stable_at = (epoch, self.disturbances)
                return True
            return Seen({"settled at epoch": epoch, "for seconds": round(now - since[0][1], 2)})

        wait_until(
            stable, SETTLE_TIMEOUT,
            f"the cluster to be green with every node healthy, primaries balanced, no move running, one coordinator leading and the others standing by, for {STABLE_S:g} s with the same map",
        )

    def settled(self) -> Any:
        """Green, every node healthy, primaries balanced (with replicas the coordinator
        hands primaries to a returning node once it is in sync: green alone does not
        say that is over), no move running, one leader and every other coordinator standing by."""
        # Read twice, with everything else between: the map must not change meanwhile,
        # or what was read belongs to different moments (a hand-off ends between two reads).
        before = self.gateway.health()
        health = self.settled_once()
        after = self.gateway.health()
        if health is not True:
            return health
        if before.get("epoch") != after.get("epoch") or after.get("status") != "green":
            return Seen({"map changed while reading": [before.get("epoch"), after.get("epoch")], "health": after.get("status")})
        return True

    def settled_once(self) -> Any:
        health = self.gateway.health()
        nodes = self.gateway.nodes()
        unhealthy = [n["id"] for n in nodes if n["status"] != "healthy"]
        if health.get("status") != "green" or unhealthy:
            return Seen({"health": health, "unhealthy": unhealthy})
        leading = {n["id"]: 0 for n in nodes}
        for shard in self.gateway.shards()["shards"]:
            leading[shard["primary"]] = leading.get(shard["primary"], 0) + 1
        if max(leading.values()) - min(leading.values()) > 1:
            return Seen({"primaries per node": leading})
        # /cluster/info last, and only once the rest is well (see LEADER_POLL).
        info = self.gateway.info()
        if info.get("moves") or info.get("handoffs"):
            return Seen({"moves": info.get("moves"), "handoffs": info.get("handoffs")})
        return self.leadership(info)

    def leadership(self, info: dict) -> Any:
        """Does /cluster/info name one of our coordinators as the leader and every other as a standby?"""
        leader = info.get("leader")
        standbys = sorted(info.get("standbys") or [])
        if leader not in self.coordinator_ids or standbys != [c for c in self.coordinator_ids if c != leader]:
            return Seen({"leader": leader, "term": info.get("term"), "standbys": standbys, "coordinators": self.coordinator_ids})
        return True
