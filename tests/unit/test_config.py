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


def test_help_names_every_variable():
    p = argparse.ArgumentParser()
    add_arguments(p, GatewayConfig)
    text = p.format_help()
    for var in ("TORUA_NATS_URL", "TORUA_PORT", "TORUA_REQUEST_TIMEOUT", "TORUA_MAX_VALUE_BYTES"):
        assert var in text
