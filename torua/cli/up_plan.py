"""What `torua up` starts, decided and checked before anything starts.

`plan_children` lists every process with the exact command line it gets;
`check_up` holds `torua up`'s own rules and `check_children` builds each process's
configuration from its command line exactly as that process will
(`torua.config.build`, with this environment, which the children inherit), so a
value any of them would refuse is refused here, with exit code 2, before a
process, a file or a port is taken.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torua.config import ConfigError, CoordinatorConfig, GatewayConfig, NodeConfig, WorkerConfig, build

NODE_MARKER = "node.json"  # written by a node into its data dir (torua.node.service)
CONFIGS: dict[str, type] = {"coordinator": CoordinatorConfig, "node": NodeConfig, "gateway": GatewayConfig, "worker": WorkerConfig}


@dataclass(frozen=True)
class ChildSpec:
    """One process `torua up` starts: `args` follow `torua` (or are nats-server's whole argv)."""

    name: str  # coordinator-c1, node-n1, gateway (its log is logs/<name>.log)
    role: str  # coordinator | node | gateway
    args: tuple[str, ...]
    metrics_port: int = 0
    node_id: str = ""


def node_ids(count: int) -> list[str]:
    return [f"n{i}" for i in range(1, count + 1)]


def found_nodes(data_dir: Path) -> dict[str, Path]:
    """Node id -> its directory, for every directory right under `data_dir` that a node
    has claimed (its `node.json`). Reads only; a missing data dir holds none."""
    found: dict[str, Path] = {}
    try:
        entries = sorted(p for p in data_dir.iterdir() if p.is_dir())
    except OSError:
        return found
    for directory in entries:
        try:
            node_id = json.loads((directory / NODE_MARKER).read_text()).get("node_id")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(node_id, str) and node_id and node_id not in found:
            found[node_id] = directory
    return found


def nodes_to_start(count: int, data_dir: Path, found: Mapping[str, Path]) -> dict[str, Path]:
    """n1..nN in their directories under `data_dir`, then every other node found there
    (one added by hand with `--data-dir <data dir>/<id>`), so a restarted cluster
    gets all of its nodes back.

    >>> nodes_to_start(2, Path("/d"), {"n1": Path("/d/n1"), "n4": Path("/d/n4")})
    {'n1': PosixPath('/d/n1'), 'n2': PosixPath('/d/n2'), 'n4': PosixPath('/d/n4')}

    A directory of n1..nN that another node claimed is refused (that node would refuse it):

    >>> nodes_to_start(2, Path("/d"), {"n9": Path("/d/n2")})
    Traceback (most recent call last):
    ...
    torua.config.ConfigError: /d/n2 is node n9's directory, not n2's: move it out of the data dir or run fewer --nodes
    """
    wanted = {node_id: data_dir / node_id for node_id in node_ids(count)}
    for node_id, directory in found.items():
        for own, own_dir in wanted.items():
            if directory == own_dir and node_id != own:
                raise ConfigError(f"{directory} is node {node_id}'s directory, not {own}'s: move it out of the data dir or run fewer --nodes")
        wanted.setdefault(node_id, directory)
    return wanted


def check_up(a: argparse.Namespace, nodes: int) -> None:
    """`torua up`'s own rules, over its flags and the `nodes` it would start.

    >>> ns = argparse.Namespace(nodes=3, coordinators=1, replicas=9, port=8080, nats_port=4222, nats_url=None, metrics_port=0, ready_timeout=60.0)
    >>> check_up(ns, 3)
    Traceback (most recent call last):
    ...
    torua.config.ConfigError: --replicas 9 needs at least 9 nodes (a shard's copies are on distinct nodes); this cluster has 3
    """
    if a.nodes < 1:
        raise ConfigError(f"--nodes must be at least 1, not {a.nodes}")
    if a.coordinators < 1:
        raise ConfigError(f"--coordinators must be at least 1, not {a.coordinators}")
    if not 0 <= getattr(a, "workers", 0) <= 64:
        raise ConfigError(f"--workers must be from 0 to 64, not {a.workers}")
    if a.replicas > nodes:
        raise ConfigError(f"--replicas {a.replicas} needs at least {a.replicas} nodes (a shard's copies are on distinct nodes); this cluster has {nodes}")
    ports = {"--port": a.port} if a.nats_url else {"--port": a.port, "--nats-port": a.nats_port}
    for flag, port in ports.items():
        if not 1 <= port <= 65535:
            raise ConfigError(f"{flag} must be from 1 to 65535, not {port}")
    if a.nats_port == a.port and not a.nats_url:
        raise ConfigError(f"--port and --nats-port must differ (both {a.port})")
    if a.metrics_port:
        count = a.coordinators + nodes + 1 + getattr(a, "workers", 0)
        last = a.metrics_port + count - 1
        if not 1 <= a.metrics_port or last > 65535:
            raise ConfigError(f"--metrics-port {a.metrics_port} needs {count} ports from it, up to {last}; ports end at 65535")
        clash = sorted(p for p in ports.values() if a.metrics_port <= p <= last)
        if clash:
            raise ConfigError(f"--metrics-port {a.metrics_port} takes ports {a.metrics_port}-{last}, which include {clash[0]}")
    if a.ready_timeout <= 0:
        raise ConfigError(f"--ready-timeout must be > 0, not {a.ready_timeout:g}")


def plan_children(a: argparse.Namespace, nats_url: str, nodes: Mapping[str, Path]) -> list[ChildSpec]:
    """Coordinators c1..cN, the nodes, the gateway, then the workers w1..wN, each with its
    command line and its metrics port (BASE, BASE+1, ... in that order; 0 without
    --metrics-port)."""
    common = ("--nats-url", nats_url, "--log-level", a.log_level, "--log-format", getattr(a, "log_format", "text"))
    beat = ("--heartbeat-interval", str(a.heartbeat_interval))
    specs: list[ChildSpec] = []
    for i in range(1, a.coordinators + 1):
        args = ("coordinator", "--id", f"c{i}", "--shards", str(a.shards), "--replicas", str(a.replicas), "--expect-nodes", str(a.nodes)) + beat + common
        specs.append(ChildSpec(f"coordinator-c{i}", "coordinator", args))
    for node_id, directory in nodes.items():
        args = ("node", "--id", node_id, "--data-dir", str(directory), "--commit", a.commit) + beat + common
        specs.append(ChildSpec(f"node-{node_id}", "node", args, node_id=node_id))
    specs.append(ChildSpec("gateway", "gateway", ("gateway", "--host", a.host, "--port", str(a.port)) + common))
    # GraphRAG workers last: they call the gateway's API
    specs += [ChildSpec(f"worker-w{i}", "worker", ("worker", "--id", f"w{i}") + common) for i in range(1, getattr(a, "workers", 0) + 1)]
    base = getattr(a, "metrics_port", 0)
    if not base:
        return specs
    return [
        ChildSpec(s.name, s.role, s.args + ("--metrics-port", str(base + i), "--metrics-host", a.host), base + i, s.node_id)
        for i, s in enumerate(specs)
    ]


# NATS credentials from the environment: a child of a secured `torua up` gets its own key instead.
NATS_LOGIN_VARIABLES = ("TORUA_NATS_USER", "TORUA_NATS_PASSWORD", "TORUA_NATS_TOKEN", "TORUA_NATS_NKEY_SEED", "TORUA_NATS_CREDS")


def child_environment(environ: Mapping[str, str], secured: bool) -> dict[str, str]:
    """The children's environment: this one's, without NATS logins when each child
    gets its own key (one login each; the flag and a variable together are refused).

    >>> child_environment({"TORUA_NATS_USER": "me", "HOME": "/h"}, secured=True)
    {'HOME': '/h'}
    """
    return {k: v for k, v in environ.items() if not (secured and k in NATS_LOGIN_VARIABLES)}


def with_nats_keys(specs: list[ChildSpec], data_dir: Path) -> list[ChildSpec]:
    """Each process with `--nats-nkey-seed` of its role's key in the data dir
    (torua.nats_keys: every coordinator the coordinators' key, each node its own)."""
    from torua.nats_keys import seed_path

    return [
        ChildSpec(s.name, s.role, s.args + ("--nats-nkey-seed", str(seed_path(data_dir, s.role, s.node_id))), s.metrics_port, s.node_id)
        for s in specs
    ]


def with_role_args(specs: list[ChildSpec], roles: tuple[str, ...], args: tuple[str, ...]) -> list[ChildSpec]:
    """The processes of `roles` with `args` added (the gateway's admin key; --insecure for
    the gateway and the nodes, which check torua.Client's API keys).

    >>> [s.args for s in with_role_args([ChildSpec("gateway", "gateway", ("gateway",)), ChildSpec("c1", "coordinator", ("coordinator",))], ("gateway",), ("--x",))]
    [('gateway', '--x'), ('coordinator',)]
    """
    return [ChildSpec(s.name, s.role, s.args + args, s.metrics_port, s.node_id) if s.role in roles else s for s in specs]


def with_local_tls(specs: list[ChildSpec], tls: Any, nats: bool) -> list[ChildSpec]:
    """The gateway serving HTTPS with the data dir's certificate (torua.local_tls), and
    with `nats` (the embedded server speaks TLS) every process trusting its CA."""
    out = []
    for s in specs:
        args = s.args + (("--nats-tls-ca", str(tls.ca)) if nats else ())
        if s.role == "gateway":
            args += ("--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
        out.append(ChildSpec(s.name, s.role, args, s.metrics_port, s.node_id))
    return out


def check_children(specs: list[ChildSpec], environ: Mapping[str, str] | None = None) -> list[Any]:
    """Each process's configuration, built from its command line as it will build it;
    `ConfigError` for the first value one of them would refuse."""
    from torua.cli.main import parser

    p = parser()
    configs = []
    for spec in specs:
        args = p.parse_args(list(spec.args))
        try:
            configs.append(build(CONFIGS[spec.role], args, dict(environ) if environ is not None else None))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (for {spec.name})") from None
    return configs
