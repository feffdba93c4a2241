"""The shapes of what the gateway answers, as JSON Schema (OpenAPI 3.1): the
components that `torua.gateway.endpoints` names in its replies. They mirror what
`torua.gateway.service` returns; request shapes are not here, they come from the
endpoints' params.
"""

from __future__ import annotations

from typing import Any

from torua.cluster_settings import describe as describe_settings

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
NUM: Schema = {"type": "number"}
STR_OR_NULL: Schema = {"type": ["string", "null"]}
INT_OR_NULL: Schema = {"type": ["integer", "null"]}
STRS: Schema = {"type": "array", "items": STR}
INTS: Schema = {"type": "array", "items": INT}
TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}


def obj(properties: dict[str, Schema], required: list[str] | None = None, description: str = "") -> Schema:
    out: Schema = {"type": "object", "properties": properties, "required": required if required is not None else list(properties)}
    if description:
        out["description"] = description
    return out


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _settings_properties() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for name, d in describe_settings().items():
        schema: Schema = {"type": {"float": "number", "int": "integer", "str": "string", "bool": "boolean"}[d["type"]], "description": d["help"]}
        if "min" in d:
            schema["minimum"], schema["maximum"] = d["min"], d["max"]
        if "choices" in d:
            schema["enum"] = d["choices"]
        out[name] = schema
    return out


_GRAPH_INFO: dict[str, Schema] = {
    "name": STR,
    "uid": {**STR, "description": "new each time a graph of this name is created"},
    "vector_dim": {**INT, "description": "floats per embedding; 0: no vectors"},
    "metric": {"enum": ["cosine", "l2"]},
    "text_properties": {**STRS, "description": "the properties full-text search covers"},
    "created_at": {"type": "string", "format": "date-time"},
}
_EDGE = obj({"src": STR, "type": STR, "dst": STR, "weight": NUM, "properties": {"type": "object"}})

_API_KEY = obj(
    {
        "id": STR,
        "name": STR,
        "role": {"type": "string", "enum": ["read", "write", "admin"]},
        "scope": {
            "type": ["object", "null"],
            "properties": {"graphs": STRS, "prefixes": STRS},
            "description": "a tenant key reaches only these graphs and key prefixes; null: the whole cluster",
        },
        "created_at": NUM,
        "revoked_at": {"type": ["number", "null"]},
        "rate": {"type": ["number", "null"], "description": "requests a second at each gateway and node; null: no limit"},
        "max_bytes": {"type": ["integer", "null"], "description": "the largest request it may send; null: the gateway's own limits"},
        "revoked": BOOL,
    }
)

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "error": obj(
                {
                    "code": {"type": "string", "examples": ["not_found"]},
                    "message": STR,
                    "fields": {"type": "object", "additionalProperties": STR, "description": "what is wrong with each named field (e.g. a setting)"},
                },
                required=["code", "message"],
            )
        },
        description="every error, with the HTTP status of its code",
    ),
    "KeyPage": obj(
        {"keys": STRS, "next_cursor": {**STR_OR_NULL, "description": "pass as ?cursor= for the next page; null at the end"}},
        description="keys sorted within a shard, shards in order 0..n-1 (not globally sorted)",
    ),
    "Location": obj({"key": STR, "shard_id": INT, "primary": STR_OR_NULL, "epoch": INT, "state": ref("ShardState")}),
    "ShardState": {"enum": ["active", "moving", "unassigned", "unavailable"]},
    "Shard": obj(
        {
            "shard_id": INT,
            "primary": STR_OR_NULL,
            "replicas": STRS,
            "in_sync": STRS,
            "state": ref("ShardState"),
            "target": {**STR_OR_NULL, "description": "while moving: the node the shard is going to"},
        }
    ),
    "Shards": obj({"num_shards": INT, "epoch": INT, "replication_factor": INT, "shards": {"type": "array", "items": ref("Shard")}}),
    "AssignResult": obj({"shard_id": INT, "node_id": STR, "status": {"enum": ["moving", "already_there"]}}),
    "Node": obj(
        {
            "id": STR,
            "status": {
                "enum": ["unknown", "healthy", "unhealthy", "draining", "drained", "evacuating", "evacuated", "maintenance"],
                "description": "the health, except for a healthy node being drained, evacuated or in maintenance",
            },
            "health": {"enum": ["unknown", "healthy", "unhealthy"]},
            "shards": {**INT, "description": "how many shards it holds"},
            "shard_ids": INTS,
            "primaries": INTS,
            "last_heartbeat": TIME_OR_NULL,
            "missed_heartbeats": INT,
            "draining": BOOL,
            "version": STR,
            "protocol": {**INT, "description": "protocol version of the node's last heartbeat (0: none yet)"},
            "host": STR,
            "data_dir": {**STR, "description": "its --data-dir on host (absolute), as last heard: also known once it is gone"},
            "pid": INT,
            "max_shards": INT_OR_NULL,
            "uptime_seconds": {"type": ["number", "null"]},
            "keys": INT,
            "bytes": INT,
            "ops_rate": {**NUM, "description": "KV operations per second its copies served lately (reads and writes)"},
            "write_rate": {**NUM, "description": "of which writes"},
            "maintenance": {**BOOL, "description": "takes no new copies; keeps serving what it holds"},
            "evacuating": BOOL,
            "missing_shards": {**INTS, "description": "shards the map counts on it for (primary or in-sync replica) that its heartbeats say it does not have"},
            "lease_held_seconds": {**NUM, "description": "until every primary lease it may hold has run out"},
            "capacity": ref("Capacity"),
        },
        required=["id", "status", "shards", "shard_ids", "last_heartbeat", "draining", "max_shards", "maintenance", "evacuating", "capacity"],
    ),
    "Capacity": obj(
        {
            "max_shards": INT_OR_NULL,
            "shards": INT,
            "free_slots": {**INT_OR_NULL, "description": "max_shards - shards; null = no limit"},
            "disk_total_bytes": INT,
            "disk_used_bytes": INT,
            "disk_free_bytes": INT,
            "disk_percent": {"type": ["number", "null"], "description": "used / (used + free), as df shows it; null = not reported"},
            "disk_level": {"enum": ["ok", "above_low", "above_high"], "description": "against disk_low_watermark / disk_high_watermark"},
        }
    ),
    "Nodes": obj({"nodes": {"type": "array", "items": ref("Node")}}),
    "MaintenanceResult": obj({"maintenance": BOOL, "drain": BOOL, "nodes": {"type": "array", "items": ref("Node")}}),
    "AllocationExplanation": obj(
        {
            "shard_id": INT,
            "status": {"enum": ["assigned", "out_of_sync", "under_replicated", "moving", "unavailable", "unassigned"]},
            "summary": {**STR, "description": "why the shard is (not) where it should be, in one sentence"},
            "state": ref("ShardState"),
            "primary": STR_OR_NULL,
            "replication_factor": INT,
            "copies": {
                "type": "array",
                "items": obj({"node": STR, "role": {"enum": ["primary", "replica"]}, "in_sync": BOOL, "node_status": STR, "stays": BOOL, "reason": STR}),
            },
            "nodes": {
                "type": "array",
                "items": obj(
                    {
                        "node": STR,
                        "decision": {"enum": ["holds_copy", "will_take", "could_take", "cannot_take"]},
                        "reason": STR,
                        "codes": {**STRS, "description": "unhealthy, gone, draining, maintenance, disk_low_watermark, disk_high_watermark, max_shards"},
                    }
                ),
            },
            "planned": {**STRS, "description": "where the placement plan wants the copies, primary first"},
            "move": {"oneOf": [ref("Move"), {"type": "null"}]},
        }
    ),
    "Move": obj({"shard_id": INT, "source": STR_OR_NULL, "target": STR, "phase": STR, "started_at": TIME_OR_NULL}),
    "ClusterInfo": obj(
        {
            "cluster_id": STR,
            "formed": BOOL,
            "coordinator": STR,
            "leader": STR,
            "term": INT,
            "standbys": STRS,
            "version": STR,
            "versions": STRS,
            "epoch": INT,
            "num_shards": INT,
            "replication_factor": INT,
            "nodes_total": INT,
            "nodes_healthy": INT,
            "shards_total": INT,
            "shards_assigned": INT,
            "health": {"enum": ["green", "yellow", "red"]},
            "moves": {"type": "array", "items": ref("Move")},
            "uptime_seconds": NUM,
            "failover": obj(
                {
                    "lease_seconds": {**NUM, "description": "how long a heartbeat reply lets a primary serve"},
                    "hold_seconds": {**NUM, "description": "how much longer than noticing a silent node a failover would wait now, for leases nodes may still hold"},
                }
            ),
            "handoffs": {**INTS, "description": "shards whose primary is being changed now (failovers and planned hand-offs)"},
        }
    ),
    "ClusterHealth": obj(
        {
            "status": {"enum": ["green", "yellow", "red"]},
            "epoch": INT,
            "shards_total": INT,
            "shards_active": INT,
            "shards_moving": INT,
            "shards_unassigned": INT,
            "shards_unavailable": INT,
            "shards_under_replicated": INT,
            "nodes_total": INT,
            "nodes_healthy": INT,
        },
        description="green: all copies assigned and in sync; yellow: all primaries, some replicas missing; red: some shard has no primary",
    ),
    "GatewayHealth": obj(
        {
            "status": {"enum": ["ok", "degraded"]},
            "nats": {"enum": ["connected", "reconnecting", "disconnected", "closed"]},
            "map_epoch": INT_OR_NULL,
            "version": STR,
            "uptime_seconds": NUM,
        }
    ),
    "Settings": obj(_settings_properties(), description="the cluster settings (torua.cluster_settings)"),
    "SettingsChange": obj(_settings_properties(), required=[], description="the settings to change, by name; at least one"),
    "ClusterConfig": obj(
        {"settings": ref("Settings"), "revision": {**INT, "description": "of the stored settings; 0 = never changed"}, "describe": {"type": "object"}}
    ),
    "ClusterConfigChanged": obj(
        {
            "settings": ref("Settings"),
            "revision": INT,
            "applied_by": {**STRS, "description": "healthy nodes that applied the change"},
            "missing": {**STRS, "description": "healthy nodes that did not acknowledge in time (they get it with their next heartbeat reply)"},
        }
    ),
    "LoadAction": obj(
        {
            "kind": {"enum": ["move", "swap"]},
            "how": {"enum": ["copy", "primary"], "description": "copy: the copy moves with its data; primary: an in-sync replica becomes primary"},
            "shard_id": {**INT, "description": "the hot shard, leaving source for target"},
            "source": STR,
            "target": STR,
            "swap_with": {**INT_OR_NULL, "description": "in a swap: the colder shard going from target to source"},
        }
    ),
    "Rebalance": obj(
        {
            "actions": {"type": "array", "items": ref("LoadAction")},
            "reason": {**STR, "description": "why these actions, or why none (balanced, idle, nothing to do, busy, settling)"},
            "started": BOOL,
            "dry_run": BOOL,
            "loads": {"type": "object", "additionalProperties": NUM, "description": "ops/s per node that may take part, as seen"},
            "mean": NUM,
            "threshold": {**NUM, "description": "mean * (1 + rebalance_tolerance): the busiest node must exceed it"},
            "expected_loads": {"type": "object", "additionalProperties": NUM},
            "shard_rates": {"type": "object", "additionalProperties": NUM, "description": "ops/s per shard id"},
        },
        description="load-based rebalancing of hot shards (ARCHITECTURE.md, Load rebalancing)",
    ),
    "CorpusSettings": obj(
        {"chunk_tokens": INT, "overlap_tokens": INT, "embedder": STR, "dim": INT, "extractor": STR, "llm_url": STR, "llm_model": STR, "embedding_model": STR},
        description="how a corpus is chunked (in the embedder's tokens), which embedder and extractor build it, its OpenAI-compatible endpoint (\"\": none)",
    ),
    "Corpus": obj({"name": STR, "settings": ref("CorpusSettings"), "created": {**BOOL, "description": "this request created it (201)"}}),
    "CorpusDetail": obj(
        {
            "name": STR, "settings": ref("CorpusSettings"), "counts": {"type": "object", "additionalProperties": INT, "description": "its graph's vertices, edges, ..."},
            "communities": {
                "oneOf": [ref("CommunityRun"), {"type": "null"}], "description": "the community run global queries use; null before the first",
            },
        }
    ),
    "CommunityRun": obj(
        {"run": {**STR, "description": "the job that made it"}, "communities": INT, "entities": {**INT, "description": "in a community"},
         "relations": {**INT, "description": "RELATED edges read"}, "built_at": STR},
    ),
    "JobAccepted": obj({"job": {**STR, "description": "GET /rag/{graph}/jobs/{job} shows its progress"}, "documents": INT, "accepted": BOOL}),
    "Job": obj(
        {"job": STR, "documents": INT, "done": INT, "failed": INT, "state": {"type": "string", "enum": ["running", "done"]},
         "first_error": {**STR, "description": "why the first failed document failed"}},
        required=["job", "documents", "done", "failed", "state"],
    ),
    "RagAnswer": obj(
        {
            "chunks": {
                "type": "array",
                "items": obj({"id": STR, "document_id": STR, "text": STR, "score": NUM, "start": INT, "end": INT}),
                "description": "best first, each with its document and character offsets in it",
            },
            "entities": {
                "type": "array", "items": obj({"id": STR, "score": NUM, "seed": BOOL, "community": STR}, required=["id"]),
                "description": "local and hybrid: the entities that ranked the chunks (score; seed: the question named it or is near its name); "
                "global: the most central entities of the communities answered (community)",
            },
            "relations": {"type": "array", "items": obj({"src": STR, "dst": STR, "weight": NUM, "predicates": {"type": "object"}})},
            "communities": {
                "type": "array", "items": obj({"id": STR, "score": NUM, "summary": STR, "size": INT, "entities": {"type": "array", "items": STR}}),
                "description": "global: the communities whose summaries are nearest the question, best first",
            },
            "answer": {**STR, "description": "with answer: true: the corpus's chat model's answer from the chunks"},
            "citations": {"type": "array", "items": STR, "description": "with answer: true: the chunk ids the answer cites, in its order"},
        },
        required=["chunks", "entities", "relations", "communities"],
    ),
    "GraphInfo": obj(_GRAPH_INFO, description="a graph of the catalog"),
    "Graph": obj({**_GRAPH_INFO, "created": {**BOOL, "description": "this request created it (201)"}}),
    "GraphList": obj({"graphs": {"type": "array", "items": ref("GraphInfo")}}),
    "GraphDetail": obj(
        {**_GRAPH_INFO, "counts": {"type": "object", "additionalProperties": INT, "description": "vertices, edges, ... summed over every shard"}}
    ),
    "Vertex": obj(
        {"id": STR, "label": STR, "properties": {"type": "object"}, "embedding": {"type": "array", "items": NUM, "description": "only with ?embedding=true"}},
        required=["id", "label", "properties"],
    ),
    "VertexWritten": obj({"id": STR, "created": {**BOOL, "description": "the vertex did not exist before (201)"}}),
    "Edge": _EDGE,
    "EdgeWritten": obj({"src": STR, "type": STR, "dst": STR, "created": {**BOOL, "description": "the edge did not exist before (201)"}}),
    "EdgePage": obj(
        {"edges": {"type": "array", "items": ref("Edge")}, "next_cursor": {**STR_OR_NULL, "description": "pass as ?cursor= for the next page; null at the end"}}
    ),
    "ImportResult": obj(
        {
            "vertices": {**INT, "description": "vertex lines applied"},
            "edges": {**INT, "description": "edge lines applied"},
            "errors": {
                "type": "array",
                "items": obj({"line": {**INT, "description": "1 for the first line"}, "error": STR}),
                "description": "the lines not applied, and why",
            },
        }
    ),
    "Traversal": obj(
        {
            "vertices": {
                "type": "array",
                "items": obj({"id": STR, "label": STR, "properties": {"type": "object"}, "hops": {**INT, "description": "the shortest distance from the seeds (0 for a seed)"}}),
            },
            "edges": {"type": "array", "items": ref("Edge"), "description": "only with edges: true: the edges walked between vertices of the answer"},
            "truncated": {**BOOL, "description": "limit, a shard's edge cap or the deadline cut the answer"},
        },
        required=["vertices", "truncated"],
    ),
    "Path": obj({"path": STRS, "edges": {"type": "array", "items": ref("Edge"), "description": "path[i] to path[i+1], in order"}}),
    "Hits": obj(
        {
            "hits": {
                "type": "array",
                "items": obj({"id": STR, "label": STR, "score": {**NUM, "description": "higher is better"}, "properties": {"type": "object"}}),
            }
        }
    ),
    "CypherResult": obj(
        {
            "columns": STRS,
            "rows": {"type": "array", "items": obj({"shard": INT, "values": {"type": "array"}}), "description": "every shard's rows, shards in order"},
            "truncated": {**BOOL, "description": "a shard had more rows than it answers with"},
        }
    ),
    "ApiKey": _API_KEY,
    "ApiKeys": obj({"keys": {"type": "array", "items": ref("ApiKey")}}),
    "NewApiKey": obj(
        {**_API_KEY["properties"], "token": {**STR, "description": "the key to send as Authorization: Bearer <token>; shown this once, never again"}},
    ),
    "BroadcastReply": obj(
        {"node_id": STR, "ok": BOOL, "kind": STR, "detail": {"type": "object"}, "error": obj({"code": STR, "message": STR})},
        required=["node_id", "ok", "kind", "detail"],
    ),
    "BroadcastResult": obj(
        {
            "kind": STR,
            "replies": {"type": "array", "items": ref("BroadcastReply")},
            "missing": {**STRS, "description": "healthy nodes that did not answer within the deadline (2 s)"},
            "expected": {"type": ["array", "null"], "items": STR, "description": "the healthy nodes waited for; null if no coordinator answered"},
        }
    ),
}
