"""What a graph may hold, and where: the rules for graph names, vertex ids, labels,
edge types, properties, embeddings and the bounds of requests, and which shard a
vertex belongs to.

Pure functions, for the gateway (before it routes), `torua.Client` and the node
(before it writes), as `torua.kv_rules` is for keys: a request one of them takes
the others take too. Each raises `ToruaError` with code `bad_request` (or
`value_too_large`) saying what is wrong.

>>> canonical_properties({"b": 1, "a": "é"}, 100)
'{"a":"é","b":1}'
>>> vertex_shard("people", "alice", 16)
1
>>> validate_label("")
Traceback (most recent call last):
...
torua.protocol.errors.ToruaError: bad_request: label must not be empty
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from torua.kv_rules import shard_for_key, validate_key
from torua.protocol.errors import ToruaError

GRAPH_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NAME_CHARS = 255  # a label, an edge type, a text property's name
MAX_VECTOR_DIM = 4096
DEFAULT_MAX_PROPERTIES_BYTES = 64 << 10  # a vertex's or an edge's properties, as JSON (node setting)
MAX_EDGES_LIMIT = 10000  # edges one page of a vertex's edges lists at most
MAX_HOP_LIMIT = 100000  # edges one traversal hop returns from one shard at most
MAX_IDS = 10000  # ids one vertices or neighbours request names at most
MAX_IMPORT_LINES = 10000  # vertices, and edges, one import batch to one shard holds at most
MAX_K = 1000  # hits a search returns at most
MAX_HOPS = 6  # traversal and shortest path: 1..MAX_HOPS


def validate_graph_name(name: object) -> str:
    if not isinstance(name, str) or not GRAPH_NAME.fullmatch(name):
        raise ToruaError("bad_request", f"graph name must be 1-64 letters, digits, '_' or '-', not {name!r}")
    return name


def validate_id(id: object, what: str = "id") -> str:
    """A vertex id follows the key rules: 1-1024 bytes of UTF-8, no NUL."""
    try:
        return validate_key(id)
    except ToruaError as exc:
        raise ToruaError(exc.code, exc.message.replace("key", what, 1)) from None


def vertex_shard(graph: str, id: str, num_shards: int) -> int:
    """The shard of vertex `id` of graph `graph`: the key function of ``"{graph}/{id}"``."""
    return shard_for_key(f"{graph}/{id}", num_shards)


def validate_vertex_in_shard(graph: str, id: object, shard_id: int, num_shards: int, what: str = "id") -> str:
    """`id` checked, and (when the shard count is known) held by `shard_id`."""
    checked = validate_id(id, what)
    if num_shards:
        home = vertex_shard(graph, checked, num_shards)
        if home != shard_id:
            raise ToruaError("bad_request", f"vertex {checked!r} of graph {graph!r} belongs to shard {home}, not {shard_id} (of {num_shards})")
    return checked


def _printable_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ToruaError("bad_request", f"{what} must be a string")
    if not value:
        raise ToruaError("bad_request", f"{what} must not be empty")
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise ToruaError("bad_request", f"{what} must be printable (no control characters), at most {MAX_NAME_CHARS} characters")
    return value


def validate_label(label: object) -> str:
    return _printable_name(label, "label")


def validate_edge_type(edge_type: object) -> str:
    return _printable_name(edge_type, "edge type")


def canonical_properties(properties: object, max_bytes: int) -> str:
    """Properties as stored: a JSON object, keys sorted, no spaces; `value_too_large`
    above `max_bytes` of UTF-8."""
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise ToruaError("bad_request", "properties must be a JSON object")
    try:
        text = json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ToruaError("bad_request", f"properties must be JSON (strings, numbers, booleans, null, lists, objects): {exc}") from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ToruaError("value_too_large", f"properties are {size} bytes of JSON; the limit is {max_bytes}")
    return text


def validate_embedding(embedding: object, vector_dim: int) -> list[float] | None:
    """None, or `vector_dim` finite numbers (as floats) when the graph has vectors."""
    if embedding is None:
        return None
    if not isinstance(embedding, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in embedding):
        raise ToruaError("bad_request", "embedding must be a list of numbers")
    if vector_dim == 0:
        raise ToruaError("bad_request", "this graph has no vectors (vector_dim 0): leave the embedding out")
    if len(embedding) != vector_dim:
        raise ToruaError("bad_request", f"embedding has {len(embedding)} numbers; this graph's vector_dim is {vector_dim}")
    values = [float(x) for x in embedding]
    if not all(math.isfinite(x) for x in values):
        raise ToruaError("bad_request", "embedding numbers must be finite")
    return values


def validate_weight(weight: object) -> float:
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight):
        raise ToruaError("bad_request", "weight must be a finite number")
    return float(weight)


def validate_vector_dim(vector_dim: object) -> int:
    if not isinstance(vector_dim, int) or isinstance(vector_dim, bool) or not 0 <= vector_dim <= MAX_VECTOR_DIM:
        raise ToruaError("bad_request", f"vector_dim must be 0 (no vectors) to {MAX_VECTOR_DIM}")
    return vector_dim


def validate_text_properties(names: object) -> list[str]:
    if not isinstance(names, list):
        raise ToruaError("bad_request", "text_properties must be a list of property names")
    return [_printable_name(n, "a text property's name") for n in names]


def validate_limit(limit: object, ceiling: int, what: str = "limit") -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= ceiling:
        raise ToruaError("bad_request", f"{what} must be 1 to {ceiling}")
    return limit


def validate_ids(graph: str, ids: Sequence[object], shard_id: int, num_shards: int) -> list[str]:
    if not ids:
        raise ToruaError("bad_request", "ids must name at least one vertex")
    if len(ids) > MAX_IDS:
        raise ToruaError("bad_request", f"at most {MAX_IDS} ids at once, not {len(ids)}")
    return [validate_vertex_in_shard(graph, id, shard_id, num_shards) for id in ids]


def validate_types(types: Sequence[Any]) -> list[str]:
    return [validate_edge_type(t) for t in types]
