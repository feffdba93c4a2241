"""The OpenAPI 3.1 description of the REST API, served at /openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

from torua import __version__

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "bad input; nothing changed",
        404: "not found",
        405: "method not allowed",
        409: "conflicts with the cluster's state",
        413: "value too large",
        503: "no node can take it now (Retry-After set)",
        504: "deadline passed",
    }
    return {str(s): _json(ERROR, text[s]) for s in statuses}


KEY_PARAM = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "everything after /data/, percent-decoded: 1-1024 bytes of UTF-8, no NUL; slashes allowed",
    "schema": {"type": "string"},
}


@cache
def openapi_document() -> dict[str, Any]:
    obj = {"type": "object"}
    shard = {
        "type": "object",
        "properties": {
            "shard_id": {"type": "integer"},
            "primary": {"type": ["string", "null"]},
            "replicas": {"type": "array", "items": {"type": "string"}},
            "in_sync": {"type": "array", "items": {"type": "string"}},
            "state": {"enum": ["active", "moving", "unassigned", "unavailable"]},
            "target": {"type": ["string", "null"]},
        },
    }
    node = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["unknown", "healthy", "unhealthy"]},
            "shards": {"type": "integer"},
            "shard_ids": {"type": "array", "items": {"type": "integer"}},
            "last_heartbeat": {"type": ["string", "null"], "format": "date-time"},
            "missed_heartbeats": {"type": "integer"},
            "pid": {"type": "integer"},
            "keys": {"type": "integer"},
            "bytes": {"type": "integer"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Torua REST API", "version": __version__},
        "paths": {
            "/data/{key}": {
                "parameters": [KEY_PARAM],
                "get": {
                    "summary": "Read a value",
                    "responses": {"200": {"description": "the stored bytes, with their Content-Type"}, **_errors(400, 404, 503, 504)},
                },
                "put": {
                    "summary": "Store the raw body (up to max_value_bytes) with its Content-Type",
                    "requestBody": {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": {"204": {"description": "stored"}, **_errors(400, 413, 503, 504)},
                },
                "delete": {"summary": "Delete (idempotent)", "responses": {"204": {"description": "gone"}, **_errors(400, 503, 504)}},
            },
            "/data": {
                "get": {
                    "summary": "List keys across shards, paged (sorted within a shard, shards in order)",
                    "parameters": [
                        {"name": "prefix", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "string"}}, "next_cursor": {"type": ["string", "null"]}}},
                            "a page of keys",
                        ),
                        **_errors(400, 503, 504),
                    },
                }
            },
            "/keys/{key}/location": {
                "parameters": [KEY_PARAM],
                "get": {"summary": "Which shard and node hold a key", "responses": {"200": _json(obj, "shard_id, primary, epoch, state"), **_errors(400, 503)}},
            },
            "/shards": {
                "get": {
                    "summary": "The shard map",
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"num_shards": {"type": "integer"}, "epoch": {"type": "integer"}, "shards": {"type": "array", "items": shard}}},
                            "every shard and its node",
                        )
                    },
                }
            },
            "/shards/assign": {
                "post": {
                    "summary": "Move a shard to a node, with its data",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["shard_id", "node_id"],
                                    "properties": {"shard_id": {"type": "integer"}, "node_id": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {"202": _json(obj, "status: moving or already_there"), **_errors(400, 404, 409, 503)},
                }
            },
            "/nodes": {"get": {"summary": "Every node", "responses": {"200": _json({"type": "object", "properties": {"nodes": {"type": "array", "items": node}}}, "nodes"), **_errors(503)}}},
            "/nodes/{node_id}": {
                "parameters": [{"name": "node_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {"summary": "One node", "responses": {"200": _json(node, "the node"), **_errors(404, 503)}},
            },
            "/cluster/info": {"get": {"summary": "Cluster id, coordinator, counts, moves", "responses": {"200": _json(obj, "info"), **_errors(503)}}},
            "/cluster/health": {
                "get": {
                    "summary": "green / yellow / red",
                    "responses": {"200": _json({"type": "object", "properties": {"status": {"enum": ["green", "yellow", "red"]}}}, "health"), **_errors(503)},
                }
            },
            "/health": {"get": {"summary": "This gateway", "responses": {"200": _json(obj, "gateway status")}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json(obj, "OpenAPI 3.1")}}},
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
                    },
                }
            }
        },
    }
