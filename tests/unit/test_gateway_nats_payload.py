"""The NATS API's payload helpers (msgpack or JSON), pure. Whole requests against a
real cluster are in tests/integration/test_gateway_nats_api_real.py."""

import base64
import json

import msgpack
import pytest

from torua.gateway.nats_api import answer, check_fields, parse_payload, value_of, value_reply, wants_json
from torua.protocol.errors import ToruaError

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
        # values the wire cannot carry, in either encoding
        (b'{"shard_id": 99999999999999999999}', True),
        (b'{"body": {"a": [1, NaN]}}', True),
        (b'{"limit": 1e999}', True),
        (b'{"node": "\\ud800"}', True),
        (msgpack.packb({"body": {"a": float("nan")}}), False),
        (msgpack.packb({"body": {"a": float("-inf")}}), False),
    ],
)
def test_bad_payloads(data, as_json):
    with pytest.raises(ToruaError) as err:
        parse_payload(data, as_json)
    assert err.value.code == "bad_request"


def test_a_value_the_wire_cannot_carry_is_named():
    with pytest.raises(ToruaError, match=r"^bad_request: shard_id: integer 99999999999999999999 is out of range"):
        parse_payload(b'{"shard_id": 99999999999999999999, "node_id": "n1"}', True)
    with pytest.raises(ToruaError, match=r"^bad_request: body\.a\[1\]: numbers must be finite"):
        parse_payload(msgpack.packb({"body": {"a": [0, float("inf")]}}), False)


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
    with pytest.raises(ToruaError) as err:
        value_of(body, as_json)
    assert err.value.code == "bad_request"


def test_value_reply_json_uses_text_or_base64():
    assert value_reply("k", "é".encode(), "text/plain", True) == {"key": "k", "content_type": "text/plain", "value": "é"}
    assert value_reply("k", b"\xff", "x/y", True)["value_b64"] == base64.b64encode(b"\xff").decode()
    assert value_reply("k", b"\xff", "x/y", False)["value"] == b"\xff"


def test_unknown_fields_are_refused():
    check_fields({"key": "a"}, frozenset({"key"}))
    with pytest.raises(ToruaError, match="vaule"):
        check_fields({"key": "a", "vaule": "x"}, frozenset({"key", "value"}))


async def test_a_crashing_handler_answers_internal_without_the_detail(caplog):
    """`answer` never raises: an unexpected exception becomes `internal`, its detail only in the log.
    (No gateway is needed: the handler never touches it.)"""

    async def boom(gw, data, as_json, authorization):
        raise RuntimeError("secret detail")

    payload, error = await answer(None, boom, b"{}", JSON)  # type: ignore[arg-type]
    assert error.code == "internal" and error.http_status == 500
    assert json.loads(payload) == {"error": {"code": "internal", "message": error.message}}
    assert b"secret" not in payload
    assert "secret detail" in caplog.text
