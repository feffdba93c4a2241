"""The OpenAPI 3.1 description of the REST API, served at ``/openapi.json``.

Built from small helpers so every route shares the same error responses; the
schemas mirror what `torua.gateway.service` returns.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from torua import __version__
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


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Schema]:
    """Error responses by status; 500 is possible everywhere, so it is always listed."""
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in (*statuses, 500)}


ERROR_TEXT = {
    400: "bad input (key, JSON, parameter, cursor, a value out of range, a malformed HTTP request); nothing changed",
    403: "cross_origin: a browser page from another origin may not change anything here",
    404: "no such key, node, shard or route",
    405: "method not allowed on this path (Allow lists the ones that are)",
    408: "request_timeout: the request's headers or body did not arrive within the request deadline (--request-timeout); the connection is closed",
    409: "conflicts with the cluster's state (e.g. the shard is already moving)",
    413: "value larger than max_value_bytes",
    414: "uri_too_long: the request line is longer than 8190 bytes",
    415: "unsupported_media_type: a JSON body must be sent with Content-Type: application/json (or application/*+json)",
    431: "headers_too_large: a header is longer than 8190 bytes, or there are more than 128",
    500: "internal error (details only in the gateway log)",
    501: "not_implemented: a method this API does not use",
    503: "no node can serve it now, or no coordinator answers; retry after Retry-After seconds",
    504: "the request's deadline passed",
}


def _error_response(status: int) -> Schema:
    response = json_body(ref("Error"), ERROR_TEXT[status])
    response["headers"] = dict(SECURITY_RESPONSE_HEADERS)
    if status == 503:
        response["headers"]["Retry-After"] = {"description": "seconds to wait before retrying", "schema": INT}
    return response


def json_request(schema: Schema) -> Schema:
    return {"required": True, "description": JSON_BODY_NOTE, "content": {"application/json": {"schema": schema}}}


KEY_PARAM = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "everything after /data/ (or /keys/), percent-decoded strictly: 1-1024 bytes of UTF-8, no NUL; "
    "slashes allowed, raw or as %2F; every other character a key may hold percent-encoded (%0A for a newline, "
    "%23 for '#', %3F for '?'); the query string is not part of it",
    "schema": {"type": "string", "minLength": 1},
}

# Every response carries these, so a stored value is never sniffed or run as a page of the gateway's origin.
SECURITY_RESPONSE_HEADERS = {
    "X-Content-Type-Options": {"description": "always nosniff", "schema": {"const": "nosniff"}},
    "Content-Security-Policy": {"description": "always sandbox; default-src 'none'", "schema": STR},
}

JSON_BODY_NOTE = "Content-Type must be application/json (parameters such as charset allowed) or application/*+json, else 415."

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
    "AssignRequest": obj({"shard_id": {**INT, "minimum": 0, "description": "0 to num_shards - 1 (404 unknown_shard otherwise)"}, "node_id": STR}),
    "AssignResult": obj({"shard_id": INT, "node_id": STR, "status": {"enum": ["moving", "already_there"]}}),
    "Node": obj(
        {
            "id": STR,
            "status": {
                "enum": ["unknown", "healthy", "unhealthy", "draining", "drained", "evacuating", "evacuated"],
                "description": "the health, except for a healthy node being drained or evacuated",
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
    "MaintenanceRequest": obj(
        {"nodes": STRS, "maintenance": BOOL, "drain": {**BOOL, "default": False, "description": "also move their copies off (needs maintenance: true)"}},
        required=["nodes", "maintenance"],
    ),
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
    "BroadcastRequest": obj({"kind": {**STR, "examples": ["ping"]}, "body": {"type": "object"}}, required=["kind"]),
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


def _get(summary: str, ok: Schema, *statuses: int, **extra: Any) -> Schema:
    return {"summary": summary, "responses": {"200": ok, **errors(*statuses)}, **extra}


@cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/data/{key}": {
            "parameters": [KEY_PARAM],
            "get": {
                "summary": "Read a value",
                "responses": {
                    "200": {
                        "description": "the stored bytes, with the Content-Type they were stored with (served inert: nosniff, a sandboxing CSP)",
                        "headers": SECURITY_RESPONSE_HEADERS,
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **errors(400, 404, 503, 504),
                },
            },
            "put": {
                "summary": "Store the raw body (at most max_value_bytes) with its Content-Type (default application/octet-stream)",
                "requestBody": {"required": True, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"204": {"description": "stored"}, **errors(400, 413, 503, 504)},
            },
            "delete": {"summary": "Delete a key (idempotent: a missing key is fine)", "responses": {"204": {"description": "gone"}, **errors(400, 503, 504)}},
        },
        "/data": {
            "get": _get(
                "List keys across shards, one page at a time",
                json_body(ref("KeyPage"), "a page of keys; sorted within a shard, shards in order"),
                400, 503, 504,
                parameters=[
                    {
                        "name": "prefix",
                        "in": "query",
                        "description": "keys starting with this; it follows the key rules (UTF-8, no NUL, at most 1024 bytes) but may be empty",
                        "schema": {"type": "string", "default": ""},
                    },
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                    {"name": "cursor", "in": "query", "description": "next_cursor of the previous page (opaque)", "schema": STR},
                ],
            )
        },
        "/keys/{key}/location": {
            "parameters": [KEY_PARAM],
            "get": _get("Which shard and node hold a key", json_body(ref("Location"), "the key's shard and its primary"), 400, 503),
        },
        "/shards": {"get": _get("The shard map", json_body(ref("Shards"), "every shard and its node"), 503)},
        "/shards/assign": {
            "post": {
                "summary": "Move a shard, with its data, to a node",
                "requestBody": json_request(ref("AssignRequest")),
                "responses": {"202": json_body(ref("AssignResult"), "the move started, or the node already holds it"), **errors(400, 404, 409, 413, 503)},
            }
        },
        "/nodes": {"get": _get("Every node the coordinator knows", json_body(ref("Nodes"), "nodes"), 503)},
        "/nodes/{node_id}": {
            "parameters": [{"name": "node_id", "in": "path", "required": True, "schema": STR}],
            "get": _get("One node", json_body(ref("Node"), "the node"), 404, 503),
        },
        "/nodes/{node_id}/drain": {
            "parameters": [{"name": "node_id", "in": "path", "required": True, "schema": STR}],
            "post": {
                "summary": "Move every copy off the node (status draining, then drained)",
                "responses": {"202": json_body(ref("Node"), "the node, now draining"), **errors(404, 503)},
            },
            "delete": {
                "summary": "Undo a drain: the node may take copies again",
                "responses": {"200": json_body(ref("Node"), "the node"), **errors(404, 503)},
            },
        },
        "/nodes/{node_id}/evacuate": {
            "parameters": [{"name": "node_id", "in": "path", "required": True, "schema": STR}],
            "post": {
                "summary": "Move every copy off the node now (status evacuating, then evacuated); 409 if the other nodes have no room",
                "responses": {"202": json_body(ref("Node"), "the node, now evacuating"), **errors(404, 409, 503)},
            },
            "delete": {
                "summary": "Undo an evacuation: the node may take copies again",
                "responses": {"200": json_body(ref("Node"), "the node"), **errors(404, 503)},
            },
        },
        "/nodes/maintenance": {
            "post": {
                "summary": "Put several nodes in maintenance (no new copies; drain: true also moves theirs off) or take them out; all or none",
                "requestBody": json_request(ref("MaintenanceRequest")),
                "responses": {"200": json_body(ref("MaintenanceResult"), "the named nodes"), **errors(400, 404, 413, 503)},
            }
        },
        "/cluster/allocation/explain": {
            "get": _get(
                "Why a shard's copies are where they are, and why other nodes hold none",
                json_body(ref("AllocationExplanation"), "the explanation"),
                400, 503,
                parameters=[{"name": "shard", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 0}}],
            )
        },
        "/cluster/info": {"get": _get("Cluster id, leading coordinator and standbys, versions, counts, moves in flight", json_body(ref("ClusterInfo"), "info"), 503)},
        "/cluster/health": {"get": _get("green / yellow / red, with counts", json_body(ref("ClusterHealth"), "health"), 503)},
        "/cluster/config": {
            "get": _get("The cluster settings, their revision, and what each one means", json_body(ref("ClusterConfig"), "settings"), 503),
            "put": {
                "summary": "Change cluster settings, all or nothing: persisted, applied by the coordinator, sent to every node",
                "requestBody": json_request(ref("SettingsChange")),
                "responses": {
                    "200": json_body(ref("ClusterConfigChanged"), "the new settings and which nodes applied them"),
                    **errors(400, 409, 413, 503),
                },
            },
        },
        "/cluster/rebalance": {
            "post": {
                "summary": "Spread hot shards now: move or swap shards off the busiest node, keeping shard counts balanced",
                "parameters": [{"name": "dry_run", "in": "query", "description": "only say what it would do", "schema": {"type": "boolean", "default": False}}],
                "responses": {
                    "202": json_body(ref("Rebalance"), "moves started"),
                    "200": json_body(ref("Rebalance"), "nothing started (balanced, busy, settling or a dry run), and why"),
                    **errors(400, 503),
                },
            }
        },
        "/broadcast": {
            "post": {
                "summary": "Send a message (kind ping, ...) to every node and gather their answers",
                "requestBody": json_request(ref("BroadcastRequest")),
                "responses": {"200": json_body(ref("BroadcastResult"), "every answer, and the healthy nodes that did not answer"), **errors(400, 413, 503)},
            }
        },
        "/health": {"get": _get("This gateway (answers without asking the cluster)", json_body(ref("GatewayHealth"), "gateway status"))},
        "/openapi.json": {"get": _get("This document", json_body({"type": "object"}, "OpenAPI 3.1"))},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of this gateway (text exposition format)",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
    }
    for item in paths.values():
        for method, op in item.items():
            if not (isinstance(op, dict) and "responses" in op):
                continue
            # Any request may be malformed, too slow, too long, or use a wrong method: all JSON errors.
            statuses = [400, 405, 408, 414, 431, 500]
            if method in ("post", "put", "delete"):
                statuses.append(403)  # from a browser page of another origin
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                statuses.append(415)
            for status in statuses:
                op["responses"].setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
            for status, response in op["responses"].items():
                if int(status) < 300 and "$ref" not in response:
                    response.setdefault("headers", dict(SECURITY_RESPONSE_HEADERS))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Torua REST API",
            "version": __version__,
            "description": "Sharded key-value store over NATS. Errors are JSON {error: {code, message}}; "
            "a JSON body needs Content-Type: application/json; a request's headers and body must arrive within "
            "the request deadline (408); no browser page from another origin may change anything (403). "
            "The same operations are on NATS under torua.api.* (msgpack, or JSON with Content-Type: application/json).",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "responses": {f"E{s}": _error_response(s) for s in ERROR_TEXT}},
    }
