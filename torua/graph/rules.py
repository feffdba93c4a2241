"""What graph data may be, and where it lives: the rules for graph names, vertex
ids, labels, edge types, property documents, embeddings and a graph's settings,
and which shard a vertex belongs to.

Pure functions, applied alike by the gateway (before it routes), `torua.Client`
(before it sends) and, for what a node must hold to, the nodes: a request one of
them takes the others take too. Each raises `ToruaError` with code
`bad_request`, or `value_too_large` for a property document over
`MAX_PROPERTIES_BYTES`, saying what is wrong.

>>> vertex_shard("people", "ada", 16) == shard_for_key("people/ada", 16)
True
>>> validate_graph_name("my graph")
Traceback (most recent call last):
torua.protocol.errors.ToruaError: bad_request: graph must be 1 to 64 letters, digits, '-' or '_', not 'my graph'
>>> validate_embedding([1, 0.5], 3, "v")
Traceback (most recent call last):
torua.protocol.errors.ToruaError: bad_request: embedding of v has 2 numbers; graph vectors have 3 (vector_dim)
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable

from torua.kv_rules import MAX_KEY_BYTES, shard_for_key
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EdgeData, VertexData
from torua.protocol.vocabulary import Direction, VectorMetric

GRAPH_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A property named in text_properties: a name Cypher and the full-text index take as they are.
PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

MAX_LABEL_CHARS = 256  # a vertex label or an edge type
MAX_PROPERTIES_BYTES = 64 << 10  # a vertex's or an edge's properties, as compact UTF-8 JSON (413 above)
MAX_VECTOR_DIM = 4096
MAX_TEXT_PROPERTIES = 16
MIN_HOPS, MAX_HOPS = 1, 6
DEFAULT_HOPS = 2
MAX_SEEDS = 1000  # ids in a traversal's `from`
MAX_TRAVERSE_LIMIT = 10_000  # vertices in one traversal answer
DEFAULT_TRAVERSE_LIMIT = 1000
MAX_K = 1000  # hits of one search
MAX_EDGES_PAGE = 1000  # edges in one page of GET .../edges
MAX_QUERY_CHARS = 16 << 10  # a Cypher or text query


def vertex_key(graph: str, vertex_id: str) -> str:
    """The key whose shard holds the vertex: ``"{graph}/{id}"``."""
    return f"{graph}/{vertex_id}"


def vertex_shard(graph: str, vertex_id: str, num_shards: int) -> int:
    """The shard of vertex `vertex_id` of `graph`: the key function of ``"{graph}/{id}"``."""
    return shard_for_key(vertex_key(graph, vertex_id), num_shards)


def validate_graph_name(name: object) -> str:
    if not isinstance(name, str) or not GRAPH_NAME.fullmatch(name):
        shown = repr(name[:80]) if isinstance(name, str) else type(name).__name__
        raise ToruaError("bad_request", f"graph must be 1 to 64 letters, digits, '-' or '_', not {shown}")
    return name


def validate_vertex_id(vertex_id: object, what: str = "id") -> str:
    """A vertex id is a key's text: 1 to 1024 bytes of UTF-8, no NUL."""
    if not isinstance(vertex_id, str):
        raise ToruaError("bad_request", f"{what} must be a string (a vertex id)")
    if not vertex_id:
        raise ToruaError("bad_request", f"{what} must not be empty")
    if "\x00" in vertex_id:
        raise ToruaError("bad_request", f"{what} must not contain NUL")
    try:
        size = len(vertex_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise ToruaError("bad_request", f"{what} must be valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise ToruaError("bad_request", f"{what} is {size} bytes; the limit is {MAX_KEY_BYTES}")
    return vertex_id


def validate_label(label: object, what: str = "label", empty: bool = True) -> str:
    """A vertex label (may be empty) or an edge type (`empty` False): at most 256 printable characters."""
    if not isinstance(label, str):
        raise ToruaError("bad_request", f"{what} must be a string")
    if not label and not empty:
        raise ToruaError("bad_request", f"{what} must not be empty")
    if len(label) > MAX_LABEL_CHARS or not label.isprintable():
        raise ToruaError("bad_request", f"{what} must be at most {MAX_LABEL_CHARS} printable characters")
    return label


def validate_type(edge_type: object, what: str = "type") -> str:
    return validate_label(edge_type, what, empty=False)


def validate_types(types: object) -> list[str]:
    """Edge types to follow; empty: every type."""
    if types is None:
        return []
    if not isinstance(types, list):
        raise ToruaError("bad_request", "types must be a list of edge types")
    return sorted({validate_type(t, "each of types") for t in types})


def properties_size(properties: dict[str, Any]) -> int:
    return len(json.dumps(properties, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8", "surrogatepass"))


def validate_properties(properties: object, owner: str) -> dict[str, Any]:
    """A JSON object of at most `MAX_PROPERTIES_BYTES` (compact UTF-8 JSON): else
    `value_too_large` naming `owner` (``vertex 'ada'``)."""
    if properties is None:
        return {}
    if not isinstance(properties, dict) or not all(isinstance(k, str) for k in properties):
        raise ToruaError("bad_request", f"properties of {owner} must be a JSON object")
    try:
        size = properties_size(properties)
    except (TypeError, ValueError):
        raise ToruaError("bad_request", f"properties of {owner} must be plain JSON (finite numbers, text, lists, objects)") from None
    if size > MAX_PROPERTIES_BYTES:
        raise ToruaError("value_too_large", f"properties of {owner} are {size} bytes of JSON; the limit is {MAX_PROPERTIES_BYTES}")
    return properties


def validate_vector(vector: object, vector_dim: int, what: str) -> list[float]:
    """`vector_dim` finite numbers (a graph without vectors, vector_dim 0, takes none)."""
    if vector_dim == 0:
        raise ToruaError("bad_request", f"{what}: the graph has no vectors (vector_dim 0); create it with a vector_dim")
    if type(vector) is list and len(vector) == vector_dim and all(type(x) is float for x in vector) and math.isfinite(sum(vector)):
        return list(vector)  # the common case, checked in one pass (a sum that overflows goes the long way)
    if not isinstance(vector, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
        raise ToruaError("bad_request", f"{what} must be a list of numbers")
    if len(vector) != vector_dim:
        raise ToruaError("bad_request", f"{what} has {len(vector)} numbers; graph vectors have {vector_dim} (vector_dim)")
    if not all(math.isfinite(x) for x in vector):
        raise ToruaError("bad_request", f"{what} must hold finite numbers only")
    return [float(x) for x in vector]


def validate_embedding(embedding: object, vector_dim: int, vertex_id: str) -> list[float] | None:
    if embedding is None:
        return None
    return validate_vector(embedding, vector_dim, f"embedding of {vertex_id}")


def validate_weight(weight: object) -> float:
    if weight is None:
        return 1.0
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight):
        raise ToruaError("bad_request", "weight must be a finite number")
    return float(weight)


def validate_direction(direction: object) -> Direction:
    if direction not in Direction.values():
        raise ToruaError("bad_request", f"direction must be out, in or both, not {str(direction)[:40]!r}")
    return Direction(direction)


def validate_hops(max_hops: object) -> int:
    if not isinstance(max_hops, int) or isinstance(max_hops, bool) or not MIN_HOPS <= max_hops <= MAX_HOPS:
        raise ToruaError("bad_request", f"max_hops must be an integer from {MIN_HOPS} to {MAX_HOPS}")
    return max_hops


def vertex(vertex_id: object, label: object, properties: object, embedding: object, vector_dim: int) -> VertexData:
    """A vertex as a write carries it, every part checked."""
    vid = validate_vertex_id(vertex_id)
    return VertexData(
        vid, validate_label(label if label is not None else ""), validate_properties(properties, f"vertex {vid!r}"),
        validate_embedding(embedding, vector_dim, repr(vid)),
    )


def edge(src: object, edge_type: object, dst: object, properties: object = None, weight: object = None) -> EdgeData:
    """An edge as a write carries it, every part checked."""
    s, t, d = validate_vertex_id(src, "src"), validate_type(edge_type), validate_vertex_id(dst, "dst")
    return EdgeData(s, t, d, validate_properties(properties, f"edge ({s!r}, {t!r}, {d!r})"), validate_weight(weight))


# ------------------------------------------------------------------ settings


def validate_vector_dim(vector_dim: object) -> int:
    if not isinstance(vector_dim, int) or isinstance(vector_dim, bool) or not 0 <= vector_dim <= MAX_VECTOR_DIM:
        raise ToruaError("bad_request", f"vector_dim must be an integer from 0 (no vectors) to {MAX_VECTOR_DIM}")
    return vector_dim


def validate_metric(metric: object) -> VectorMetric:
    if metric not in VectorMetric.values():
        raise ToruaError("bad_request", f"metric must be {' or '.join(VectorMetric.values())}, not {str(metric)[:40]!r}")
    return VectorMetric(metric)


def validate_text_properties(names: object) -> tuple[str, ...]:
    """Property names the full-text index covers, each once, sorted (the order means nothing)."""
    if names is None:
        return ()
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and PROPERTY_NAME.fullmatch(n) for n in names):
        raise ToruaError(
            "bad_request", "text_properties must be a list of property names (a letter or '_', then letters, digits or '_'; at most 64)"
        )
    if len(set(names)) != len(names):
        raise ToruaError("bad_request", "text_properties names a property twice")
    if len(names) > MAX_TEXT_PROPERTIES:
        raise ToruaError("bad_request", f"text_properties holds at most {MAX_TEXT_PROPERTIES} names")
    return tuple(sorted(names))


def unique_ids(ids: Iterable[str]) -> list[str]:
    """Each id once, in the order first given."""
    return list(dict.fromkeys(ids))
