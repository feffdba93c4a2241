import json

import msgpack
import pytest

from torua.protocol.codec import PROTOCOL_VERSION, decode, encode, encode_json, from_dict
from torua.protocol.errors import ToruaError
from torua.protocol.messages import (
    Assignment,
    AssignedShard,
    Heartbeat,
    KvReply,
    KvRequest,
    LogChunk,
    ShardEntry,
    ShardMap,
    ShardReport,
    SnapshotChunk,
)

ROUND_TRIPS = [
    KvRequest("put", 3, 7, key="数字", value=b"\x00\xff", content_type="text/plain"),
    KvReply(True, 4, found=True, value=b"v", content_type="x/y"),
    ShardMap(2, 2, 1, [ShardEntry(0, "n1", [], ["n1"], "active", created=True), ShardEntry(1)], "abc"),
    Heartbeat("n1", "0.2.0", 3, 1.5, 2.5, None, "host", 42, [ShardReport(0, "primary", 9, 1, 2)]),
    Assignment(5, "n2", [AssignedShard(1, "primary", True)]),
    SnapshotChunk(1, 10, [("k", b"v", "t")], "k"),
    LogChunk(1, 10, [(9, b"op"), (10, b"op2")]),
]


@pytest.mark.parametrize("msg", ROUND_TRIPS, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    assert decode(type(msg), encode(msg)) == msg
    assert from_dict(type(msg), json.loads(encode_json(msg)) if not _has_bytes(msg) else msgpack.unpackb(encode(msg))) == msg


def _has_bytes(msg) -> bool:
    return b"\xc4" in encode(msg) or isinstance(msg, (KvRequest, KvReply, SnapshotChunk, LogChunk))


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
