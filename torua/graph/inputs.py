"""What a public graph request may carry, on top of what a graph may hold
(`torua.graph.rules`, which the nodes apply too): a graph's settings in the
catalog, vertices and edges as a write carries them (every part checked, as
`VertexData` / `EdgeData`), and the bounds of traversals, searches and pages.

Pure, for the gateway and `torua.Client` alike, so both refuse the same input
with the same words, before anything is sent. Each raises `ToruaError`:
`bad_request`, or `value_too_large` for a property document over its limit.

>>> vertex("ada", "Person", {"born": 1815}, None, 0)
VertexData(id='ada', label='Person', properties={'born': 1815}, embedding=None)
>>> validate_hops(7)
Traceback (most recent call last):
torua.protocol.errors.ToruaError: bad_request: max_hops must be an integer from 1 to 6
>>> validate_text_properties(["title", "text"])
('text', 'title')
"""

from __future__ import annotations

import math
import re
from typing import Any

from torua.graph import rules
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EdgeData, VertexData
from torua.protocol.vocabulary import Direction, VectorMetric

# A property named in text_properties: a name Cypher and the full-text index take as they are.
PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_TEXT_PROPERTIES = 16
# A property document the gateway and the client take (the nodes' default limit;
# a node set lower refuses more, value_too_large too).
MAX_PROPERTIES_BYTES = rules.DEFAULT_MAX_PROPERTIES_BYTES
MIN_HOPS, DEFAULT_HOPS = 1, 2
MAX_SEEDS = 1000  # ids in a traversal's `from`
MAX_TRAVERSE_LIMIT = 10_000  # vertices in one traversal answer
DEFAULT_TRAVERSE_LIMIT = 1000
MAX_EDGES_PAGE = 1000  # edges in one page of GET .../edges
MAX_QUERY_CHARS = 16 << 10  # a Cypher or text query


def validate_vertex_id(vertex_id: object, what: str = "id") -> str:
    """A vertex id is a key's text: 1 to 1024 bytes of UTF-8, no NUL (``src must not be empty``)."""
    return rules.validate_id(vertex_id, what)


def validate_properties(properties: object, owner: str) -> dict[str, Any]:
    """A JSON object of at most `MAX_PROPERTIES_BYTES` as stored (compact JSON), else
    `value_too_large` naming `owner` (``vertex 'ada'``)."""
    if properties is None:
        return {}
    try:
        rules.canonical_properties(properties, MAX_PROPERTIES_BYTES)
    except ToruaError as exc:
        raise ToruaError(exc.code, exc.message.replace("properties", f"properties of {owner}", 1)) from None
    assert isinstance(properties, dict)
    return properties


def validate_vector(vector: object, vector_dim: int, what: str = "vector") -> list[float]:
    """A query vector: `vector_dim` finite numbers (a graph without vectors, vector_dim 0, takes none)."""
    if vector_dim == 0:
        raise ToruaError("bad_request", f"{what}: the graph has no vectors (vector_dim 0); create it with a vector_dim")
    if not isinstance(vector, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
        raise ToruaError("bad_request", f"{what} must be a list of numbers")
    if len(vector) != vector_dim:
        raise ToruaError("bad_request", f"{what} has {len(vector)} numbers; this graph's vector_dim is {vector_dim}")
    if not all(math.isfinite(x) for x in vector):
        raise ToruaError("bad_request", f"{what} must hold finite numbers only")
    return [float(x) for x in vector]


def validate_direction(direction: object) -> Direction:
    if direction not in Direction.values():
        raise ToruaError("bad_request", f"direction must be out, in or both, not {str(direction)[:40]!r}")
    return Direction(direction)


def validate_hops(max_hops: object) -> int:
    if not isinstance(max_hops, int) or isinstance(max_hops, bool) or not MIN_HOPS <= max_hops <= rules.MAX_HOPS:
        raise ToruaError("bad_request", f"max_hops must be an integer from {MIN_HOPS} to {rules.MAX_HOPS}")
    return max_hops


def validate_types(types: object) -> list[str]:
    """Edge types to follow, each once, sorted; none: every type."""
    if types is None:
        return []
    if not isinstance(types, list):
        raise ToruaError("bad_request", "types must be a list of edge types")
    return sorted(set(rules.validate_types(types)))


def vertex(vertex_id: object, label: object, properties: object, embedding: object, vector_dim: int) -> VertexData:
    """A vertex as a write carries it, every part checked."""
    vid = validate_vertex_id(vertex_id)
    if label is None:
        raise ToruaError("bad_request", f"label of vertex {vid!r} is required")
    return VertexData(
        vid, rules.validate_label(label), validate_properties(properties, f"vertex {vid!r}"), rules.validate_embedding(embedding, vector_dim),
    )


def edge(src: object, edge_type: object, dst: object, properties: object = None, weight: object = None) -> EdgeData:
    """An edge as a write carries it, every part checked (weight default 1.0)."""
    s, d = validate_vertex_id(src, "src"), validate_vertex_id(dst, "dst")
    t = rules.validate_edge_type(edge_type)
    return EdgeData(s, t, d, validate_properties(properties, f"edge ({s!r}, {t!r}, {d!r})"), 1.0 if weight is None else rules.validate_weight(weight))


# ------------------------------------------------------------------ a graph's settings


def validate_metric(metric: object) -> VectorMetric:
    if metric not in VectorMetric.values():
        raise ToruaError("bad_request", f"metric must be {' or '.join(VectorMetric.values())}, not {str(metric)[:40]!r}")
    return VectorMetric(metric)


def validate_text_properties(names: object) -> tuple[str, ...]:
    """Property names the full-text index covers, each once, sorted (the order means
    nothing): names Cypher and the index take as they are (a subset of what
    `torua.graph.rules` lets a node hold)."""
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
