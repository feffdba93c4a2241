"""What each Torua role may publish and subscribe to on NATS, and the
nats-server `authorization` block that says so.

One table for both places a server learns it: `torua up` renders it for its
embedded server with one nkey per process (`torua.nats_keys`), and
`deploy/nats/auth.conf`, for a hand-built production NATS with passwords, is
this module's `deploy_auth_conf()` word for word (a test holds them equal).

Torua processes take their replies on `_INBOX.<connection name>`
(torua-coordinator-<id>, torua-node-<id>, torua-gateway, torua-client), so a
role cannot read another's replies. Everything not allowed is refused by the
server, which logs a "Permissions Violation".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

Role = Literal["coordinator", "node", "gateway", "client", "worker"]
ROLES: tuple[Role, ...] = ("coordinator", "node", "gateway", "client", "worker")

# Read the shard map (torua_cluster); read and watch the graph catalog (torua_graphs).
MAP_READ = (
    "$JS.API.INFO", "$JS.API.STREAM.INFO.KV_torua_cluster",
    "$JS.API.DIRECT.GET.KV_torua_cluster.>", "$JS.API.STREAM.MSG.GET.KV_torua_cluster",
)


def watch_bucket(bucket: str) -> tuple[str, ...]:
    """Read and watch the JetStream KV bucket `bucket`."""
    stream = f"KV_{bucket}"
    return (
        f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.DIRECT.GET.{stream}.>", f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>", f"$JS.API.CONSUMER.DELETE.{stream}.>", f"$JS.FC.{stream}.>",
    )


CATALOG_READ = watch_bucket("torua_graphs")
# The GraphRAG ingestion queue (torua.rag.queue): the stream TORUA_RAG, its workers' consumer.
RAG_QUEUE = (
    "torua.rag.jobs.>", "$JS.API.INFO", "$JS.API.STREAM.CREATE.TORUA_RAG", "$JS.API.STREAM.INFO.TORUA_RAG",
    "$JS.API.CONSUMER.CREATE.TORUA_RAG", "$JS.API.CONSUMER.CREATE.TORUA_RAG.>", "$JS.API.CONSUMER.DURABLE.CREATE.TORUA_RAG.>",
    "$JS.API.CONSUMER.INFO.TORUA_RAG.>", "$JS.API.CONSUMER.MSG.NEXT.TORUA_RAG.>", "$JS.ACK.TORUA_RAG.>",
)
# Which version of each document is written (torua.rag.claims): the workers' bucket torua_rag_claims.
RAG_CLAIMS = (
    "$KV.torua_rag_claims.>", "$JS.API.STREAM.CREATE.KV_torua_rag_claims", "$JS.API.STREAM.INFO.KV_torua_rag_claims",
    "$JS.API.DIRECT.GET.KV_torua_rag_claims.>", "$JS.API.STREAM.MSG.GET.KV_torua_rag_claims",
)
# The API keys (torua_keys): only gateways read and write them.
KEYS_READ_WRITE = ("$KV.torua_keys.>", *watch_bucket("torua_keys"))


@dataclass(frozen=True)
class Permissions:
    """A role's subjects; `allow_responses`: it may answer requests it received."""

    about: str  # one line, for the rendered file
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool


def permissions(role: Role, node_id: str = "") -> Permissions:
    """The subjects of `role` (a node's depend on its id). A client with an id is a
    named application (`torua auth nats client <name>`): it reads only its own
    replies (``_INBOX.torua-client-<name>``), so one tenant's application cannot read
    another's answers, and it does not see the node list.

    >>> "torua.cluster.map" in permissions("node", "n1").publish
    False
    >>> permissions("node", "n1").subscribe[0]
    'torua.node.n1.>'
    """
    if role == "coordinator":
        return Permissions(
            "the coordinators: the shard map, the election, commands to every node",
            (
                "torua.cluster.map", "torua.cluster.broadcast", "torua.node.*.assign",
                "torua.node.*.shard.copy", "torua.node.*.shard.catch_up", "torua.node.*.shard.freeze",
                "torua.node.*.shard.unfreeze", "torua.node.*.shard.drop", "torua.node.*.shard.position",
                "$JS.API.>", "$KV.torua_cluster.>", "$KV.torua_leader.>", "$JS.FC.>", "$JS.ACK.>",
            ),
            ("torua.cluster.heartbeat.>", "torua.cluster.heartbeat", "torua.coordinator.>", "_INBOX.>"),
            True,
        )
    if role == "node":
        if not node_id:
            raise ValueError("a node's permissions name its id")
        return Permissions(
            f"node {node_id}: its own subjects, logs and snapshots from other nodes, an edge's other half, the map, the catalog and the API keys read only",
            (
                f"torua.cluster.heartbeat.{node_id}", "torua.cluster.heartbeat",  # its own; the shared one for older coordinators
                "torua.coordinator.in_sync", "torua.coordinator.node",
                "torua.node.*.shard.log", "torua.node.*.shard.snapshot", "torua.node.*.graph",
                *MAP_READ, *CATALOG_READ, *watch_bucket("torua_keys"),
            ),
            (f"torua.node.{node_id}.>", "torua.cluster.broadcast", "torua.cluster.map", f"_INBOX.torua-node-{node_id}.>"),
            True,
        )
    if role == "gateway":
        return Permissions(
            "the gateway: requests to nodes and the coordinator, the map read only, the graph catalog's keys, the public API",
            (
                "torua.node.*.kv", "torua.node.*.graph",
                "torua.coordinator.nodes", "torua.coordinator.info", "torua.coordinator.assign",
                "torua.coordinator.map", "torua.coordinator.node",
                "torua.coordinator.config", "torua.coordinator.config.set",
                "torua.coordinator.maintenance", "torua.coordinator.explain", "torua.coordinator.rebalance",
                "torua.cluster.broadcast", "torua.rag.api",
                *MAP_READ, "$KV.torua_graphs.>", *CATALOG_READ, *KEYS_READ_WRITE,
            ),
            ("torua.cluster.map", "torua.api.>", "$SRV.>", "_INBOX.torua-gateway.>"),
            True,
        )
    if role == "worker":
        return Permissions(
            "GraphRAG workers: the ingestion queue and its documents' claims, the gateways' GraphRAG calls, corpus graphs through the public NATS API and one hop (with their API key)",
            ("torua.api.>", "torua.node.*.app.graph", "torua.rag.names.>", *RAG_QUEUE, *RAG_CLAIMS, *MAP_READ, *CATALOG_READ),
            ("torua.rag.api", "torua.rag.names.>", "torua.cluster.map", "_INBOX.>"),
            True,
        )
    if role == "client" and node_id:
        return Permissions(
            f"application {node_id}: the public NATS API and one-hop requests (each with its API key), the map and catalog read only, its own replies",
            ("torua.api.>", "torua.node.*.app.kv", "torua.node.*.app.graph", *MAP_READ, *CATALOG_READ),
            ("torua.cluster.map", f"_INBOX.torua-client-{node_id}.>"),
            False,
        )
    if role == "client":
        return Permissions(
            "applications: the public NATS API and torua.Client's one-hop requests (each with its API key), torua status",
            ("torua.api.>", "torua.node.*.app.kv", "torua.node.*.app.graph", "torua.coordinator.info", "torua.coordinator.nodes", *MAP_READ, *CATALOG_READ),
            ("torua.cluster.map", "_INBOX.>"),
            False,
        )
    raise ValueError(f"unknown role {role!r}")


@dataclass(frozen=True)
class NatsUser:
    """One entry of `authorization.users`: how it logs in, and as which role."""

    role: Role
    node_id: str = ""
    nkey: str = ""  # a user's public nkey (U...); else `user` with `password`
    user: str = ""
    password: str = ""  # as written in the file: "$VARIABLE" takes it from the environment


def _strings(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{s}"' for s in items) + "]"


def _user_entry(u: NatsUser) -> str:
    p = permissions(u.role, u.node_id)
    login = f'nkey: "{u.nkey}"' if u.nkey else f"user: {u.user}, password: {u.password}"
    return (
        f"    # {p.about}\n"
        f"    {{ {login}, permissions: {{\n"
        f"        publish = {{ allow = {_strings(p.publish)} }}\n"
        f"        subscribe = {{ allow = {_strings(p.subscribe)} }}\n"
        f"        allow_responses = {'true' if p.allow_responses else 'false'} }} }}\n"
    )


def render_authorization(users: Sequence[NatsUser]) -> str:
    """The `authorization` block of a nats-server config for `users`."""
    return "authorization {\n  users = [\n" + "".join(_user_entry(u) for u in users) + "  ]\n}\n"


DEPLOY_HEADER = """\
# Users and subject permissions for a Torua cluster (include this file from each
# nats-server config; see README.md here). Passwords come from the environment of
# the nats-server process: TORUA_COORDINATOR_PASSWORD, TORUA_NODE_PASSWORD,
# TORUA_GATEWAY_PASSWORD, TORUA_CLIENT_PASSWORD, TORUA_WORKER_PASSWORD.
#
# Written by `python -m torua.nats_roles > deploy/nats/auth.conf` from the table
# in torua/nats_roles.py, which `torua up` renders for its own nats-server too.
# For a fifth node, add n5 to DEPLOY_NODES there and write the file again (or copy
# the n4 entry and change the id in its two subjects).
#
# Torua processes take their replies on _INBOX.<connection name>
# (torua-coordinator-<id>, torua-node-<id>, torua-gateway, torua-client, torua-worker-<id>), so a
# node or the gateway cannot read another's replies. Everything not allowed is
# refused by the server, which logs a "Permissions Violation".

"""
DEPLOY_NODES = ("n1", "n2", "n3", "n4")


def deploy_users() -> list[NatsUser]:
    """The users of `deploy/nats/auth.conf`: coordinator, n1..n4, gateway, client and worker, with
    passwords from the server's environment (one shared by the nodes)."""
    users = [NatsUser("coordinator", user="coordinator", password="$TORUA_COORDINATOR_PASSWORD")]
    users += [NatsUser("node", n, user=n, password="$TORUA_NODE_PASSWORD") for n in DEPLOY_NODES]
    users += [
        NatsUser("gateway", user="gateway", password="$TORUA_GATEWAY_PASSWORD"),
        NatsUser("client", user="client", password="$TORUA_CLIENT_PASSWORD"),
        NatsUser("worker", user="worker", password="$TORUA_WORKER_PASSWORD"),
    ]
    return users


def deploy_auth_conf() -> str:
    """`deploy/nats/auth.conf`, word for word."""
    return DEPLOY_HEADER + render_authorization(deploy_users())


if __name__ == "__main__":
    print(deploy_auth_conf(), end="")
