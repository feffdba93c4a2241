"""Cluster-wide settings an operator may change at run time (`GET|PUT /cluster/config`).

Pure: no I/O, no clock. The coordinator validates a change with `apply_change`,
persists the result in JetStream (key `cluster_config` of the `torua_cluster`
bucket), applies it to itself (`into_config`) and broadcasts it to every node,
which takes what concerns it (heartbeat interval, log level).

A change is all or nothing: `apply_change` either returns the new settings or
raises `SettingsError` naming every bad field, and the current settings stand.

    >>> s = apply_change(ClusterSettings(), {"max_moves": 4})
    >>> s.max_moves
    4
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(ValueError):
    """A change names unknown settings or values outside their range; nothing changed."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in sorted(problems.items())))


@dataclass(frozen=True)
class ClusterSettings:
    heartbeat_interval: float = field(default=1.0, metadata={"range": (0.05, 60.0), "help": "seconds between node heartbeats"})
    unhealthy_after: int = field(default=3, metadata={"range": (1, 100), "help": "missed heartbeats before a node is unhealthy"})
    node_left_delay: float = field(default=60.0, metadata={"range": (0.0, 7 * 86400.0), "help": "seconds a node may stay unhealthy before its copies are rebuilt elsewhere"})
    max_moves: int = field(default=2, metadata={"range": (1, 64), "help": "shard moves running at once"})
    replication_factor: int = field(default=1, metadata={"range": (1, 5), "help": "copies of each shard"})
    log_level: str = field(default="info", metadata={"choices": LOG_LEVELS, "help": "log level of the coordinators and nodes (a gateway keeps its --log-level)"})
    disk_low_watermark: float = field(default=85.0, metadata={"range": (1.0, 100.0), "help": "disk use (%) above which a node takes no new copies"})
    disk_high_watermark: float = field(default=90.0, metadata={"range": (1.0, 100.0), "help": "disk use (%) above which copies move off a node"})
    auto_rebalance: bool = field(default=False, metadata={"help": "move hot shards to spread load without being asked"})
    rebalance_tolerance: float = field(default=0.25, metadata={"range": (0.05, 10.0), "help": "how far (fraction of the mean) the busiest node's load may exceed the mean before load rebalancing acts"})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(ClusterSettings)}

# Settings a coordinator also takes as flags (CoordinatorConfig): setting -> config field.
# The flags give the settings a cluster starts with, until a PUT /cluster/config stores some.
CONFIG_FLAGS = {
    "heartbeat_interval": "heartbeat_interval",
    "unhealthy_after": "unhealthy_after",
    "node_left_delay": "node_left_delay",
    "max_moves": "max_moves",
    "replication_factor": "replicas",
    "log_level": "log_level",
    "disk_low_watermark": "disk_low_watermark",
    "disk_high_watermark": "disk_high_watermark",
}


def from_config(config: Any) -> ClusterSettings:
    """The settings a coordinator's flags give, checked like a change (SettingsError)."""
    return apply_change(ClusterSettings(), {name: getattr(config, flag) for name, flag in CONFIG_FLAGS.items()})


def describe() -> dict[str, dict[str, Any]]:
    """Each setting's type, range or choices and help, for the API and docs."""
    out = {}
    for name, f in FIELDS.items():
        entry: dict[str, Any] = {"type": _type_of(f).__name__, "help": f.metadata.get("help", "")}
        if "range" in f.metadata:
            entry["min"], entry["max"] = f.metadata["range"]
        if "choices" in f.metadata:
            entry["choices"] = list(f.metadata["choices"])
        out[name] = entry
    return out


def apply_change(current: ClusterSettings, change: Any) -> ClusterSettings:
    """`current` with the fields in `change` replaced, or SettingsError naming every problem."""
    if not isinstance(change, dict):
        raise SettingsError({"body": "must be an object of setting names to values"})
    if not change:
        raise SettingsError({"body": "names no setting to change"})
    problems: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, value in change.items():
        f = FIELDS.get(name) if isinstance(name, str) else None
        if f is None:
            problems[str(name)] = f"unknown setting (known: {', '.join(FIELDS)})"
            continue
        checked = _check(f, value)
        if isinstance(checked, str):
            problems[name] = checked
        else:
            values[name] = checked[0]
    if problems:
        raise SettingsError(problems)
    new = dataclasses.replace(current, **values)
    problems = cross_check(new)
    if problems:
        raise SettingsError(problems)
    return new


def cross_check(s: ClusterSettings) -> dict[str, str]:
    """Rules that tie settings together."""
    problems = {}
    if s.disk_high_watermark < s.disk_low_watermark:
        problems["disk_high_watermark"] = f"must be >= disk_low_watermark ({s.disk_low_watermark})"
    if s.replication_factor > 1 and s.unhealthy_after < 2:
        problems["unhealthy_after"] = "must be >= 2 with replication_factor > 1 (a primary's lease is unhealthy_after - 1 heartbeats)"
    return problems


def from_dict(data: Any) -> ClusterSettings:
    """Settings as stored (by this or an older version): unknown keys are ignored, bad values refused."""
    if not isinstance(data, dict):
        raise SettingsError({"body": "stored settings are not an object"})
    known = {k: v for k, v in data.items() if k in FIELDS}
    return apply_change(ClusterSettings(), known) if known else ClusterSettings()


def _type_of(f: dataclasses.Field) -> type:
    return {"float": float, "int": int, "str": str, "bool": bool}[f.type if isinstance(f.type, str) else f.type.__name__]


def _check(f: dataclasses.Field, value: Any) -> tuple[Any] | str:
    """(value,) converted to the field's type, or what is wrong with it."""
    kind = _type_of(f)
    if kind is bool:
        if not isinstance(value, bool):
            return "must be true or false"
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return "must be a whole number"
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return "must be a number"
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            return "must be a string"
    if "range" in f.metadata:
        low, high = f.metadata["range"]
        if not low <= value <= high:
            return f"must be from {low:g} to {high:g}, not {value!r}"
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        return f"must be one of {', '.join(f.metadata['choices'])}, not {value!r}"
    return (value,)
