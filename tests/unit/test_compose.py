"""docker-compose.yml, checked for real: by `docker compose config` where Docker
Compose is installed, and always against Torua's own argument parser and config
validation, the NATS cluster config it feeds, and the layout it promises."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from torua.cli.main import parser
from torua.config import ConfigError, CoordinatorConfig, GatewayConfig, NodeConfig, build

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ROLES = {"coordinator": CoordinatorConfig, "node": NodeConfig, "gateway": GatewayConfig}
NATS_CONF_IN_IMAGE = "/etc/torua/nats/cluster-auth.conf"  # cluster.conf and auth.conf


def _compose_command() -> list[str] | None:
    """`docker compose` (v2), or the older standalone `docker-compose`, whichever is here."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


COMPOSE_COMMAND = _compose_command()


@pytest.mark.skipif(COMPOSE_COMMAND is None, reason="neither docker compose nor docker-compose is installed here")
def test_docker_compose_accepts_the_file():
    assert COMPOSE_COMMAND is not None
    done = subprocess.run([*COMPOSE_COMMAND, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _argv(value) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value or []]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def nats_servers(services) -> dict[str, dict]:
    return {name: s for name, s in services.items() if _argv(s.get("entrypoint"))[:1] == ["nats-server"]}


def torua_configs(services) -> dict[str, tuple[str, object]]:
    """Every Torua service: its role and its validated config, as `torua` would build them."""
    out = {}
    for name, s in services.items():
        if name in nats_servers(services):
            continue
        assert not s.get("entrypoint"), f"{name}: runs the image's entrypoint, `torua`"
        argv = _argv(s.get("command"))
        try:
            args = parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{name}: `torua {shlex.join(argv)}` does not parse (see the usage message above)")
        assert args.command in ROLES, f"{name}: {args.command!r} is not a long-running role"
        try:
            config = build(ROLES[args.command], args, environ=_env(s))
        except ConfigError as exc:
            pytest.fail(f"{name}: {exc}")
        out[name] = (args.command, config)
    return out


def of_role(services, role: str) -> dict[str, object]:
    return {name: config for name, (r, config) in torua_configs(services).items() if r == role}


def test_the_services_are_all_there(services):
    assert sorted(nats_servers(services)) == ["nats1", "nats2", "nats3"]
    roles = [role for role, _ in torua_configs(services).values()]
    assert (roles.count("coordinator"), roles.count("node"), roles.count("gateway")) == (2, 3, 1)
    assert set(services) == set(nats_servers(services)) | set(torua_configs(services))


def test_ids_are_unique_and_each_node_has_its_own_volume(services):
    coordinators, nodes = of_role(services, "coordinator"), of_role(services, "node")
    assert len({c.id for c in coordinators.values()}) == 2
    assert len({n.id for n in nodes.values()}) == 3
    declared = set(yaml.safe_load(COMPOSE.read_text()).get("volumes") or {})
    volumes = {}
    for name, config in nodes.items():
        mounts = [v.split(":") for v in services[name].get("volumes", [])]
        holding = [(source, target) for source, target, *_ in mounts if Path(config.data_dir).is_relative_to(target)]
        assert len(holding) == 1, f"{name}: its --data-dir {config.data_dir} is on no volume"
        source = holding[0][0]
        assert source in declared, f"{name}: {source} is not a named volume"
        volumes[name] = source
    assert len(set(volumes.values())) == 3, volumes


def test_the_nats_servers_route_to_each_other(services):
    servers = nats_servers(services)
    conf = "".join((ROOT / "deploy/nats" / f).read_text() for f in ("cluster.conf", "auth.conf"))
    assert 'include "cluster.conf"' in (ROOT / "deploy/nats/cluster-auth.conf").read_text()
    needed = set(re.findall(r"\$(TORUA_[A-Z0-9_]+)", conf))
    assert "COPY deploy/nats /etc/torua/nats" in (ROOT / "Dockerfile").read_text()
    for name, s in servers.items():
        argv = _argv(s.get("command"))
        assert argv[argv.index("-c") + 1] == NATS_CONF_IN_IMAGE, name
        env = _env(s)
        assert needed <= set(env), f"{name} leaves {sorted(needed - set(env))} of cluster.conf and auth.conf unset"
        for var in (v for v in needed if v.endswith("_PASSWORD")):
            assert env[var] == f"${{{var}:?set the five TORUA_*_PASSWORD variables (see the top of docker-compose.yml)}}", (name, var)
        assert env["TORUA_NATS_NAME"] == name and env["TORUA_NATS_CLUSTER_ADVERTISE"] == f"{name}:6222"
        routes = {urlparse(env[k]).hostname for k in ("TORUA_NATS_ROUTE_1", "TORUA_NATS_ROUTE_2")}
        assert routes == set(servers) - {name}, f"{name} routes to {routes}"
        assert all(urlparse(env[k]).port == 6222 for k in ("TORUA_NATS_ROUTE_1", "TORUA_NATS_ROUTE_2"))
        assert s.get("volumes"), f"{name}: JetStream data on no volume"


def test_every_torua_process_knows_all_three_nats_servers(services):
    for name, (role, config) in torua_configs(services).items():
        urls = [urlparse(u) for u in config.nats_url.split(",")]
        assert sorted(u.hostname for u in urls) == ["nats1", "nats2", "nats3"], name
        assert {u.port for u in urls} == {4222}, name
        assert set(services[name].get("depends_on", {})) >= {"nats1", "nats2", "nats3"}, name
    for config in of_role(services, "coordinator").values():
        assert config.kv_replicas == 3  # the buckets survive the loss of a NATS server
        assert config.replicas == 2


def _published(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def test_ports(services):
    coordinators, nodes, gateways = (of_role(services, r) for r in ("coordinator", "node", "gateway"))
    assert sorted(getattr(c, "metrics_port", None) for c in coordinators.values()) == [9101, 9102]
    assert sorted(getattr(n, "metrics_port", None) for n in nodes.values()) == [9111, 9112, 9113]
    for name, config in {**coordinators, **nodes}.items():
        assert config.metrics_port in _published(services[name]), name
        # the default listens on loopback only; Prometheus scrapes from its own container
        assert config.metrics_host == "0.0.0.0", name
    (name, gateway), = gateways.items()
    assert gateway.host == "0.0.0.0" and gateway.port == 8080 and 8080 in _published(services[name])


def test_the_sample_prometheus_config_scrapes_every_process_of_the_compose_file(services):
    """deploy/prometheus/prometheus.yml names the compose services and their metrics ports."""
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    # every process on its metrics port (the gateway's REST /metrics takes an API key)
    expected = {f"{name}:{config.metrics_port}" for name, (role, config) in torua_configs(services).items()}
    assert targets == expected and all(not t.endswith(":0") for t in targets)


def test_every_torua_process_logs_in_as_its_role(services):
    """Security on: each process has the user of deploy/nats/auth.conf for its role, with
    that user's password variable, which compose requires to be set."""
    from torua.nats_roles import deploy_users

    users = {u.user: u for u in deploy_users()}
    for name, (role, config) in torua_configs(services).items():
        user = users[config.nats_user]
        assert user.role == role and user.node_id == (config.id if role == "node" else ""), name
        assert config.nats_password == "${" + user.password.lstrip("$") + ":?set the five TORUA_*_PASSWORD variables (see the top of docker-compose.yml)}", name


def test_the_gateway_and_nodes_take_api_keys_the_first_admin_key_kept_in_the_gateways_volume(services):
    (name, gateway), = of_role(services, "gateway").items()
    assert not gateway.insecure and gateway.admin_key_file
    mounts = [v.split(":", 1) for v in services[name]["volumes"]]
    assert any(gateway.admin_key_file.startswith(path + "/") and volume == f"{name}-data" for volume, path in mounts)
    assert not any(node.insecure for node in of_role(services, "node").values())
