"""What `torua up` says while its cluster is not ready: which shards wait for which
node, how to start a node it does not start itself, and what a process that died
wrote last. Pure functions over what the gateway answers (`GET /cluster/health`,
`/shards`, `/nodes`) and the logs' text.
"""

from __future__ import annotations

import shlex
from typing import Any


def shards_waiting(shards: dict[str, Any], nodes: dict[str, Any]) -> dict[str, list[int]]:
    """Node id -> the shards with a copy (primary or replica) on it while it is not
    healthy: what keeps the cluster from green until that node serves.

    >>> shards = {"shards": [{"shard_id": 0, "primary": "n1", "replicas": []},
    ...                      {"shard_id": 1, "primary": "n4", "replicas": ["n1"]},
    ...                      {"shard_id": 2, "primary": "n2", "replicas": ["n4"]},
    ...                      {"shard_id": 3, "primary": None, "replicas": []}]}
    >>> nodes = {"nodes": [{"id": "n1", "health": "healthy"}, {"id": "n2", "health": "healthy"},
    ...                    {"id": "n4", "health": "unknown"}]}
    >>> shards_waiting(shards, nodes)
    {'n4': [1, 2]}
    """
    healthy = {n["id"] for n in nodes.get("nodes", []) if n.get("health", n.get("status")) == "healthy"}
    waiting: dict[str, list[int]] = {}
    for shard in shards.get("shards", []):
        copies = ([shard["primary"]] if shard.get("primary") else []) + list(shard.get("replicas") or [])
        for node_id in dict.fromkeys(copies):
            if node_id not in healthy:
                waiting.setdefault(node_id, []).append(shard["shard_id"])
    return {node_id: sorted(ids) for node_id, ids in sorted(waiting.items())}


def start_command(node_id: str, nats_url: str, node: dict[str, Any] | None, this_host: str, keys_in: str = "") -> str:
    """The command that starts `node_id` again, from what `/nodes` knows of where it ran
    (`keys_in`: the data dir of a `torua up` whose NATS takes only its keys).

    >>> start_command("n5", "nats://127.0.0.1:4222", {"data_dir": "/srv/n5", "host": "vm"}, "vm")
    'torua node --id n5 --nats-url nats://127.0.0.1:4222 --data-dir /srv/n5'
    >>> start_command("n5", "nats://10.0.0.1:4222", {"data_dir": "/srv/my n5", "host": "box2"}, "vm")
    "on box2: torua node --id n5 --nats-url nats://10.0.0.1:4222 --data-dir '/srv/my n5'"
    >>> start_command("n5", "nats://127.0.0.1:4222", None, "vm")
    'torua node --id n5 --nats-url nats://127.0.0.1:4222 --data-dir DIR  (DIR: the directory n5 ran with)'
    >>> start_command("n5", "nats://127.0.0.1:4222", {"data_dir": "/srv/n5"}, "vm", keys_in="/d")
    'torua node --id n5 --nats-url nats://127.0.0.1:4222 --data-dir /srv/n5 --nats-nkey-seed "$(torua auth nats node n5 --data-dir /d)"'
    """
    node = node or {}
    data_dir = node.get("data_dir") or ""
    host = node.get("host") or ""
    command = f"torua node --id {node_id} --nats-url {nats_url} --data-dir " + (shlex.quote(data_dir) if data_dir else "DIR")
    if keys_in:
        command += f' --nats-nkey-seed "$(torua auth nats node {node_id} --data-dir {shlex.quote(keys_in)})"'
    if not data_dir:
        command += f"  (DIR: the directory {node_id} ran with)"
    return command if not host or host == this_host else f"on {host}: {command}"


def waiting_lines(waiting: dict[str, list[int]], nodes: dict[str, Any], started: set[str], nats_url: str, this_host: str, keys_in: str = "") -> list[str]:
    """What to print about nodes this `torua up` does not start but shards wait for.

    >>> waiting_lines({"n1": [0], "n5": [3, 7]}, {"nodes": [{"id": "n5", "data_dir": "/srv/n5", "host": "vm"}]}, {"n1"}, "nats://127.0.0.1:4222", "vm")
    ['torua up: shards 3, 7 wait for node n5, which this torua up does not start; start it with', '  torua node --id n5 --nats-url nats://127.0.0.1:4222 --data-dir /srv/n5']
    """
    by_id = {n["id"]: n for n in nodes.get("nodes", [])}
    lines: list[str] = []
    for node_id, shard_ids in waiting.items():
        if node_id in started:
            continue  # ours: it is starting, or its exit is reported with its log
        noun, verb = ("shard", "waits") if len(shard_ids) == 1 else ("shards", "wait")
        lines.append(f"torua up: {noun} {', '.join(map(str, shard_ids))} {verb} for node {node_id}, which this torua up does not start; start it with")
        lines.append("  " + start_command(node_id, nats_url, by_id.get(node_id), this_host, keys_in))
    return lines


def health_line(health: dict[str, Any]) -> str:
    """One line from `GET /cluster/health`.

    >>> health_line({"status": "red", "shards_total": 16, "shards_unassigned": 0, "shards_unavailable": 3,
    ...              "shards_under_replicated": 0, "nodes_total": 4, "nodes_healthy": 3})
    'cluster red: 3 of 16 shards unavailable; 3 of 4 nodes healthy'
    """
    parts = [
        f"{health.get(key, 0)} of {health.get('shards_total', 0)} shards {word}"
        for key, word in (("shards_unassigned", "unassigned"), ("shards_unavailable", "unavailable"), ("shards_under_replicated", "under-replicated"))
        if health.get(key)
    ]
    shards = ", ".join(parts) or ("no shard map yet" if not health.get("shards_total") else "every shard served")
    nodes = f"{health.get('nodes_healthy', 0)} of {health.get('nodes_total', 0)} nodes healthy"
    return f"cluster {health.get('status', 'unknown')}: {shards}; {nodes}"


def tail(text: str, lines: int = 15) -> list[str]:
    """The last `lines` lines of a log, for the terminal.

    >>> tail("a\\nb\\nc\\n", 2)
    ['b', 'c']
    """
    return text.rstrip("\n").splitlines()[-lines:] if text.strip() else []
