"""`bind`: one check of a call's inputs for both front-ends, as a table of cases.
Text (a path, query or header value, as REST sends it) is parsed; a JSON or msgpack
value must have its type already; empty text and null are absent."""

from __future__ import annotations

import pytest

from torua.gateway.params import Boolean, In, Integer, JsonObject, Key, Param, Text, TextList, Value, bind, check_fields, expected_fields
from torua.protocol.errors import ToruaError

LIMIT = Param("limit", Integer(1, 1000), default=100, rest=In.QUERY)
SHARD = Param("shard", Integer(0, 2**31 - 1), required=True, rest=In.QUERY, what="a shard number (0, 1, ...)")
SHARD_ID = Param("shard_id", Integer(), required=True)
DRY_RUN = Param("dry_run", Boolean(), default=False, rest=In.QUERY)
CONSISTENCY = Param("consistency", Text(choices=("strong", "eventual")), default="strong", rest=In.QUERY)
NODE_ID = Param("node_id", Text(min_length=1), required=True)
NODES = Param("nodes", TextList(min_items=1), required=True, what="a non-empty list of node ids")
BODY = Param("body", JsonObject())
KEY = Param("key", Key(), required=True, rest=In.PATH)
VALUE = Param("value", Value(), required=True, rest=In.RAW_BODY)

# (param, value, as text?, what bind gives)
GOOD = [
    (LIMIT, "10", True, 10),
    (LIMIT, "", True, 100),  # an empty query parameter means its default
    (LIMIT, None, False, 100),  # null or absent too
    (LIMIT, 1000, False, 1000),
    (LIMIT, "0001", True, 1),
    (SHARD, "0", True, 0),
    (SHARD, 2**31 - 1, False, 2**31 - 1),
    (SHARD_ID, -1, False, -1),  # the Gateway answers unknown_shard for ids the cluster does not have
    (SHARD_ID, 2**64 - 1, False, 2**64 - 1),
    (DRY_RUN, "true", True, True),
    (DRY_RUN, "TRUE", True, True),
    (DRY_RUN, "1", True, True),
    (DRY_RUN, "false", True, False),
    (DRY_RUN, "0", True, False),
    (DRY_RUN, "", True, False),
    (DRY_RUN, True, False, True),
    (CONSISTENCY, "eventual", True, "eventual"),
    (CONSISTENCY, "", True, "strong"),
    (NODE_ID, "n1", False, "n1"),
    (NODES, ["n1", "n2"], False, ["n1", "n2"]),
    (BODY, None, False, None),
    (BODY, {"a": [1]}, False, {"a": [1]}),
    (KEY, "a/b\nc", True, "a/b\nc"),
    (KEY, "数字", False, "数字"),
    (VALUE, b"\x00", False, b"\x00"),
]


@pytest.mark.parametrize("param,value,text,expected", GOOD, ids=lambda v: repr(v)[:30] if not isinstance(v, Param) else v.name)
def test_good_values(param, value, text, expected):
    assert bind((param,), {param.name: value}, from_text={param.name} if text else ()) == {param.name: expected}


# (param, value, as text?, the message)
BAD = [
    (LIMIT, "0", True, "limit must be an integer from 1 to 1000, not '0'"),
    (LIMIT, "1001", True, "limit must be an integer from 1 to 1000, not '1001'"),
    (LIMIT, "abc", True, "limit must be an integer from 1 to 1000, not 'abc'"),
    (LIMIT, "-1", True, "limit must be an integer from 1 to 1000, not '-1'"),
    (LIMIT, "1.5", True, "limit must be an integer from 1 to 1000, not '1.5'"),
    (LIMIT, " 1", True, "limit must be an integer from 1 to 1000, not ' 1'"),
    (LIMIT, "9" * 21, True, "limit must be an integer from 1 to 1000, not '" + "9" * 21 + "'"),  # bounded before int()
    (LIMIT, 0, False, "limit must be an integer from 1 to 1000, not 0"),
    (LIMIT, "10", False, "limit must be an integer from 1 to 1000, not '10'"),  # JSON text is not a number
    (LIMIT, True, False, "limit must be an integer from 1 to 1000, not true"),
    (LIMIT, 1.0, False, "limit must be an integer from 1 to 1000, not 1.0"),
    (SHARD, "", True, "shard is required: a shard number (0, 1, ...)"),
    (SHARD, None, False, "shard is required: a shard number (0, 1, ...)"),
    (SHARD, "x", True, "shard must be a shard number (0, 1, ...), not 'x'"),
    (SHARD, 2**31, False, "shard must be a shard number (0, 1, ...), not 2147483648"),
    (SHARD_ID, "zero", False, "shard_id must be an integer, not 'zero'"),
    (SHARD_ID, False, False, "shard_id must be an integer, not false"),
    (DRY_RUN, "maybe", True, "dry_run must be true or false, not 'maybe'"),
    (DRY_RUN, "yes", False, "dry_run must be true or false, not 'yes'"),
    (DRY_RUN, 1, False, "dry_run must be true or false, not 1"),
    (CONSISTENCY, "weird", True, "consistency must be strong or eventual, not 'weird'"),
    (NODE_ID, "", False, "node_id must be a non-empty string, not ''"),
    (NODE_ID, 5, False, "node_id must be a non-empty string, not 5"),
    (NODES, [], False, "nodes must be a non-empty list of node ids, not an empty list"),
    (NODES, ["n1", ""], False, "nodes must be a non-empty list of node ids, not a list"),
    (NODES, "n1", False, "nodes must be a non-empty list of node ids, not 'n1'"),
    (BODY, [1], False, "body must be an object, not a list"),
    (KEY, "", False, "key must not be empty"),  # the key rules' own words (torua.kv_rules), as a REST path gets them
    (KEY, "a\x00b", False, "key must not contain NUL"),
    (KEY, 5, False, "key must be a key (a non-empty string), not 5"),
    (VALUE, "text", False, "value must be bytes, not 'text'"),
]


@pytest.mark.parametrize("param,value,text,message", BAD, ids=lambda v: repr(v)[:30] if not isinstance(v, Param) else v.name)
def test_bad_values_are_bad_requests_naming_the_param(param, value, text, message):
    with pytest.raises(ToruaError) as err:
        bind((param,), {param.name: value}, from_text={param.name} if text else ())
    assert (err.value.code, err.value.message) == ("bad_request", message)
    if param.kind is not KEY.kind:
        assert list(err.value.fields) == [param.name]


def test_a_routes_fixed_values_are_taken_as_they_are():
    on = Param("on", Boolean(), default=True, rest=None)
    assert bind((NODE_ID, on), {"node_id": "n1", "on": "ignored"}, fixed={"on": False}) == {"node_id": "n1", "on": False}


def test_params_are_checked_in_order():
    with pytest.raises(ToruaError, match="^bad_request: shard_id is required"):
        bind((SHARD_ID, NODE_ID), {})


@pytest.mark.parametrize(
    "required,optional,said",
    [
        ([], [], "none"),
        (["key"], [], "key"),
        (["shard_id", "node_id"], [], "shard_id and node_id"),
        (["kind"], ["body"], "kind and optionally body"),
        (["nodes", "maintenance"], ["drain"], "nodes and maintenance, and optionally drain"),
        ([], ["prefix", "limit", "cursor"], "optionally prefix, limit or cursor"),
    ],
)
def test_expected_fields(required, optional, said):
    assert expected_fields(required, optional) == said


def test_unknown_fields_name_themselves_and_what_is_expected():
    check_fields({"shard_id": 1}, {"shard_id", "node_id"})
    with pytest.raises(ToruaError) as err:
        check_fields({"shard_id": 1, "force": True, "aa": 0}, {"shard_id", "node_id"}, "shard_id and node_id")
    assert err.value.message == "unknown field(s) aa, force; expected shard_id and node_id"
    assert set(err.value.fields) == {"aa", "force"}


@pytest.mark.parametrize(
    "kind,schema",
    [
        (Integer(1, 1000), {"type": "integer", "minimum": 1, "maximum": 1000}),
        (Text(choices=("strong", "eventual")), {"type": "string", "enum": ["strong", "eventual"]}),
        (Text(min_length=1), {"type": "string", "minLength": 1}),
        (Key(), {"type": "string", "minLength": 1}),
        (TextList(min_items=1), {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}),
        (Boolean(), {"type": "boolean"}),
        (JsonObject(), {"type": "object"}),
        (Value(), {"type": "string", "format": "binary"}),
    ],
)
def test_what_the_openapi_document_says_of_each_kind(kind, schema):
    assert kind.schema() == schema


@pytest.mark.parametrize("kind,text", [(Integer(), True), (Text(), True), (Key(), True), (Boolean(), True), (TextList(), False), (JsonObject(), False), (Value(), False)])
def test_which_kinds_a_path_or_query_can_carry(kind, text):
    assert kind.from_text is text
