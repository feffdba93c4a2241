import argparse
from pathlib import Path

import pytest

from torua.config import ConfigError, CoordinatorConfig, GatewayConfig, NodeConfig, add_arguments, build


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
