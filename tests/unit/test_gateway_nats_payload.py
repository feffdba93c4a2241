"""The NATS API: payload parsing (msgpack or JSON) and whole requests through
`answer` against an in-memory cluster, including every way to get a 400."""

import base64
import json

import msgpack
import pytest

from tests.unit.gateway_fakes import make_gateway
from torua.gateway.nats_api import ENDPOINTS, answer, check_fields, parse_payload, value_of, value_reply, wants_json
from torua.protocol.errors import TouraError

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "headers,expected",
    [
        (None, False),
        ({}, False),
        ({"Content-Type": "application/json"}, True),
        ({"content-type": "Application/JSON"}, True),
        ({"Content-Type": "application/json; charset=utf-8"}, True),
        ({"Content-Type": "application/msgpack"}, False),
        ({"Other": "application/json"}, False),
    ],
)
def test_wants_json(headers, expected):
    assert wants_json(headers) is expected


@pytest.mark.parametrize(
    "data,as_json",
    [
        (b"{not json", True),
        (b"[1,2]", True),
        (b'"text"', True),
        (b"\xff\xfe", True),
        (b"\xc1", False),
        (b"\xc1\xc1\xc1", False),
        (msgpack.packb([1]), False),
        (msgpack.packb({"key": "a"}) + b"extra", False),
        (b"\xa2\xff\xfe", False),  # a msgpack str that is not UTF-8
        (msgpack.packb({1: "a"}), False),  # non-string map keys
        (b'{"key": "a"}', False),  # JSON without the header is read as msgpack
    ],
)
def test_bad_payloads(data, as_json):
    with pytest.raises(TouraError) as err:
        parse_payload(data, as_json)
    assert err.value.code == "bad_request"


def test_good_payloads():
    assert parse_payload(b"", True) == {}
    assert parse_payload(b"", False) == {}
    assert parse_payload(json.dumps({"key": "a"}).encode(), True) == {"key": "a"}
    assert parse_payload(msgpack.packb({"key": "a", "value": b"\x00"}, use_bin_type=True), False) == {"key": "a", "value": b"\x00"}


@pytest.mark.parametrize(
    "body,as_json,value",
    [
        ({"value": "héllo"}, True, "héllo".encode()),
        ({"value_b64": base64.b64encode(b"\x00\xff").decode()}, True, b"\x00\xff"),
        ({"value_b64": ""}, True, b""),
        ({"value": b"\x00"}, False, b"\x00"),
        ({"value": "text"}, False, b"text"),
        ({"value": ""}, True, b""),
        ({"value": "a", "value_b64": None}, True, b"a"),
    ],
)
def test_values(body, as_json, value):
    assert value_of(body, as_json) == value


@pytest.mark.parametrize(
    "body,as_json",
    [
        ({}, True),
        ({"value": None}, True),
        ({"value": "a", "value_b64": "YQ=="}, True),
        ({"value_b64": "***"}, True),
        ({"value_b64": "YQ="}, True),  # bad padding
        ({"value_b64": 5}, True),
        ({"value": 5}, True),
        ({"value": [1]}, False),
        ({"value": "\ud800"}, True),  # JSON allows lone surrogates; UTF-8 does not
    ],
)
def test_bad_values(body, as_json):
    with pytest.raises(TouraError) as err:
        value_of(body, as_json)
    assert err.value.code == "bad_request"


def test_value_reply_json_uses_text_or_base64():
    assert value_reply("k", "é".encode(), "text/plain", True) == {"key": "k", "content_type": "text/plain", "value": "é"}
    assert value_reply("k", b"\xff", "x/y", True)["value_b64"] == base64.b64encode(b"\xff").decode()
    assert value_reply("k", b"\xff", "x/y", False)["value"] == b"\xff"


def test_unknown_fields_are_refused():
    check_fields({"key": "a"}, frozenset({"key"}))
    with pytest.raises(TouraError, match="vaule"):
        check_fields({"key": "a", "vaule": "x"}, frozenset({"key", "value"}))


# ------------------------------------------------------------- whole requests


async def call(gw, endpoint: str, body, as_json: bool = True):
    """One request as a NATS client would send it: (decoded reply, error or None)."""
    if isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode() if as_json else msgpack.packb(body, use_bin_type=True)
    payload, error = await answer(gw, ENDPOINTS[endpoint], data, JSON if as_json else None)
    reply = json.loads(payload) if as_json else msgpack.unpackb(payload, raw=False)
    if error is not None:
        assert reply == {"error": {"code": error.code, "message": error.message}}
    return reply, error


async def test_json_and_msgpack_round_trips():
    gw, _ = make_gateway()
    assert await call(gw, "kv.put", {"key": "a/b", "value": "héllo", "content_type": "text/plain"}) == ({"ok": True}, None)
    assert (await call(gw, "kv.get", {"key": "a/b"}))[0] == {"key": "a/b", "value": "héllo", "content_type": "text/plain"}
    assert (await call(gw, "kv.get", {"key": "a/b"}, as_json=False))[0]["value"] == "héllo".encode()
    raw = bytes(range(256))
    assert (await call(gw, "kv.put", {"key": "bin", "value": raw}, as_json=False))[1] is None
    got, _ = await call(gw, "kv.get", {"key": "bin"})
    assert base64.b64decode(got["value_b64"]) == raw and got["content_type"] == "application/octet-stream"
    listed, _ = await call(gw, "kv.list", {"prefix": "", "limit": 10, "cursor": None})
    assert sorted(listed["keys"]) == ["a/b", "bin"] and listed["next_cursor"] is None
    assert (await call(gw, "kv.delete", {"key": "bin"}))[0] == {"ok": True}
    assert (await call(gw, "kv.delete", {"key": "bin"}))[0] == {"ok": True}  # idempotent
    _, error = await call(gw, "kv.get", {"key": "bin"})
    assert error.code == "not_found" and error.http_status == 404


@pytest.mark.parametrize(
    "endpoint,body,code",
    [
        ("kv.get", b"{not json", "bad_request"),
        ("kv.get", {"nokey": 1}, "bad_request"),
        ("kv.get", {}, "bad_request"),
        ("kv.get", {"key": ""}, "bad_request"),
        ("kv.get", {"key": 5}, "bad_request"),
        ("kv.get", {"key": "a\u0000b"}, "bad_request"),
        ("kv.get", {"key": "k" * 1025}, "bad_request"),
        ("kv.put", {"key": "x"}, "bad_request"),
        ("kv.put", {"key": "x", "value": "a", "value_b64": "YQ=="}, "bad_request"),
        ("kv.put", {"key": "x", "value_b64": "***"}, "bad_request"),
        ("kv.put", {"key": "x", "value": "a", "content_type": 7}, "bad_request"),
        ("kv.put", {"key": "x", "value": "a", "content_type": "text/plain\r\nX-Evil: 1"}, "bad_request"),
        ("kv.put", {"key": "x", "value": "a", "extra": 1}, "bad_request"),
        ("kv.put", {"key": "x", "value": "v" * 1025}, "value_too_large"),
        ("kv.list", {"limit": 0}, "bad_request"),
        ("kv.list", {"limit": 1001}, "bad_request"),
        ("kv.list", {"limit": "10"}, "bad_request"),
        ("kv.list", {"limit": True}, "bad_request"),
        ("kv.list", {"cursor": "garbage!"}, "bad_request"),
        ("kv.list", {"prefix": 3}, "bad_request"),
        ("cluster.info", {"verbose": True}, "bad_request"),
    ],
)
async def test_errors_change_nothing(endpoint, body, code):
    gw, nc = make_gateway()
    reply, error = await call(gw, endpoint, body)
    assert error is not None and error.code == code, reply
    assert reply["error"]["code"] == code
    assert all(not shard for shard in nc.store.values())


async def test_msgpack_errors_come_back_as_msgpack():
    gw, _ = make_gateway()
    reply, error = await call(gw, "kv.get", b"\xc1\xc1\xc1", as_json=False)
    assert reply["error"]["code"] == "bad_request" and error.http_status == 400


async def test_cluster_calls():
    gw, nc = make_gateway()
    for endpoint in ("cluster.info", "cluster.health", "cluster.shards", "cluster.nodes"):
        reply, error = await call(gw, endpoint, b"")
        assert error is None, (endpoint, error)
    assert (await call(gw, "cluster.health", {}))[0]["status"] == "green"
    assert len((await call(gw, "cluster.shards", {}))[0]["shards"]) == nc.shard_map.num_shards
    nc.coordinator_up = False
    _, error = await call(gw, "cluster.nodes", {})
    assert error.code == "no_coordinator" and error.http_status == 503


async def test_node_errors_pass_through_and_crashes_are_internal(caplog):
    gw, nc = make_gateway()
    nc.node_errors["get"] = ("bad_request", "the node did not like it")
    _, error = await call(gw, "kv.get", {"key": "a"})
    assert (error.code, error.message) == ("bad_request", "the node did not like it")

    async def boom(gw, body, as_json):
        raise RuntimeError("secret detail")

    payload, error = await answer(gw, boom, b"{}", JSON)
    assert error.code == "internal" and b"secret" not in payload
