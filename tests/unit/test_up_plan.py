"""What `torua up` checks and starts (torua.cli.up_plan) and what it says while it
waits (torua.cli.readiness): tables of cases."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from torua.cli.main import parser
from torua.cli.readiness import health_line, shards_waiting, waiting_lines
from torua.cli.up_plan import check_children, check_up, found_nodes, nodes_to_start, plan_children
from torua.config import ConfigError


def up_args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["up", *argv])


@pytest.mark.parametrize(
    "argv,nodes,problem",
    [
        ([], 3, None),
        (["--replicas", "3"], 3, None),
        (["--replicas", "4"], 3, "--replicas 4 needs at least 4 nodes (a shard's copies are on distinct nodes); this cluster has 3"),
        (["--replicas", "4"], 4, None),  # a fourth node found in the data dir counts
        (["--nodes", "0"], 0, "--nodes must be at least 1, not 0"),
        (["--nodes", "-2"], 3, "--nodes must be at least 1, not -2"),
        (["--coordinators", "0"], 3, "--coordinators must be at least 1, not 0"),
        (["--port", "0"], 3, "--port must be from 1 to 65535, not 0"),
        (["--port", "65536"], 3, "--port must be from 1 to 65535, not 65536"),
        (["--nats-port", "99999"], 3, "--nats-port must be from 1 to 65535, not 99999"),
        (["--nats-port", "99999", "--nats-url", "nats://x:4222"], 3, None),  # no nats-server to start
        (["--port", "4222"], 3, "--port and --nats-port must differ (both 4222)"),
        (["--metrics-port", "9100"], 3, None),
        (["--metrics-port", "65532"], 3, "--metrics-port 65532 needs 6 ports from it, up to 65537; ports end at 65535"),  # and a worker
        (["--metrics-port", "8078"], 3, "--metrics-port 8078 takes ports 8078-8083, which include 8080"),
        (["--ready-timeout", "0"], 3, "--ready-timeout must be > 0, not 0"),
    ],
)
def test_up_rules(argv, nodes, problem):
    if problem is None:
        check_up(up_args(*argv), nodes)
    else:
        with pytest.raises(ConfigError) as refused:
            check_up(up_args(*argv), nodes)
        assert str(refused.value) == problem


@pytest.mark.parametrize(
    "argv,environ,problem",
    [
        ([], {}, None),
        (["--shards", "0"], {}, "shards must be between 1 and 4096 (for coordinator-c1)"),
        (["--replicas", "2", "--heartbeat-interval", "0"], {}, "heartbeat_interval must be > 0 and unhealthy_after >= 1 (for coordinator-c1)"),
        (["--log-level", "loud"], {}, "log_level must be debug, info, warning or error, not 'loud' (for coordinator-c1)"),
        # the children inherit the environment: a variable they would refuse is refused here
        ([], {"TORUA_LEADER_LEASE": "0.1"}, "leader_lease must be from 0.5 to 600 seconds (for coordinator-c1)"),
        ([], {"TORUA_MAX_SHARDS": "-1"}, "max_shards must be >= 0 (for node-n1)"),
        ([], {"TORUA_REQUEST_TIMEOUT": "0"}, "request_timeout must be > 0 (for gateway)"),
    ],
)
def test_every_process_checks_its_own_settings_first(argv, environ, problem):
    specs = plan_children(up_args(*argv), "nats://127.0.0.1:4222", nodes_to_start(3, Path("/d"), {}))
    if problem is None:
        assert len(check_children(specs, environ)) == 6  # and the GraphRAG worker
    else:
        with pytest.raises(ConfigError) as refused:
            check_children(specs, environ)
        assert str(refused.value) == problem


def test_the_plan_names_every_process_its_command_line_and_metrics_port():
    specs = plan_children(
        up_args("--coordinators", "2", "--metrics-port", "9100", "--heartbeat-interval", "0.5"),
        "nats://127.0.0.1:4222",
        {"n1": Path("/d/n1"), "n2": Path("/d/n2"), "n7": Path("/d/n7")},
    )
    assert [(s.name, s.metrics_port) for s in specs] == [
        ("coordinator-c1", 9100), ("coordinator-c2", 9101), ("node-n1", 9102), ("node-n2", 9103), ("node-n7", 9104), ("gateway", 9105),
        ("worker-w1", 9106),
    ]
    n7 = specs[4]
    assert n7.node_id == "n7" and n7.args[:5] == ("node", "--id", "n7", "--data-dir", "/d/n7")
    assert "--expect-nodes" in specs[0].args and specs[0].args[specs[0].args.index("--expect-nodes") + 1] == "3"
    for spec in specs:
        if spec.role in ("gateway", "worker"):
            assert "--heartbeat-interval" not in spec.args
        else:
            assert spec.args[spec.args.index("--heartbeat-interval") + 1] == "0.5"


def test_nodes_found_in_the_data_dir(tmp_path):
    for directory, marker in {
        "n1": {"node_id": "n1"}, "n4": {"node_id": "n4"}, "odd-name": {"node_id": "n9"},
        "broken": "{not json", "logs": None, "nats": None, "empty-marker": {},
    }.items():
        (tmp_path / directory).mkdir()
        if marker is not None:
            (tmp_path / directory / "node.json").write_text(marker if isinstance(marker, str) else json.dumps(marker))
    (tmp_path / "torua.lock").write_text("")
    assert found_nodes(tmp_path) == {"n1": tmp_path / "n1", "n4": tmp_path / "n4", "n9": tmp_path / "odd-name"}
    assert list(nodes_to_start(2, tmp_path, found_nodes(tmp_path))) == ["n1", "n2", "n4", "n9"]
    assert found_nodes(tmp_path / "missing") == {}


SHARDS = {"shards": [
    {"shard_id": 0, "primary": "n1", "replicas": ["n2"]},
    {"shard_id": 1, "primary": "n5", "replicas": []},
    {"shard_id": 2, "primary": "n2", "replicas": ["n5", "n3"]},
    {"shard_id": 3, "primary": None, "replicas": []},
]}


@pytest.mark.parametrize(
    "health,waiting",
    [
        ({"n1": "healthy", "n2": "healthy", "n3": "healthy", "n5": "healthy"}, {}),
        ({"n1": "healthy", "n2": "healthy", "n3": "healthy", "n5": "unknown"}, {"n5": [1, 2]}),
        ({"n1": "healthy", "n2": "unhealthy", "n3": "healthy"}, {"n2": [0, 2], "n5": [1, 2]}),  # n5 not even listed
    ],
)
def test_which_shards_wait_for_which_node(health, waiting):
    nodes = {"nodes": [{"id": n, "health": h} for n, h in health.items()]}
    assert shards_waiting(SHARDS, nodes) == waiting


def test_waiting_lines_name_the_command_for_nodes_up_does_not_start():
    nodes = {"nodes": [{"id": "n5", "health": "unknown", "host": "vm", "data_dir": "/srv/n5"}]}
    lines = waiting_lines({"n2": [0], "n5": [1]}, nodes, {"n1", "n2", "n3"}, "nats://127.0.0.1:4222", "vm")
    assert lines == [
        "torua up: shard 1 waits for node n5, which this torua up does not start; start it with",
        "  torua node --id n5 --nats-url nats://127.0.0.1:4222 --data-dir /srv/n5",
    ]
    assert not any("ready" in line for line in lines)  # `torua up`'s readers wait for that word


@pytest.mark.parametrize(
    "health,line",
    [
        ({"status": "red", "shards_total": 0, "nodes_total": 2, "nodes_healthy": 2}, "cluster red: no shard map yet; 2 of 2 nodes healthy"),
        ({"status": "yellow", "shards_total": 8, "shards_under_replicated": 2, "nodes_total": 3, "nodes_healthy": 2},
         "cluster yellow: 2 of 8 shards under-replicated; 2 of 3 nodes healthy"),
        ({"status": "red", "shards_total": 8, "shards_unassigned": 1, "shards_unavailable": 2, "nodes_total": 3, "nodes_healthy": 3},
         "cluster red: 1 of 8 shards unassigned, 2 of 8 shards unavailable; 3 of 3 nodes healthy"),
    ],
)
def test_health_line(health, line):
    assert health_line(health) == line
