import argparse
from pathlib import Path

import pytest

from torua.config import ConfigError, CoordinatorConfig, GatewayConfig, NodeConfig, WorkerConfig, add_arguments, build


def parse(cls, argv, env=None):
    p = argparse.ArgumentParser()
    add_arguments(p, cls)
    return build(cls, p.parse_args(argv), env or {})


def test_flag_beats_environment_beats_default():
    assert parse(NodeConfig, ["--id", "n1"]).heartbeat_interval == 1.0
    assert parse(NodeConfig, ["--id", "n1"], {"TORUA_HEARTBEAT_INTERVAL": "0.5"}).heartbeat_interval == 0.5
    assert parse(NodeConfig, ["--id", "n1", "--heartbeat-interval", "2"], {"TORUA_HEARTBEAT_INTERVAL": "0.5"}).heartbeat_interval == 2.0
    assert parse(NodeConfig, [], {"TORUA_ID": "n7", "TORUA_DATA_DIR": "/x"}).data_dir == Path("/x")


@pytest.mark.parametrize(
    "cls,argv",
    [
        (NodeConfig, []),
        (NodeConfig, ["--id", "has space"]),
        (NodeConfig, ["--id", "n1", "--commit", "sometimes"]),
        (NodeConfig, ["--id", "n1", "--heartbeat-interval", "0"]),
        (NodeConfig, ["--id", "n1", "--heartbeat-interval", "fast"]),
        (CoordinatorConfig, ["--shards", "0"]),
        (CoordinatorConfig, ["--replicas", "6"]),
        (CoordinatorConfig, ["--replicas", "0"]),
        (CoordinatorConfig, ["--replicas", "2", "--unhealthy-after", "1"]),
        (GatewayConfig, ["--port", "70000"]),
        (GatewayConfig, ["--log-level", "loud"]),
    ],
)
def test_bad_settings_are_refused(cls, argv):
    with pytest.raises(ConfigError):
        parse(cls, argv)


@pytest.mark.parametrize(
    "argv,message",
    [
        # the coordinator's flags seed the cluster settings: PUT /cluster/config's ranges apply
        (["--max-moves", "65"], "--max-moves must be from 1 to 64, not 65"),
        (["--heartbeat-interval", "0.01"], "--heartbeat-interval must be from 0.05 to 60"),
        (["--node-left-delay", "1e9"], "--node-left-delay must be from 0 to"),
        (["--disk-low-watermark", "95", "--disk-high-watermark", "90"], "--disk-high-watermark must be >= disk_low_watermark"),
    ],
)
def test_coordinator_flags_are_held_to_the_cluster_settings_ranges(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse(CoordinatorConfig, argv)


def test_help_names_every_variable():
    p = argparse.ArgumentParser()
    add_arguments(p, GatewayConfig)
    text = p.format_help()
    for var in ("TORUA_NATS_URL", "TORUA_PORT", "TORUA_REQUEST_TIMEOUT", "TORUA_MAX_VALUE_BYTES"):
        assert var in text


# (id, flags beside --id n1, what the error names)
BAD_NATS_AUTH = [
    ("password-without-user", ["--nats-password", "p"], "needs nats_user"),
    ("two-ways-at-once", ["--nats-user", "u", "--nats-token", "t"], "not user and token"),
    ("missing-seed-file", ["--nats-nkey-seed", "/nonexistent/seed.nk"], "not a readable file"),
    ("missing-creds-file", ["--nats-creds", "/nonexistent/x.creds"], "not a readable file"),
    ("cert-without-key", ["--nats-tls-cert", "/nonexistent/c.pem"], "go together"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in BAD_NATS_AUTH], ids=[c[0] for c in BAD_NATS_AUTH])
def test_bad_nats_credentials_are_refused_at_start(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse(NodeConfig, ["--id", "n1", *argv])


def test_nats_credentials_come_from_flags_or_environment(tmp_path):
    seed = tmp_path / "seed.nk"
    seed.write_text("SU...")
    config = parse(NodeConfig, ["--id", "n1", "--nats-user", "n1"], {"TORUA_NATS_PASSWORD": "secret"})
    assert config.nats_auth().options() == {"user": "n1", "password": "secret"}
    assert parse(GatewayConfig, ["--nats-nkey-seed", str(seed)]).nats_auth().options() == {"nkeys_seed": str(seed)}
    assert parse(CoordinatorConfig, [], {"TORUA_NATS_TOKEN": "t"}).nats_auth().options() == {"token": "t"}
    assert parse(CoordinatorConfig, []).nats_auth().options() == {}


# The node's limits: (id, config class, flags, environment, expected value of the field or the error's words)
LIMITS = [
    ("node-default-value-limit", NodeConfig, [], {}, ("max_value_bytes", 8 << 20)),
    ("node-value-limit-flag", NodeConfig, ["--max-value-bytes", "1024"], {}, ("max_value_bytes", 1024)),
    ("node-value-limit-env", NodeConfig, [], {"TORUA_MAX_VALUE_BYTES": "2048"}, ("max_value_bytes", 2048)),
    ("node-value-limit-zero", NodeConfig, ["--max-value-bytes", "0"], {}, "max_value_bytes must be from 1 to"),
    ("node-value-limit-above-nats", NodeConfig, ["--max-value-bytes", str(64 << 20)], {}, "max_value_bytes must be from 1 to"),
    ("node-value-limit-ceiling", NodeConfig, ["--max-value-bytes", str((64 << 20) - (64 << 10))], {}, ("max_value_bytes", (64 << 20) - (64 << 10))),
    ("node-value-limit-text", NodeConfig, ["--max-value-bytes", "8MiB"], {}, "not a valid int"),
    ("node-default-copy-timeout", NodeConfig, [], {}, ("copy_timeout", 600.0)),
    ("node-copy-timeout-env", NodeConfig, [], {"TORUA_COPY_TIMEOUT": "30"}, ("copy_timeout", 30.0)),
    ("node-copy-timeout-zero", NodeConfig, ["--copy-timeout", "0"], {}, "copy_timeout must be more than 0"),
    ("node-copy-timeout-over-a-day", NodeConfig, ["--copy-timeout", "86401"], {}, "at most 86400 seconds"),
    ("node-default-copy-source-hold", NodeConfig, [], {}, ("copy_source_hold", 120.0)),
    ("node-copy-source-hold-flag", NodeConfig, ["--copy-source-hold", "5"], {}, ("copy_source_hold", 5.0)),
    ("node-copy-source-hold-negative", NodeConfig, ["--copy-source-hold", "-1"], {}, "copy_source_hold must be more than 0"),
    ("node-default-graph-buffer-pool", NodeConfig, [], {}, ("graph_buffer_pool", 256)),
    ("node-graph-buffer-pool-env", NodeConfig, [], {"TORUA_GRAPH_BUFFER_POOL": "32"}, ("graph_buffer_pool", 32)),
    ("node-graph-buffer-pool-too-small", NodeConfig, ["--graph-buffer-pool", "8"], {}, "graph_buffer_pool must be from 16 to 65536"),
    ("node-default-graph-max-db-size", NodeConfig, [], {}, ("graph_max_db_size", 8192)),
    ("node-graph-max-db-size-flag", NodeConfig, ["--graph-max-db-size", "4096"], {}, ("graph_max_db_size", 4096)),
    ("node-graph-max-db-size-8tib", NodeConfig, ["--graph-max-db-size", str(8 << 20)], {}, "graph_max_db_size must be from 64 to 4194304"),
    ("node-default-graph-threads", NodeConfig, [], {}, ("graph_threads", 1)),
    ("node-graph-threads-env", NodeConfig, [], {"TORUA_GRAPH_THREADS": "2"}, ("graph_threads", 2)),
    ("node-graph-threads-zero", NodeConfig, ["--graph-threads", "0"], {}, "graph_threads must be from 1 to 64"),
    ("node-default-malloc-arenas", NodeConfig, [], {}, ("malloc_arenas", 2)),
    ("node-malloc-arenas-env", NodeConfig, [], {"TORUA_MALLOC_ARENAS": "0"}, ("malloc_arenas", 0)),
    ("node-malloc-arenas-flag", NodeConfig, ["--malloc-arenas", "4"], {}, ("malloc_arenas", 4)),
    ("node-malloc-arenas-too-many", NodeConfig, ["--malloc-arenas", "65"], {}, "malloc_arenas must be from 0 to 64"),
    ("gateway-value-limit-zero", GatewayConfig, ["--max-value-bytes", "0"], {}, "max_value_bytes must be from 1 to"),
    ("gateway-value-limit-above-nats", GatewayConfig, ["--max-value-bytes", str(1 << 30)], {}, "max_value_bytes must be from 1 to"),
    ("gateway-value-limit-env", GatewayConfig, [], {"TORUA_MAX_VALUE_BYTES": "4096"}, ("max_value_bytes", 4096)),
    ("worker-default-request-timeout", WorkerConfig, [], {}, ("request_timeout", 5.0)),
    ("worker-request-timeout-flag", WorkerConfig, ["--request-timeout", "20"], {}, ("request_timeout", 20.0)),
    ("worker-request-timeout-env", WorkerConfig, [], {"TORUA_REQUEST_TIMEOUT": "12.5"}, ("request_timeout", 12.5)),
    ("worker-request-timeout-zero", WorkerConfig, ["--request-timeout", "0"], {}, "request_timeout must be more than 0"),
    ("worker-request-timeout-over-ten-minutes", WorkerConfig, ["--request-timeout", "601"], {}, "at most 600 seconds"),
]


@pytest.mark.parametrize("cls,argv,env,expected", [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_limits_are_settings_with_ranges(cls, argv, env, expected):
    argv = (["--id", "n1"] if cls is NodeConfig else []) + argv
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            parse(cls, argv, env)
    else:
        name, value = expected
        assert getattr(parse(cls, argv, env), name) == value


@pytest.mark.parametrize("flag", ["--max-value-bytes", "--copy-timeout", "--copy-source-hold"])
def test_node_help_shows_its_limits(flag):
    p = argparse.ArgumentParser()
    add_arguments(p, NodeConfig)
    text = " ".join(p.format_help().split())
    assert flag in text and "TORUA_" + flag[2:].upper().replace("-", "_") in text


def test_api_key_switches_of_the_gateway(tmp_path):
    """`--insecure` alone means true; a value other than a yes or no is refused; keys off
    and an admin key file together are refused; so is a key file holding no key."""
    from torua.cli.main import parser

    def gateway(*argv: str, environ: dict[str, str] | None = None):
        return build(GatewayConfig, parser().parse_args(["gateway", *argv]), environ or {})

    assert gateway("--insecure").insecure is True
    assert gateway("--insecure", "false").insecure is False
    assert gateway(environ={"TORUA_INSECURE": "1"}).insecure is True
    with pytest.raises(ConfigError, match="insecure: 'maybe' is not a valid bool"):
        gateway("--insecure", "maybe")
    key_file = tmp_path / "admin.key"
    with pytest.raises(ConfigError, match="give one of them"):
        gateway("--insecure", "--admin-key-file", str(key_file))
    assert gateway("--admin-key-file", str(key_file)).admin_key_file == str(key_file)  # missing: made at start
    key_file.write_text("not a key\n")
    with pytest.raises(ConfigError, match="holds no API key"):
        gateway("--admin-key-file", str(key_file))
    # the workers' key (role write), as the admin key
    worker_file = tmp_path / "worker.key"
    with pytest.raises(ConfigError, match="worker_key_file makes an API key.*give one of them"):
        gateway("--insecure", "--worker-key-file", str(worker_file))
    assert gateway("--worker-key-file", str(worker_file)).worker_key_file == str(worker_file)
    worker_file.write_text("torua_nope\n")
    with pytest.raises(ConfigError, match=f"worker_key_file {worker_file} holds no API key"):
        gateway("--worker-key-file", str(worker_file))
