"""Every NATS subject Torua uses, in one place (see docs/protocol.md)."""

from __future__ import annotations

PREFIX = "torua"

HEARTBEAT = "torua.cluster.heartbeat"          # node -> coordinator, request (the reply is a LeaseGrant): shared, for older releases
HEARTBEATS = "torua.cluster.heartbeat.>"       # torua.cluster.heartbeat.<node id>: each node's own, bound to its login
MAP_ANNOUNCE = "torua.cluster.map"             # coordinator -> everyone, publish
BROADCAST = "torua.cluster.broadcast"          # operator -> every node, publish/request

COORDINATOR_API = "torua.coordinator"          # torua.coordinator.<call>, request/reply
API = "torua.api"                              # public gateway API, queue group
API_QUEUE = "torua-gateway"

# JetStream KV bucket holding the cluster's own state.
CLUSTER_BUCKET = "torua_cluster"
MAP_KEY = "shard_map"
NODE_KEY_PREFIX = "nodes."
CONFIG_KEY = "cluster_config"  # the cluster settings (torua.cluster_settings), JSON
# the coordinators' election (torua.coordinator.election): entries expire after the lease
LEADER_BUCKET = "torua_leader"
LEADER_KEY = "leader"
STANDBY_KEY_PREFIX = "standby."
# the catalog of named graphs (docs/design/graph.md): key = graph name, value = JSON GraphRef + created_at
GRAPH_BUCKET = "torua_graphs"
# API keys (torua.api_keys): key = the key's id, value = its JSON record (a SHA-256, never the secret)
KEYS_BUCKET = "torua_keys"


def node(node_id: str, call: str) -> str:
    """A node's own subject, e.g. ``torua.node.n1.kv`` (calls: kv, graph, assign, shard.*)."""
    return f"torua.node.{node_id}.{call}"


def heartbeat(node_id: str) -> str:
    """A node's heartbeat subject, ``torua.cluster.heartbeat.n1``: NATS permissions let
    only that node's login publish it, and the coordinator takes from it only
    heartbeats of that node (torua.coordinator.senders)."""
    return f"{HEARTBEAT}.{node_id}"


def coordinator(call: str) -> str:
    return f"{COORDINATOR_API}.{call}"


def valid_node_id(node_id: str) -> bool:
    """Node ids become subject tokens: letters, digits, '-' and '_' only."""
    return 0 < len(node_id) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in node_id)
