"""The listing cursor: opaque urlsafe base64 of msgpack [shard_id, last_key]."""

import base64

import msgpack
import pytest

from torua.listing import decode_cursor, encode_cursor
from torua.protocol.errors import ToruaError


def b64(obj) -> str:
    return base64.urlsafe_b64encode(msgpack.packb(obj)).decode()


@pytest.mark.parametrize("shard,key", [(0, None), (15, "path/to/数字"), (3, ""), (7, "k" * 1024), (1, "a?b&c=d#e")])
def test_cursor_round_trip(shard, key):
    cursor = encode_cursor(shard, key)
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor  # safe in a query string as is
    assert decode_cursor(cursor, 16) == (shard, key)


def test_padding_is_optional():
    assert decode_cursor(b64([2, "abc"]), 16) == (2, "abc")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "",
        "!!!",
        "a",  # impossible base64 length
        "数字",
        encode_cursor(16, None),  # shard out of range
        encode_cursor(-1, None),
        b64(["x", 1]),
        b64(7),
        b64([1]),
        b64([1, "a", "b"]),
        b64([True, "a"]),  # a bool is not a shard id
        b64([1, b"bytes"]),
        b64([1, 2]),
        b64({"a": 1, "b": 2}),
        encode_cursor(1, "a") + "!",
        "A" * 5000,  # absurdly long
    ],
)
def test_bad_cursors(cursor):
    with pytest.raises(ToruaError) as err:
        decode_cursor(cursor, 16)
    assert err.value.code == "bad_request"
