"""The one set of rules for what may be stored (torua.kv_rules), as gateway, client and
node apply it; and that the value limit fits the NATS max_payload `torua up` sets."""

from __future__ import annotations

import pytest

from torua.cli.up import NATS_MAX_PAYLOAD
from torua.kv_rules import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_VALUE_BYTES,
    ENVELOPE_BYTES,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES_CEILING,
    payload_room,
    servable_content_type,
    shard_for_key,
    validate_content_type,
    validate_key_in_shard,
    validate_prefix,
    validate_put,
    validate_shard,
    validate_value,
)
from torua.protocol.errors import ToruaError


def code_of(call, *args) -> str:
    try:
        call(*args)
    except ToruaError as exc:
        return exc.code
    return "ok"


# (content type, what the rule makes of it: the stored value, or the refusal's code)
CONTENT_TYPES = [
    (None, DEFAULT_CONTENT_TYPE),
    ("", DEFAULT_CONTENT_TYPE),
    ("text/plain", "text/plain"),
    ("application/json; charset=utf-8", "application/json; charset=utf-8"),
    ("x" * 255, "x" * 255),
    ("x" * 256, "bad_request"),
    ("text/plain\r\nX-Injected: 1", "bad_request"),
    ("text/plain\n", "bad_request"),
    ("text/plain\r", "bad_request"),
    ("text/\tplain", "bad_request"),
    ("text/plain\x00", "bad_request"),
    ("text/plain\x7f", "bad_request"),
    ("text/plaïn", "bad_request"),
    (b"text/plain", "bad_request"),
    (7, "bad_request"),
]


@pytest.mark.parametrize("content_type,expected", CONTENT_TYPES, ids=repr)
def test_content_types(content_type, expected):
    if expected == "bad_request":
        assert code_of(validate_content_type, content_type) == "bad_request"
        assert servable_content_type(content_type) == DEFAULT_CONTENT_TYPE  # one stored before the rule is served safely
    else:
        assert validate_content_type(content_type) == expected


# (value, limit, expected: the bytes kept, or the refusal's code)
VALUES = [
    (b"", 8, b""),
    (b"12345678", 8, b"12345678"),
    (b"123456789", 8, "value_too_large"),
    (bytearray(b"ab"), 8, b"ab"),
    (memoryview(b"abc"), 8, b"abc"),
    (memoryview(b"x" * 9), 8, "value_too_large"),
    ("text", 8, "bad_request"),
    (None, 8, "bad_request"),
    ([1, 2], 8, "bad_request"),
]


@pytest.mark.parametrize("value,limit,expected", VALUES, ids=lambda v: repr(bytes(v)) if isinstance(v, memoryview) else repr(v))
def test_values(value, limit, expected):
    if isinstance(expected, str):
        assert code_of(validate_value, value, limit) == expected
    else:
        got = validate_value(value, limit)
        assert got == expected and type(got) is bytes


def test_a_put_is_checked_whole_and_the_first_problem_named():
    assert validate_put("k", b"v", None, 8) == ("k", b"v", DEFAULT_CONTENT_TYPE)
    assert code_of(validate_put, "", b"v", "text/plain", 8) == "bad_request"
    assert code_of(validate_put, "k", b"v" * 9, "text/plain", 8) == "value_too_large"
    assert code_of(validate_put, "k", b"v", "a\nb", 8) == "bad_request"
    with pytest.raises(ToruaError, match="value is 9 bytes; the limit is 8"):
        validate_put("k", b"v" * 9, None, 8)


@pytest.mark.parametrize(
    "prefix,expected",
    [("", "ok"), ("user/", "ok"), ("é" * 512, "ok"), ("é" * 513, "bad_request"), ("k" * (MAX_KEY_BYTES + 1), "bad_request"),
     ("\ud800", "bad_request"), (None, "bad_request"), (b"user/", "bad_request")],
    ids=repr,
)
def test_prefixes(prefix, expected):
    assert code_of(validate_prefix, prefix) == expected


@pytest.mark.parametrize(
    "shard_id,num_shards,expected",
    [(0, 16, "ok"), (15, 16, "ok"), (16, 16, "unknown_shard"), (-1, 16, "unknown_shard"), (99, 0, "ok")],
)
def test_shard_ids(shard_id, num_shards, expected):
    assert code_of(validate_shard, shard_id, num_shards) == expected


def test_a_key_belongs_to_one_shard_only():
    key = "user@example.com"
    home = shard_for_key(key, 16)
    assert validate_key_in_shard(key, home, 16) == key
    for other in set(range(16)) - {home}:
        with pytest.raises(ToruaError, match=f"belongs to shard {home}, not {other}") as err:
            validate_key_in_shard(key, other, 16)
        assert err.value.code == "bad_request"
    assert validate_key_in_shard(key, (home + 1) % 16, 0) == key  # the shard count is not known: nothing to check


@pytest.mark.parametrize(
    "max_value_bytes,max_payload,fits",
    [
        (DEFAULT_MAX_VALUE_BYTES, NATS_MAX_PAYLOAD, True),  # what `torua up` runs with
        (DEFAULT_MAX_VALUE_BYTES, 1 << 20, False),  # nats-server's default max_payload (1 MiB)
        (DEFAULT_MAX_VALUE_BYTES, DEFAULT_MAX_VALUE_BYTES, False),  # the value fits, its envelope does not
        (DEFAULT_MAX_VALUE_BYTES, DEFAULT_MAX_VALUE_BYTES + ENVELOPE_BYTES, True),
        (MAX_VALUE_BYTES_CEILING, 64 << 20, True),
        (1024, 0, True),  # max_payload not known: nothing to say
    ],
)
def test_the_value_limit_against_the_nats_max_payload(max_value_bytes, max_payload, fits):
    assert (payload_room(max_value_bytes, max_payload) is None) == fits
