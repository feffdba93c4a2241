"""What a node checks in a graph request before it serves it, beyond the graph rules
gateway and client apply (torua.graph.rules): pure, over the request's parts, the
cluster's shard count and this node's limits.

A request that reaches a node straight (any NATS client may send one) is held to
the same rules, plus what only the node can check: that each vertex it names
belongs to the shard asked, properties within its ``--graph-max-properties-bytes``,
and bounds on what one request may ask of it.

>>> canonical_properties({"b": 1, "a": "é"}, 100)
'{"a":"é","b":1}'
>>> vertex_in_shard("people", "ada", 3, 16)
Traceback (most recent call last):
...
torua.protocol.errors.ToruaError: bad_request: vertex 'ada' of graph 'people' belongs to shard 12, not 3 (of 16)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from torua.graph import rules
from torua.protocol.errors import ToruaError
from torua.protocol.messages import GraphRef

MAX_IDS = 10000  # ids one vertices or neighbours request names at most
MAX_HOP_EDGES = 100000  # edges one traversal hop returns from one shard at most
MAX_IMPORT_LINES = 10000  # vertices, or edges, in one import batch to one shard


def canonical_properties(properties: object, max_bytes: int) -> str:
    """Properties as stored: a JSON object, keys sorted, no spaces; `value_too_large`
    above `max_bytes` of UTF-8."""
    if properties is None or (properties.__class__ is dict and not properties):
        return "{}"  # most edges' (an import's, a GraphRAG ingest's MENTIONS)
    if not isinstance(properties, dict) or not all(isinstance(k, str) for k in properties):
        raise ToruaError("bad_request", "properties must be a JSON object")
    try:
        text = json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise ToruaError("bad_request", "properties must be plain JSON (finite numbers, text, lists, objects)") from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ToruaError("value_too_large", f"properties are {size} bytes of JSON; the limit is {max_bytes}")
    return text


def fence(not_after: object, now: float, writes: bool) -> None:
    """A request's fence (`GraphRequest.not_after`, Unix seconds; 0: none) checked: a
    write is refused (`fenced`, nothing applied) once `now` is past it. A GraphRAG
    worker's writes carry the fence of its document's claim (torua.rag.claims).

    >>> fence(0.0, 100.0, True), fence(100.0, 100.0, True), fence(50.0, 100.0, False)
    (None, None, None)
    >>> fence(99.5, 100.0, True)
    Traceback (most recent call last):
    ...
    torua.protocol.errors.ToruaError: fenced: the write's fence passed 0.5 s ago (its writer's claim may be another's by now): nothing was applied
    """
    if not isinstance(not_after, (int, float)) or isinstance(not_after, bool) or not math.isfinite(not_after) or not_after < 0:
        raise ToruaError("bad_request", "not_after must be a finite number of seconds (Unix time), or 0 for no fence")
    if writes and not_after and now > not_after:
        raise ToruaError("fenced", f"the write's fence passed {now - not_after:.1f} s ago (its writer's claim may be another's by now): nothing was applied")


def vertex_in_shard(graph: str, id: object, shard_id: int, num_shards: int, what: str = "id") -> str:
    """`id` checked, and (when the shard count is known) held by `shard_id`."""
    checked = rules.validate_vertex_id(id, what)
    if num_shards:
        home = rules.vertex_shard(graph, checked, num_shards)
        if home != shard_id:
            raise ToruaError("bad_request", f"vertex {checked!r} of graph {graph!r} belongs to shard {home}, not {shard_id} (of {num_shards})")
    return checked


def ids_in_shard(graph: str, ids: Sequence[object], shard_id: int, num_shards: int) -> list[str]:
    """Ids of a vertices or neighbours request, each once, in order."""
    if not ids:
        raise ToruaError("bad_request", "ids must name at least one vertex")
    if len(ids) > MAX_IDS:
        raise ToruaError("bad_request", f"at most {MAX_IDS} ids at once, not {len(ids)}")
    return rules.unique_ids(vertex_in_shard(graph, id, shard_id, num_shards) for id in ids)


def limit_in(limit: object, ceiling: int, what: str = "limit") -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= ceiling:
        raise ToruaError("bad_request", f"{what} must be 1 to {ceiling}")
    return limit


def graph_ref(graph: GraphRef) -> GraphRef:
    """The graph a request names: its name, its uid, its settings."""
    rules.validate_graph_name(graph.name)
    if not graph.uid or len(graph.uid) > 64 or not graph.uid.isprintable():
        raise ToruaError("bad_request", "graph uid must be 1-64 printable characters")
    rules.validate_vector_dim(graph.vector_dim)
    return graph
