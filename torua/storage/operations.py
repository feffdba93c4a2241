"""Typed operations recorded in a shard's operation log.

Every mutation of a shard is expressed as an operation.  Operations are
encoded with msgpack as a map ``{"t": TYPE, <field>: <value>, ...}`` and
stored verbatim in the shard's oplog, shipped between replicas, and replayed
on catch-up.  Replication and shard movement only ever handle encoded bytes
or opaque ``Operation`` objects, so adding a new operation type (e.g. graph
edges) means:

1. define a frozen dataclass with a ``TYPE: ClassVar[str]`` and typed fields,
2. add one line to ``OPERATION_TYPES`` and one to ``OPERATION_ENGINES`` (the
   engines that apply it, `torua.storage.engine`),
3. apply it in those engines.

Field values are validated against the dataclass annotations on encode and
decode.  Supported annotations: ``str``, ``bytes``, ``int``, ``float``,
``bool``, ``None``, unions of those (``X | None``), ``list[X]`` and
``dict[str, X]``.

Operations follow the protocol's rule for a rolling upgrade
(docs/protocol.md#versions): a new release may add a field to an operation only
with a default, and decoding ignores fields it does not know, so an older replica
applies an operation a newer primary logged.  The log keeps the bytes as they
came (`ShardStore.apply_encoded_at`), so the new field reaches newer nodes that
copy from the older one.  An unknown *type* is refused (`InvalidOperation`): a
node cannot apply what it does not understand, so a new operation type may only
be written once every node runs a release that knows it.

>>> decode_operation(msgpack.packb({"t": "kv.put", "key": "k", "value": b"v", "ttl": 60}))
KvPut(key='k', value=b'v', content_type='application/octet-stream')
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import msgpack

__all__ = [
    "InvalidOperation",
    "KvPut",
    "KvDelete",
    "GraphEnsure",
    "GraphDrop",
    "VertexPut",
    "VertexDelete",
    "EdgePut",
    "EdgeDelete",
    "OutboxDone",
    "Operation",
    "OPERATION_TYPES",
    "OPERATION_ENGINES",
    "encode_operation",
    "engines_of",
    "operation_type",
    "decode_operation",
]


class InvalidOperation(ValueError):
    """Raised for bytes that do not decode to a known, well-formed operation,
    or for an operation object whose fields have the wrong types."""


@dataclass(frozen=True)
class KvPut:
    TYPE: ClassVar[str] = "kv.put"
    key: str
    value: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class KvDelete:
    TYPE: ClassVar[str] = "kv.delete"
    key: str


# ------------------------------------------------------------------ graph
# docs/design/graph.md, section 2. `uid` names a graph (the catalog's GraphRef.uid);
# properties travel as JSON object text (canonical: sorted keys, no spaces).


@dataclass(frozen=True)
class GraphEnsure:
    """The graph's tables exist on this shard (logged before its first write here)."""

    TYPE: ClassVar[str] = "graph.ensure"
    uid: str
    name: str
    vector_dim: int = 0
    metric: str = "cosine"
    text_properties: list[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class GraphDrop:
    """Every row of the graph goes from this shard."""

    TYPE: ClassVar[str] = "graph.drop"
    uid: str


@dataclass(frozen=True)
class VertexPut:
    """The vertex is replaced (label, properties, embedding); its edge halves stay."""

    TYPE: ClassVar[str] = "graph.vertex.put"
    uid: str
    id: str
    label: str = ""
    properties: str = "{}"
    embedding: list[float] | None = None


@dataclass(frozen=True)
class VertexDelete:
    """The vertex goes. Its primary logs, before it and in the same transaction, an
    `EdgeDelete` of every edge half this shard holds for it (each half held by another
    shard becoming an outbox task: detach an in-half, drop an edge)."""

    TYPE: ClassVar[str] = "graph.vertex.delete"
    uid: str
    id: str


@dataclass(frozen=True)
class EdgePut:
    """Upsert the halves of edge (src, type, dst) this shard holds: `halves` is "out"
    (src is here), "in" (dst is here) or "both"; `state` is the out-half's:
    "pending", "committed" or "removing". An in-half has no state of its own: its
    `state` "committed" records that src's shard confirmed it (repair), "pending"
    that it is attached, not yet confirmed.

    `token` names the edge's incarnation: the seq in src's shard's log of the put
    that made its out-half pending; 0 means this operation's own seq (a new
    incarnation). Every message between the edge's two shards carries it, so a late
    or repeated one changes nothing it should not (docs/design/graph.md, section 4)."""

    TYPE: ClassVar[str] = "graph.edge.put"
    uid: str
    src: str
    type: str
    dst: str
    halves: str
    properties: str = "{}"
    weight: float = 1.0
    state: str = "committed"
    token: int = 0


@dataclass(frozen=True)
class EdgeDelete:
    """Remove the named halves ("out", "in" or "both") of edge (src, type, dst). With
    `outbox` ("detach" or "drop") it also records the task of removing the other half,
    held by another shard, of incarnation `token`: a vertex delete removes its halves
    with these, so that every operation is a write keyed by what it names, whatever
    other rows hold (a snapshot then the log converge)."""

    TYPE: ClassVar[str] = "graph.edge.delete"
    uid: str
    src: str
    type: str
    dst: str
    halves: str
    token: int = 0
    outbox: str = ""


@dataclass(frozen=True)
class OutboxDone:
    """An outbox task (`kind` "detach": drop the in-half on dst's shard; "drop": drop
    the edge on src's shard) was acknowledged by its peer."""

    TYPE: ClassVar[str] = "graph.outbox.done"
    uid: str
    kind: str
    src: str
    type: str
    dst: str
    token: int = 0  # the task's incarnation (EdgeDelete.token): a task recorded again later stays



@dataclass(frozen=True)
class SupportChange:
    """GraphRAG's evidence for a vertex (`type` "": vertex `src`) or an edge (src,
    type, dst) whose src is on this shard: the chunks in `added` (chunk id -> a note,
    JSON: what it saw, e.g. the predicates of a relation) now support it, those in
    `removed` no longer do (docs/design/graphrag.md section 3). Blind: adding a chunk
    again replaces its note, removing one that is not there changes nothing, so
    concurrent and repeated changes converge. What follows (the vertex made or
    deleted, the edge put with its new weight or deleted) the shard's primary
    decides and logs as operations of their own."""

    TYPE: ClassVar[str] = "graph.support"
    uid: str
    src: str
    type: str = ""
    dst: str = ""
    added: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


Operation = KvPut | KvDelete | GraphEnsure | GraphDrop | VertexPut | VertexDelete | EdgePut | EdgeDelete | OutboxDone | SupportChange

# TYPE -> class.  A new operation type is one dataclass + one line here.
OPERATION_TYPES: dict[str, type[Any]] = {
    KvPut.TYPE: KvPut,
    KvDelete.TYPE: KvDelete,
    GraphEnsure.TYPE: GraphEnsure,
    GraphDrop.TYPE: GraphDrop,
    VertexPut.TYPE: VertexPut,
    VertexDelete.TYPE: VertexDelete,
    EdgePut.TYPE: EdgePut,
    EdgeDelete.TYPE: EdgeDelete,
    OutboxDone.TYPE: OutboxDone,
    SupportChange.TYPE: SupportChange,
}

# TYPE -> the names of the engines that apply it (`torua.storage.engine.ShardEngine.name`),
# in order: a shard's writer hands each operation to each of them. The first is the
# engine that holds the truth and must be open on every copy that takes the operation;
# the others are derived from it (the graph's Kuzu index, built again from the graph's
# rows when it missed something) and apply the operation only where they are open.
_GRAPH_ENGINES = ("graph", "graph_index")
OPERATION_ENGINES: dict[str, tuple[str, ...]] = {
    KvPut.TYPE: ("kv",),
    KvDelete.TYPE: ("kv",),
    GraphEnsure.TYPE: _GRAPH_ENGINES,
    GraphDrop.TYPE: _GRAPH_ENGINES,
    VertexPut.TYPE: _GRAPH_ENGINES,
    VertexDelete.TYPE: _GRAPH_ENGINES,
    EdgePut.TYPE: _GRAPH_ENGINES,
    EdgeDelete.TYPE: _GRAPH_ENGINES,
    OutboxDone.TYPE: _GRAPH_ENGINES,
    SupportChange.TYPE: ("graph",),  # the index mirrors vertices and edges, not their evidence
}

_TYPE_KEY = "t"


def engines_of(op: Operation) -> tuple[str, ...]:
    """The names of the engines that apply `op`, the one that must be there first;
    `TypeError` for anything that is not a registered operation.

    >>> engines_of(KvDelete("k"))
    ('kv',)
    >>> engines_of(VertexDelete("u1", "alice"))
    ('graph', 'graph_index')
    """
    type_name = getattr(type(op), "TYPE", None)
    engines = OPERATION_ENGINES.get(type_name) if isinstance(type_name, str) else None
    if not engines or OPERATION_TYPES.get(type_name) is not type(op):  # type: ignore[arg-type]
        raise TypeError(f"shard store cannot apply operation type {type(op).__name__}")
    return engines


def operation_type(data: bytes) -> str | None:
    """The type tag of an encoded operation, without checking the rest (None if it has none).

    >>> operation_type(msgpack.packb({"t": "kv.delete", "key": "k"}))
    'kv.delete'
    """
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, use_list=True, strict_map_key=True)
    except Exception:  # msgpack raises a zoo of exception types
        return None
    type_name = obj.get(_TYPE_KEY) if isinstance(obj, dict) else None
    return type_name if isinstance(type_name, str) else None

# Per-class cache of (field name, annotation, has default) resolved once.
_FieldSpec = tuple[str, Any, bool]
_field_cache: dict[type[Any], tuple[_FieldSpec, ...]] = {}


def _field_specs(cls: type[Any]) -> tuple[_FieldSpec, ...]:
    specs = _field_cache.get(cls)
    if specs is None:
        hints = typing.get_type_hints(cls)
        specs = tuple(
            (
                f.name,
                hints[f.name],
                f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        )
        _field_cache[cls] = specs
    return specs


def _matches(value: Any, tp: Any) -> bool:
    return _matcher(tp)(value)


@functools.cache
def _matcher(tp: Any) -> Callable[[Any], bool]:
    """`tp` compiled once into a test of one value (an op's fields are checked on every
    write: walking `typing` each time cost more than the SQLite write)."""
    if tp is Any:
        return lambda value: True
    if tp is None or tp is type(None):
        return lambda value: value is None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [_matcher(arg) for arg in typing.get_args(tp)]
        return lambda value: any(m(value) for m in options)
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        item = _matcher(item_tp)
        return lambda value: isinstance(value, list) and all(item(v) for v in value)
    if origin is dict:
        key, val = (_matcher(t) for t in (typing.get_args(tp) or (Any, Any)))
        return lambda value: isinstance(value, dict) and all(key(k) and val(v) for k, v in value.items())
    if tp is bool:
        return lambda value: isinstance(value, bool)
    if tp is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return lambda value: isinstance(value, float)
    if tp in (str, bytes):
        return lambda value: type(value) is tp
    raise TypeError(f"unsupported operation field annotation: {tp!r}")


@functools.cache
def _field_matchers(cls: type[Any]) -> tuple[tuple[str, Any, Callable[[Any], bool]], ...]:
    return tuple((name, tp, _matcher(tp)) for name, tp, _ in _field_specs(cls))


def _check_fields(cls: type[Any], values: dict[str, Any]) -> None:
    for name, tp, matches in _field_matchers(cls):
        if name in values and not matches(values[name]):
            raise InvalidOperation(
                f"{cls.TYPE}: field {name!r} must be {tp}, got {type(values[name]).__name__}"
            )


def encode_operation(op: Operation) -> bytes:
    """Encode an operation as msgpack ``{"t": TYPE, ...fields}``."""
    cls = type(op)
    type_name = getattr(cls, "TYPE", None)
    if not isinstance(type_name, str) or OPERATION_TYPES.get(type_name) is not cls:
        raise InvalidOperation(f"not a registered operation: {op!r}")
    payload: dict[str, Any] = {_TYPE_KEY: type_name}
    for name, _, _ in _field_specs(cls):
        payload[name] = getattr(op, name)
    _check_fields(cls, payload)
    return msgpack.packb(payload, use_bin_type=True)


def decode_operation(data: bytes) -> Operation:
    """Decode bytes produced by :func:`encode_operation` (of this release or a newer one).

    Fields this release does not know are ignored (a newer release added them,
    with a default).  Raises :class:`InvalidOperation` on malformed msgpack, a
    non-map payload, a missing or unknown type tag, missing required fields, or
    known fields of the wrong type.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidOperation(f"operation must be bytes, got {type(data).__name__}")
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises a zoo of exception types
        raise InvalidOperation(f"undecodable operation: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidOperation(f"operation must be a map, got {type(obj).__name__}")
    type_name = obj.pop(_TYPE_KEY, None)
    if not isinstance(type_name, str):
        raise InvalidOperation("operation has no type tag")
    cls = OPERATION_TYPES.get(type_name)
    if cls is None:
        raise InvalidOperation(f"unknown operation type {type_name!r}")
    specs = _field_specs(cls)
    obj = {name: obj[name] for name, _, _ in specs if name in obj}  # a newer release's fields are not ours
    missing = [name for name, _, has_default in specs if not has_default and name not in obj]
    if missing:
        raise InvalidOperation(f"{type_name}: missing fields {missing}")
    _check_fields(cls, obj)
    op: Operation = cls(**obj)
    return op
