import json

import msgpack
import pytest

from torua.protocol.codec import INT_MAX, INT_MIN, PROTOCOL_VERSION, check_plain, decode, encode, encode_json, from_dict, loads_json
from torua.protocol.errors import ToruaError
from torua.protocol.vocabulary import GraphOp, HalfState
from torua.protocol.messages import (
    AssignRequest,
    EdgeHalf,
    GraphHit,
    GraphRef,
    GraphReply,
    GraphRequest,
    ShardHits,
    Assignment,
    AssignedShard,
    BroadcastMessage,
    ExplainRequest,
    Heartbeat,
    KvReply,
    KvRequest,
    LogChunk,
    MaintenanceRequest,
    NodeRequest,
    SettingsChange,
    ShardEntry,
    ShardMap,
    ShardReport,
    SnapshotChunk,
    SnapshotData,
    SnapshotRequest,
)

ROUND_TRIPS = [
    KvRequest("put", 3, 7, key="数字", value=b"\x00\xff", content_type="text/plain"),
    KvReply(True, 4, found=True, value=b"v", content_type="x/y"),
    ShardMap(2, 2, 1, [ShardEntry(0, "n1", [], ["n1"], "active", created=True), ShardEntry(1)], "abc"),
    Heartbeat("n1", "0.2.0", 3, 1.5, 2.5, None, "host", 42, [ShardReport(0, "primary", 9, 1, 2)]),
    Assignment(5, "n2", [AssignedShard(1, "primary", True)]),
    SnapshotChunk(1, 10, [("k", b"v", "t")], "k"),
    SnapshotRequest(1, None, 1024, ["kv.rows.v1", "graph.vertices.v1"], b"cursor"),
    SnapshotChunk(1, 10, chunks=[SnapshotData("kv.rows.v1", b"\x90"), SnapshotData("graph.edges.v1", b"")], cursor=b"c"),
    LogChunk(1, 10, [(9, b"op"), (10, b"op2")]),
    # dataclasses in lists in dataclasses, user data (properties) beside them
    GraphRequest(
        GraphOp.EDGE_ATTACH, 3, 7, GraphRef("g", "u1", 2, "cosine", ["text"]),
        halves=[EdgeHalf("a", "knows", "b/ü", 9, HalfState.PENDING, {"since": [2020, {"n": None}]}, 0.5), EdgeHalf("c", "t", "d")],
    ),
    GraphReply(True, 4, parts=[ShardHits(1, [GraphHit("a", "L", 0.9, {"k": "v"})]), ShardHits(2, [], "moved", "not here")], halves=[EdgeHalf("a", "t", "b", 3, HalfState.DONE)]),
]


@pytest.mark.parametrize("msg", ROUND_TRIPS, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    assert decode(type(msg), encode(msg)) == msg
    assert from_dict(type(msg), json.loads(encode_json(msg)) if not _has_bytes(msg) else msgpack.unpackb(encode(msg))) == msg


def _has_bytes(msg) -> bool:
    return b"\xc4" in encode(msg) or isinstance(msg, (KvRequest, KvReply, SnapshotChunk, SnapshotRequest, LogChunk))


def test_snapshot_messages_of_a_release_before_chunk_formats_read_as_the_old_shape():
    request = decode(SnapshotRequest, msgpack.packb({"v": 1, "shard_id": 3, "after": "k", "max_bytes": 10}))
    assert (request.formats, request.cursor, request.after) == ([], None, "k")
    chunk = decode(SnapshotChunk, msgpack.packb({"v": 1, "shard_id": 3, "last_seq": 4, "rows": [["k", b"v", "t"]], "next": "k"}))
    assert (chunk.chunks, chunk.cursor, chunk.rows, chunk.next) == ([], None, [("k", b"v", "t")], "k")


def test_every_message_carries_the_protocol_version():
    assert msgpack.unpackb(encode(KvRequest("get", 0, 0, key="a")))["v"] == 1


BAD = [
    (b"\xc1", "bad_request"),
    (msgpack.packb([1, 2]), "bad_request"),
    (msgpack.packb({"op": "get", "shard_id": 1, "epoch": 1}), "unsupported_version"),
    (msgpack.packb({"v": PROTOCOL_VERSION + 2, "op": "get", "shard_id": 1, "epoch": 1}), "unsupported_version"),  # two versions newer
    (msgpack.packb({"v": 0, "op": "get", "shard_id": 1, "epoch": 1}), "unsupported_version"),
    (msgpack.packb({"v": True, "op": "get", "shard_id": 1, "epoch": 1}), "unsupported_version"),
    (msgpack.packb({"v": 1, "op": "get", "epoch": 1}), "bad_request"),
    (msgpack.packb({"v": 1, "op": "get", "shard_id": "1", "epoch": 1}), "bad_request"),
    (msgpack.packb({"v": 1, "op": "get", "shard_id": True, "epoch": 1}), "bad_request"),
    (msgpack.packb({"v": 1, "op": 5, "shard_id": 1, "epoch": 1}), "bad_request"),
    (msgpack.packb({"v": 1, "op": "put", "shard_id": 1, "epoch": 1, "value": "text not bytes"}), "bad_request"),
]


@pytest.mark.parametrize("data,code", BAD)
def test_garbage_is_refused_with_a_code(data, code):
    with pytest.raises(ToruaError) as err:
        decode(KvRequest, data)
    assert err.value.code == code


def test_nested_garbage_is_refused():
    data = msgpack.packb({"v": 1, "epoch": 1, "num_shards": 1, "shards": [{"shard_id": "x"}]})
    with pytest.raises(ToruaError):
        decode(ShardMap, data)


@pytest.mark.parametrize("vector, taken", [([0.5, 1.5], [0.5, 1.5]), ([1, 2.5], [1.0, 2.5]), ([], []), ([0.5, True], None), ([0.5, "1"], None)])
def test_a_list_of_numbers_is_taken_as_floats_and_anything_else_refused(vector, taken):
    """Floats pass in one pass (an embedding of 384); ints become floats; a bool or
    text in the list is refused, naming its field."""
    from torua.protocol.messages import VertexData

    data = msgpack.packb({"v": 1, "id": "a", "embedding": vector})
    if taken is None:
        with pytest.raises(ToruaError, match="VertexData.embedding"):
            decode(VertexData, data)
    else:
        got = decode(VertexData, data).embedding
        assert got == taken and all(type(x) is float for x in got)


def _nested(depth: int) -> dict:
    out: dict = {}
    for _ in range(depth):
        out = {"x": out}
    return out


# Values msgpack cannot carry: whoever built the message from user data learns which field.
UNCARRIABLE = [
    (AssignRequest(99999999999999999999, "n1"), "AssignRequest.shard_id: integer 99999999999999999999 is out of range"),
    (AssignRequest(-(1 << 63) - 1, "n1"), "AssignRequest.shard_id: integer -9223372036854775809 is out of range"),
    (ExplainRequest(1 << 64), "ExplainRequest.shard_id: integer"),
    (SettingsChange({"max_moves": 1 << 64}), "SettingsChange.changes.max_moves: integer"),
    (SettingsChange({"a": {"b": [1, -(1 << 70)]}}), "SettingsChange.changes.a.b[1]: integer"),
    (NodeRequest("\ud800", "drain"), "NodeRequest.node_id: text must be valid UTF-8"),
    (MaintenanceRequest(["n1", "n\udcff"], True), "MaintenanceRequest.nodes[1]: text must be valid UTF-8"),
    (BroadcastMessage("ping", _nested(2000)), "BroadcastMessage.body.x.x.x"),
    (BroadcastMessage("ping", {"f": object()}), "BroadcastMessage.body.f: object cannot be sent"),
]


@pytest.mark.parametrize("msg,message", UNCARRIABLE, ids=lambda v: None if isinstance(v, str) else type(v).__name__)
def test_values_msgpack_cannot_carry_are_bad_requests_naming_the_field(msg, message):
    with pytest.raises(ToruaError) as err:
        encode(msg)
    assert err.value.code == "bad_request"
    assert err.value.message.startswith(message), err.value.message


def test_the_64_bit_edges_still_encode():
    for shard in (INT_MIN, INT_MAX, 0):
        assert decode(AssignRequest, encode(AssignRequest(shard, "n1"))).shard_id == shard


# User data (a JSON or msgpack body) is checked once, where it comes in, with the path of what is wrong.
@pytest.mark.parametrize(
    "data,message",
    [
        (b'{"shard_id": 99999999999999999999}', "shard_id: integer 99999999999999999999 is out of range"),
        (b'{"shard_id": -9223372036854775809}', "shard_id: integer"),
        (b'{"body": {"list": [0, 18446744073709551616]}}', "body.list[1]: integer"),
        (b'{"heartbeat_interval": NaN}', "heartbeat_interval: numbers must be finite"),
        (b'{"a": Infinity}', "a: numbers must be finite"),
        (b'{"a": -Infinity}', "a: numbers must be finite"),
        (b'{"a": 1e999}', "a: numbers must be finite"),
        (b'{"node": "\\ud800"}', "node: text must be valid UTF-8"),
        (b'{"\\udcff": 1}', "text must be valid UTF-8"),
        (b'{"body": {"a\\u0000b.c": NaN}}', "body['a\\x00b.c']: numbers must be finite"),
        (b'{"body": {"": [NaN]}}', "body[''][0]: numbers must be finite"),
        (b'{"x": ' * 101 + b"1" + b"}" * 101, "x.x.x"),
        (b"[" * 100000 + b"]" * 100000, "the body is not valid JSON"),
        (b"{not json", "the body is not valid JSON"),
        (b"\xff\xfe{}", "the body is not valid JSON"),
    ],
)
def test_user_json_is_refused_naming_what_is_wrong(data, message):
    with pytest.raises(ToruaError) as err:
        loads_json(data)
    assert err.value.code == "bad_request"
    assert err.value.message.startswith(message), err.value.message


def test_user_json_within_the_limits_is_read_as_it_is():
    text = b'{"a": [18446744073709551615, -9223372036854775808, 1.5e308, "\\u00e9"], "b": null, "c": true}'
    assert loads_json(text) == {"a": [(1 << 64) - 1, -(1 << 63), 1.5e308, "é"], "b": None, "c": True}
    assert loads_json(b'{"x": ' * 99 + b"1" + b"}" * 99) is not None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1 << 64, "\ud800", _nested(101), {1: object()}], ids=lambda v: repr(v).split(" at 0x")[0])
def test_check_plain_refuses_what_the_wire_cannot_carry(value):
    with pytest.raises(ToruaError) as err:
        check_plain(value, "body")
    assert err.value.code == "bad_request" and err.value.message.startswith("body")
