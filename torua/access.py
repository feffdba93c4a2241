"""Who may call each endpoint: the role it needs and the resource it touches
(`torua.api_keys.Rule`, decided by `torua.api_keys.permit`); and which of those
rules holds for each request `torua.Client` sends straight to a node
(`APP_OPERATIONS`, checked by the node: `admit_app`).

One row per endpoint of `torua.gateway.endpoints`, which refuses to load when an
endpoint has no row: a new endpoint is never open by accident. The OpenAPI
document shows each rule (``x-torua-access``), and the tests that check 401 and
403 for every role and tenant are generated from it.

- ``public``: /health (a liveness probe) and /openapi.json (the API's own description);
- ``read``: reading data and the cluster's state; ``write``: changing data;
- ``admin``: changing the cluster (moves, flags, settings, graphs made or removed) and API keys.
"""

from __future__ import annotations

from typing import Any, Mapping

from torua.api_keys import NEEDS_KEY, ApiKey, Rule, permit
from torua.protocol.errors import ToruaError

READ_CLUSTER = Rule("read", "cluster")

RULES: dict[str, Rule] = {
    # key-value
    "kv_list": Rule("read", "prefix"),
    "kv_get": Rule("read", "key"),
    "kv_put": Rule("write", "key"),
    "kv_delete": Rule("write", "key"),
    "location": Rule("read", "key"),
    # the cluster
    "shards": READ_CLUSTER,
    "nodes": READ_CLUSTER,
    "node": READ_CLUSTER,
    "explain": READ_CLUSTER,
    "cluster_info": READ_CLUSTER,
    "cluster_health": READ_CLUSTER,
    "cluster_config": READ_CLUSTER,
    "metrics": READ_CLUSTER,
    "assign": Rule("admin", "cluster"),
    "drain": Rule("admin", "cluster"),
    "maintenance": Rule("admin", "cluster"),
    "evacuate": Rule("admin", "cluster"),
    "set_cluster_config": Rule("admin", "cluster"),
    "rebalance": Rule("admin", "cluster"),
    "broadcast": Rule("admin", "cluster"),
    # graphs
    "graph_list": Rule("read", "catalog"),
    "graph_create": Rule("admin", "graph"),
    "graph_delete": Rule("admin", "graph"),
    "graph_get": Rule("read", "graph"),
    "graph_edges": Rule("read", "graph"),
    "vertex_get": Rule("read", "graph"),
    "vertex_put": Rule("write", "graph"),
    "vertex_delete": Rule("write", "graph"),
    "edge_put": Rule("write", "graph"),
    "edge_delete": Rule("write", "graph"),
    "graph_import": Rule("write", "graph"),
    "graph_traverse": Rule("read", "graph"),
    "graph_shortest_path": Rule("read", "graph"),
    "graph_vector_search": Rule("read", "graph"),
    "graph_text_search": Rule("read", "graph"),
    "graph_cypher": Rule("read", "graph"),  # read-only Cypher: a writing query is refused (400)
    # GraphRAG corpora (each a graph): made like a graph, documents written, queries read
    "rag_create": Rule("admin", "graph"),
    "rag_get": Rule("read", "graph"),
    "rag_documents": Rule("write", "graph"),
    "rag_job": Rule("read", "graph"),
    "rag_delete_document": Rule("write", "graph"),
    "rag_query": Rule("read", "graph"),
    "rag_communities": Rule("write", "graph"),
    # the gateway itself
    "health": Rule("public", "none"),
    "openapi": Rule("public", "none"),
    # API keys
    "auth_create": Rule("admin", "keys"),
    "auth_list": Rule("admin", "keys"),
    "auth_revoke": Rule("admin", "keys"),
}


# What torua.Client sends one hop to a node, on torua.node.<id>.app.kv|graph (the
# gateway's own requests use torua.node.<id>.kv|graph, which the client's NATS
# role may not publish), by the endpoint whose rule it follows. Any other
# operation (those nodes send each other) is not an application's to send there.
APP_OPERATIONS: dict[str, dict[str, str]] = {
    "kv": {"get": "kv_get", "put": "kv_put", "delete": "kv_delete", "list": "kv_list"},
    "graph": {
        "vertex.put": "vertex_put", "vertex.get": "vertex_get", "vertex.delete": "vertex_delete",
        "edge.put": "edge_put", "edge.delete": "edge_delete", "edges": "graph_edges",
        # GraphRAG's evidence (torua.node.graph_support): a write of the graph's vertices and edges, as a vertex put is
        "support": "vertex_put",
        # a batch of vertices and edges for one shard (`Graph.put_many`, a worker's writes per document)
        "import": "graph_import",
        # the edges of several vertices of the shards of one node (`Graph.edges_of`, a GraphRAG query's hops): reads, as a page of edges is
        "neighbours": "graph_edges",
        # the rows of several vertices of the shards of one node (`Graph.get_vertices`, a GraphRAG query's chunks): reads, as a vertex get is
        "vertices": "vertex_get",
    },
}


def admit_app(kind: str, op: str, key: ApiKey | None, values: Mapping[str, Any], keys_on: bool) -> None:
    """May a request `op` on a node's ``app.<kind>`` subject go on? `key` is the one it
    carries, checked (None: none came); with `keys_on` a key is required, and its rule
    is the one of the endpoint that does the same (its role, its tenant's graph or key).

    >>> admit_app("kv", "get", None, {"key": "a"}, keys_on=False)
    """
    name = APP_OPERATIONS.get(kind, {}).get(op)
    if name is None:
        raise ToruaError("forbidden", f"{kind} {op} is not a request an application sends to a node")
    if not keys_on:
        return
    if key is None:
        raise ToruaError("unauthorized", NEEDS_KEY)
    permit(RULES[name], key, values, name)
