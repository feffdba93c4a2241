"""Tables for what the gateway accepts: keys in raw paths, NATS API payloads, cursors."""

import base64
import json

import msgpack
import pytest

from torua.gateway.nats_api import parse_payload, value_of, wants_json
from torua.gateway.paths import key_from_raw_path
from torua.listing import decode_cursor, encode_cursor
from torua.protocol.errors import TouraError


@pytest.mark.parametrize(
    "raw,key",
    [
        ("/data/simple", "simple"),
        ("/data/user@example.com", "user@example.com"),
        ("/data/path/to/resource", "path/to/resource"),
        ("/data/path%2Fto%2Fresource", "path/to/resource"),
        ("/data/key-with-spaces%20here", "key-with-spaces here"),
        ("/data/%E6%95%B0%E5%AD%97", "数字"),
        ("/data/very:long:key:with:many:colons:and:segments", "very:long:key:with:many:colons:and:segments"),
        ("/data/a?ignored=query", "a"),
        ("/data/100%25", "100%"),
    ],
)
def test_keys_from_raw_paths(raw, key):
    assert key_from_raw_path(raw) == key


@pytest.mark.parametrize(
    "raw",
    ["/data/", "/data/%ZZ", "/data/%E6%95", "/data/%FF", "/data/a%00b", "/data/" + "k" * 1025, "/data/trailing%2", "/other/a"],
)
def test_bad_raw_paths(raw):
    with pytest.raises(TouraError) as err:
        key_from_raw_path(raw)
    assert err.value.code == "bad_request"


def test_location_paths():
    assert key_from_raw_path("/keys/a%2Fb/location", "/keys/", "/location") == "a/b"
    with pytest.raises(TouraError):
        key_from_raw_path("/keys/a/elsewhere", "/keys/", "/location")


@pytest.mark.parametrize(
    "headers,expected",
    [(None, False), ({}, False), ({"Content-Type": "application/json"}, True), ({"Content-Type": "application/json; charset=utf-8"}, True), ({"Content-Type": "application/msgpack"}, False)],
)
def test_wants_json(headers, expected):
    assert wants_json(headers) is expected


@pytest.mark.parametrize(
    "data,as_json",
    [(b"{not json", True), (b"[1,2]", True), (b'"text"', True), (b"\xc1", False), (msgpack.packb([1]), False), (b"\xff\xfe", True)],
)
def test_bad_payloads(data, as_json):
    with pytest.raises(TouraError) as err:
        parse_payload(data, as_json)
    assert err.value.code == "bad_request"


def test_good_payloads():
    assert parse_payload(b"", True) == {}
    assert parse_payload(json.dumps({"key": "a"}).encode(), True) == {"key": "a"}
    assert parse_payload(msgpack.packb({"key": "a", "value": b"\x00"}), False) == {"key": "a", "value": b"\x00"}


@pytest.mark.parametrize(
    "body,as_json,value",
    [
        ({"value": "héllo"}, True, "héllo".encode()),
        ({"value_b64": base64.b64encode(b"\x00\xff").decode()}, True, b"\x00\xff"),
        ({"value": b"\x00"}, False, b"\x00"),
        ({"value": "text"}, False, b"text"),
        ({"value": ""}, True, b""),
    ],
)
def test_values(body, as_json, value):
    assert value_of(body, as_json) == value


@pytest.mark.parametrize(
    "body,as_json",
    [({}, True), ({"value": "a", "value_b64": "YQ=="}, True), ({"value_b64": "***"}, True), ({"value": 5}, True), ({"value": [1]}, False), ({"value_b64": 5}, True)],
)
def test_bad_values(body, as_json):
    with pytest.raises(TouraError) as err:
        value_of(body, as_json)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize("shard,key", [(0, None), (15, "path/to/数字"), (3, "")])
def test_cursor_round_trip(shard, key):
    assert decode_cursor(encode_cursor(shard, key), 16) == (shard, key)


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "", "!!!", encode_cursor(16, None), encode_cursor(-1, None), base64.urlsafe_b64encode(msgpack.packb(["x", 1])).decode(), base64.urlsafe_b64encode(msgpack.packb(7)).decode()],
)
def test_bad_cursors(cursor):
    with pytest.raises(TouraError) as err:
        decode_cursor(cursor, 16)
    assert err.value.code == "bad_request"
