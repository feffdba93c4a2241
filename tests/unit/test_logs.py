"""torua.logs: the JSON line each record becomes, and the log settings' validation."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pytest

from torua.config import ConfigError, CoordinatorConfig, GatewayConfig, NodeConfig, add_arguments, build
from torua.logs import JsonFormatter, iso_utc, text_formatter

CREATED = 1767607200.1234  # 2026-01-05T10:00:00.123Z


def record(message: str, args: tuple = (), level: int = logging.INFO, name: str = "torua.node", extra: dict | None = None, exc_info=None) -> logging.LogRecord:
    """A record as `logging.getLogger(name).log(level, message, *args, extra=extra)` makes it."""
    logger = logging.getLogger(name)
    rec = logger.makeRecord(name, level, "service.py", 1, message, args, exc_info, extra=extra)
    rec.created = CREATED
    return rec


# (case, formatter (role, id), record, the fields expected, fields that must be absent)
CASES = [
    (
        "node with shard and epoch",
        ("node", "n1"),
        record("moved shard %d to %s", (3, "n2"), extra={"shard": 3, "epoch": 12}),
        {"time": "2026-01-05T10:00:00.123Z", "level": "info", "logger": "torua.node", "message": "moved shard 3 to n2",
         "role": "node", "node_id": "n1", "shard": 3, "epoch": 12},
        set(),
    ),
    (
        "coordinator warning, epoch only",
        ("coordinator", "c2"),
        record("shard map epoch %d", (7,), logging.WARNING, "torua.coordinator", {"epoch": 7}),
        {"level": "warning", "logger": "torua.coordinator", "message": "shard map epoch 7", "role": "coordinator", "coordinator_id": "c2", "epoch": 7},
        {"shard", "node_id"},
    ),
    (
        "gateway has no id",
        ("gateway", ""),
        record("REST API on %s", ("http://127.0.0.1:8080",), logging.DEBUG, "torua.gateway"),
        {"level": "debug", "role": "gateway", "message": "REST API on http://127.0.0.1:8080"},
        {"gateway_id", "shard", "epoch", "exc"},
    ),
    (
        "unicode and a non-JSON extra",
        ("node", "n1"),
        record("key %s", ("数字",), extra={"path": Path("/tmp/x")}),
        {"message": "key 数字", "path": "/tmp/x"},
        set(),
    ),
    (
        "extra cannot overwrite the standard fields",
        ("node", "n1"),
        record("hello", extra={"role": "impostor", "level": "fatal"}),
        {"role": "node", "level": "info"},
        set(),
    ),
]


@pytest.mark.parametrize("identity,rec,expected,absent", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_json_line_fields(identity, rec, expected, absent):
    line = JsonFormatter(*identity).format(rec)
    assert "\n" not in line
    fields = json.loads(line)
    assert {k: fields.get(k) for k in expected} == expected
    assert not absent & set(fields)


def test_exception_stays_on_one_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record("tick failed", level=logging.ERROR, exc_info=sys.exc_info())
    line = JsonFormatter("coordinator", "c1").format(rec)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "tick failed" and "RuntimeError: boom" in fields["exc"]


def test_text_format_is_unchanged():
    line = text_formatter("node", "n1").format(record("shard %d dropped", (4,), extra={"shard": 4}))
    assert line.endswith(" INFO node[n1] torua.node: shard 4 dropped")


def test_iso_utc_has_milliseconds():
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(CREATED) == "2026-01-05T10:00:00.123Z"


def parse(cls, argv, env=None):
    p = argparse.ArgumentParser()
    add_arguments(p, cls)
    return build(cls, p.parse_args(argv), env or {})


@pytest.mark.parametrize(
    "cls,argv,env",
    [
        (NodeConfig, ["--id", "n1", "--log-format", "xml"], {}),
        (GatewayConfig, [], {"TORUA_LOG_FORMAT": "JSON "}),
        (CoordinatorConfig, ["--metrics-port", "70000"], {}),
        (GatewayConfig, ["--port", "9000", "--metrics-port", "9000"], {}),
        (GatewayConfig, ["--metrics-port", "nine"], {}),
    ],
)
def test_bad_log_and_metrics_settings_are_refused(cls, argv, env):
    with pytest.raises(ConfigError):
        parse(cls, argv, env)


def test_log_and_metrics_settings_from_flags_and_environment():
    node = parse(NodeConfig, ["--id", "n1"], {"TORUA_LOG_FORMAT": "json", "TORUA_METRICS_PORT": "9111"})
    assert (node.log_format, node.metrics_port) == ("json", 9111)
    assert (parse(GatewayConfig, []).log_format, parse(GatewayConfig, []).metrics_port) == ("text", 0)
