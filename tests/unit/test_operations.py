from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import msgpack
import pytest

from torua.storage import operations
from torua.storage.operations import (
    OPERATION_TYPES,
    InvalidOperation,
    KvDelete,
    KvPut,
    decode_operation,
    encode_operation,
)


@pytest.mark.parametrize(
    "op",
    [
        KvPut("k", b"v"),
        KvPut("path/to/resource", b"\x00\xff" * 10, "application/json"),
        KvPut("数字", b""),
        KvPut("", b"empty key"),
        KvPut("big", b"x" * (8 << 20)),
        KvDelete("k"),
        KvDelete("%_literal"),
    ],
)
def test_roundtrip(op: KvPut | KvDelete) -> None:
    data = encode_operation(op)
    assert isinstance(data, bytes)
    back = decode_operation(data)
    assert back == op
    assert type(back) is type(op)


def test_encoding_is_msgpack_map_with_type_tag() -> None:
    raw = msgpack.unpackb(encode_operation(KvPut("a", b"b", "text/plain")), raw=False)
    assert raw == {"t": "kv.put", "key": "a", "value": b"b", "content_type": "text/plain"}
    raw = msgpack.unpackb(encode_operation(KvDelete("a")), raw=False)
    assert raw == {"t": "kv.delete", "key": "a"}


def test_type_is_classvar_not_field() -> None:
    assert [f.name for f in dataclasses.fields(KvPut)] == ["key", "value", "content_type"]
    assert [f.name for f in dataclasses.fields(KvDelete)] == ["key"]
    assert KvPut.TYPE == "kv.put" and KvDelete.TYPE == "kv.delete"
    assert KvPut("k", b"v").content_type == "application/octet-stream"
    assert {t: c for t, c in OPERATION_TYPES.items() if t.startswith("kv.")} == {"kv.put": KvPut, "kv.delete": KvDelete}
    assert all(cls.TYPE == type_name for type_name, cls in OPERATION_TYPES.items())
    assert all(type_name.startswith(("kv.", "graph.")) for type_name in OPERATION_TYPES)


def test_operations_are_frozen_and_hashable() -> None:
    op = KvPut("k", b"v")
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.key = "other"  # type: ignore[misc]
    assert len({op, KvPut("k", b"v"), KvDelete("k")}) == 2


def test_default_content_type_may_be_omitted_on_the_wire() -> None:
    data = msgpack.packb({"t": "kv.put", "key": "k", "value": b"v"}, use_bin_type=True)
    assert decode_operation(data) == KvPut("k", b"v")


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\x92\x01",  # truncated array
        b"not msgpack at all \xff\xfe",
        _pack({"t": "kv.put", "key": "k", "value": b"v"}) + b"\x00",  # trailing data
        _pack([1, 2, 3]),
        _pack("kv.put"),
        _pack(None),
        _pack({"key": "k", "value": b"v"}),  # no type tag
        _pack({"t": 5, "key": "k"}),  # non-string type tag
        _pack({1: "x"}),  # non-string map key
    ],
)
def test_garbage_raises_invalid_operation(data: bytes) -> None:
    with pytest.raises(InvalidOperation):
        decode_operation(data)


def test_invalid_operation_is_value_error() -> None:
    assert issubclass(InvalidOperation, ValueError)
    with pytest.raises(ValueError):
        decode_operation(b"\xc1")


def test_non_bytes_input_raises() -> None:
    with pytest.raises(InvalidOperation):
        decode_operation("kv.put")  # type: ignore[arg-type]


def test_unknown_type_raises() -> None:
    with pytest.raises(InvalidOperation, match="unknown operation type"):
        decode_operation(_pack({"t": "graph.add_edge", "src": "a", "dst": "b"}))


@pytest.mark.parametrize(
    "payload",
    [
        {"t": "kv.put", "key": 1, "value": b"v"},
        {"t": "kv.put", "key": b"k", "value": b"v"},
        {"t": "kv.put", "key": "k", "value": "v"},  # str instead of bytes
        {"t": "kv.put", "key": "k", "value": b"v", "content_type": None},
        {"t": "kv.put", "key": "k", "value": b"v", "content_type": 7},
        {"t": "kv.put", "key": None, "value": b"v"},
        {"t": "kv.delete", "key": ["k"]},
        {"t": "kv.delete", "key": True},
    ],
)
def test_wrong_field_types_raise(payload: dict[str, object]) -> None:
    with pytest.raises(InvalidOperation):
        decode_operation(_pack(payload))


@pytest.mark.parametrize(
    "payload",
    [
        {"t": "kv.put", "key": "k"},  # missing value
        {"t": "kv.delete"},  # missing key
        {"t": "kv.put", "value": b"v", "ttl": 5},  # an unknown field does not stand in for a missing one
    ],
)
def test_missing_fields_raise(payload: dict[str, object]) -> None:
    with pytest.raises(InvalidOperation, match="missing fields"):
        decode_operation(_pack(payload))


# An operation as a newer release logs it: the same type with fields added (with
# defaults, as the protocol requires). This release applies what it knows of it.
NEWER_RELEASE = [
    ({"t": "kv.delete", "key": "k", "value": b"v"}, KvDelete("k")),
    ({"t": "kv.put", "key": "k", "value": b"v", "TYPE": "kv.put"}, KvPut("k", b"v")),
    ({"t": "kv.put", "key": "k", "value": b"v", "content_type": "text/plain", "ttl": 60}, KvPut("k", b"v", "text/plain")),
    ({"t": "kv.put", "key": "k", "value": b"v", "meta": {"nested": [1, 2.5, None, b"x"]}}, KvPut("k", b"v")),
    ({"t": "kv.delete", "key": "k", "if_seq": 7, "origin": None}, KvDelete("k")),
]


@pytest.mark.parametrize("payload,expected", NEWER_RELEASE, ids=["delete+value", "put+TYPE", "put+ttl", "put+nested", "delete+if_seq"])
def test_fields_of_a_newer_release_are_ignored(payload: dict[str, object], expected: object) -> None:
    assert decode_operation(_pack(payload)) == expected


@pytest.mark.parametrize(
    "payload",
    [
        # unknown fields are ignored, known ones are still checked
        {"t": "kv.put", "key": "k", "value": "v", "ttl": 60},
        {"t": "kv.delete", "key": 7, "if_seq": 7},
        # a newer release's new operation *type* is refused: there is nothing to apply
        {"t": "kv.expire", "key": "k", "at": 5},
    ],
)
def test_newer_release_still_refuses_wrong_types_and_unknown_operations(payload: dict[str, object]) -> None:
    with pytest.raises(InvalidOperation):
        decode_operation(_pack(payload))


def test_encode_rejects_wrong_field_types() -> None:
    with pytest.raises(InvalidOperation):
        encode_operation(KvPut("k", "not bytes"))  # type: ignore[arg-type]
    with pytest.raises(InvalidOperation):
        encode_operation(KvDelete(42))  # type: ignore[arg-type]


def test_encode_rejects_unregistered_type() -> None:
    @dataclass(frozen=True)
    class Rogue:
        TYPE: ClassVar[str] = "kv.put"  # claims a registered tag, but is another class
        key: str

    with pytest.raises(InvalidOperation):
        encode_operation(Rogue("k"))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _AddEdge:
    TYPE: ClassVar[str] = "test.add_edge"
    src: str
    dst: str
    weight: float | None = None
    labels: list[str] = dataclasses.field(default_factory=list)
    props: dict[str, bytes] = dataclasses.field(default_factory=dict)


def test_new_type_slots_in_with_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(operations.OPERATION_TYPES, _AddEdge.TYPE, _AddEdge)
    op = _AddEdge("a", "b", 0.5, ["x", "y"], {"k": b"v"})
    back: object = decode_operation(encode_operation(op))  # type: ignore[arg-type]
    assert back == op
    back = decode_operation(encode_operation(_AddEdge("a", "b")))  # type: ignore[arg-type]
    assert back == _AddEdge("a", "b")
    with pytest.raises(InvalidOperation):
        decode_operation(_pack({"t": "test.add_edge", "src": "a", "dst": "b", "labels": [1]}))
    with pytest.raises(InvalidOperation):
        decode_operation(_pack({"t": "test.add_edge", "src": "a", "dst": "b", "weight": "heavy"}))
