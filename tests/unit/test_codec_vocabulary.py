"""Protocol vocabularies (torua.protocol.vocabulary) as the codec checks them: every
field typed with one accepts each of its values, refuses anything else with a
`bad_request` naming the field and the values allowed, and, for the vocabularies
that read an unknown value as a safe default, reads a newer peer's value so."""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing

import msgpack
import pytest

from torua.protocol import messages
from torua.protocol.codec import decode, encode, encode_json, from_dict, to_dict
from torua.protocol.errors import ToruaError
from torua.protocol.messages import (
    AssignedShard,
    BroadcastMessage,
    CopyExplanation,
    EdgeHalf,
    GraphRef,
    GraphRequest,
    Heartbeat,
    InSyncChange,
    KvRequest,
    MoveStatus,
    NodeRequest,
    NodeStatus,
    RagJob,
    ShardEntry,
    ShardMap,
    ShardReport,
)
from torua.protocol.vocabulary import (
    READ_UNKNOWN_AS,
    BroadcastKind,
    CopyRole,
    Direction,
    GraphOp,
    HalfState,
    InSyncAction,
    KvOp,
    MapRole,
    MovePhase,
    NodeAction,
    NodeHealth,
    RagTask,
    ShardState,
    VectorMetric,
    Vocabulary,
)

# One valid message per class that has a vocabulary field: (sample, field, vocabulary).
FIELDS = [
    (ShardEntry(0, "n1", state=ShardState.ACTIVE), "state", ShardState),
    (ShardReport(0, CopyRole.PRIMARY), "role", CopyRole),
    (AssignedShard(0, MapRole.REPLICA), "role", MapRole),
    (KvRequest(KvOp.GET, 0, 1, key="a"), "op", KvOp),
    (NodeStatus("n1", NodeHealth.HEALTHY, False, None, [], []), "status", NodeHealth),
    (InSyncChange(0, 1, "n2", InSyncAction.REMOVE), "action", InSyncAction),
    (NodeRequest("n1", NodeAction.DRAIN), "action", NodeAction),
    (CopyExplanation("n1", MapRole.PRIMARY, True, NodeHealth.HEALTHY, True, "why"), "role", MapRole),
    (CopyExplanation("n1", MapRole.PRIMARY, True, NodeHealth.HEALTHY, True, "why"), "node_status", NodeHealth),
    (MoveStatus(0, "n1", "n2", MovePhase.COPYING, 1.0), "phase", MovePhase),
    (BroadcastMessage(BroadcastKind.PING), "kind", BroadcastKind),
    (GraphRequest(GraphOp.VERTEX_GET, 0, 1, GraphRef("g", "u"), id="a"), "op", GraphOp),
    (GraphRequest(GraphOp.EDGES, 0, 1, GraphRef("g", "u"), id="a", direction=Direction.IN), "direction", Direction),
    (GraphRef("g", "u", 3, VectorMetric.L2), "metric", VectorMetric),
    (EdgeHalf("a", "knows", "b", 3, HalfState.ATTACHED), "state", HalfState),
    (RagJob("j1", "notes", "communities", "", task=RagTask.COMMUNITIES), "task", RagTask),
]
IDS = [f"{type(sample).__name__}.{name}" for sample, name, _ in FIELDS]
REFUSING = [f for f in FIELDS if f[2] not in READ_UNKNOWN_AS]
LENIENT = [f for f in FIELDS if f[2] in READ_UNKNOWN_AS]


def vocabulary_fields() -> set[tuple[str, str]]:
    """Every (message, field) typed with a vocabulary in torua.protocol.messages."""
    found = set()
    for cls in vars(messages).values():
        if inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls.__module__ == messages.__name__:
            for name, hint in typing.get_type_hints(cls).items():
                if isinstance(hint, type) and issubclass(hint, Vocabulary):
                    found.add((cls.__name__, name))
    return found


def test_the_table_names_every_vocabulary_field():
    assert {(type(sample).__name__, name) for sample, name, _ in FIELDS} == vocabulary_fields()


def with_value(sample, name: str, value) -> dict:
    data = to_dict(sample)
    data[name] = value
    return data


@pytest.mark.parametrize("sample, name, vocabulary", FIELDS, ids=IDS)
def test_every_value_is_accepted_as_its_member(sample, name, vocabulary):
    for member in vocabulary:
        decoded = from_dict(type(sample), with_value(sample, name, member.value))
        assert getattr(decoded, name) is member
        assert decode(type(sample), encode(decoded)) == decoded
        assert json.loads(encode_json(decoded))[name] == member.value  # on the wire it is the text


@pytest.mark.parametrize("sample, name, vocabulary", FIELDS, ids=IDS)
@pytest.mark.parametrize("bad", [3, None, True, 1.5, b"primary", ["primary"], {"v": "primary"}], ids=repr)
def test_a_value_of_another_type_is_refused_naming_the_field_and_the_values(sample, name, vocabulary, bad):
    with pytest.raises(ToruaError) as refused:
        from_dict(type(sample), with_value(sample, name, bad))
    assert refused.value.code == "bad_request"
    assert refused.value.message.startswith(f"{type(sample).__name__}.{name}: ")
    assert refused.value.message.endswith("is not one of: " + ", ".join(vocabulary.values()))


@pytest.mark.parametrize("sample, name, vocabulary", REFUSING, ids=[f"{type(s).__name__}.{n}" for s, n, _ in REFUSING])
@pytest.mark.parametrize("unknown", ["", "PRIMARY", "Drain", " get", "explode", "x" * 500])
def test_an_unknown_value_of_a_refusing_vocabulary_is_refused(sample, name, vocabulary, unknown):
    with pytest.raises(ToruaError) as refused:
        decode(type(sample), msgpack.packb(with_value(sample, name, unknown)))
    assert refused.value.code == "bad_request"
    message = refused.value.message
    allowed = ", ".join(vocabulary.values())
    # the unknown value is echoed cut short: the message is the field, a little of it and the values allowed
    assert message.startswith(f"{type(sample).__name__}.{name}: ") and len(message) < 150 + len(allowed), message
    assert all(value in message for value in vocabulary.values())


@pytest.mark.parametrize("sample, name, vocabulary", LENIENT, ids=[f"{type(s).__name__}.{n}" for s, n, _ in LENIENT])
def test_an_unknown_value_of_a_lenient_vocabulary_reads_as_its_safe_default(sample, name, vocabulary):
    decoded = from_dict(type(sample), with_value(sample, name, "added-in-a-newer-release"))
    assert getattr(decoded, name) is READ_UNKNOWN_AS[vocabulary]


def test_the_safe_defaults():
    assert READ_UNKNOWN_AS == {CopyRole: CopyRole.ABSENT, ShardState: ShardState.ACTIVE, NodeHealth: NodeHealth.UNKNOWN}


def test_a_newer_nodes_heartbeat_with_a_role_this_release_does_not_know_is_taken():
    """Refusing it would fail the whole node over; its copy counts as absent instead."""
    beat = to_dict(Heartbeat("n1", "9.0.0", 3, 1.0, 2.0, shards=[ShardReport(0, CopyRole.PRIMARY), ShardReport(1, CopyRole.REPLICA)]))
    beat["shards"][0]["role"] = "indexing"
    decoded = decode(Heartbeat, msgpack.packb(beat))
    assert [r.role for r in decoded.shards] == [CopyRole.ABSENT, CopyRole.REPLICA]


def test_a_newer_map_with_a_state_this_release_does_not_know_still_routes():
    stored = to_dict(ShardMap(4, 2, shards=[ShardEntry(0, "n1", state=ShardState.ACTIVE), ShardEntry(1, "n2", state=ShardState.UNAVAILABLE)]))
    stored["shards"][0]["state"] = "rebuilding"
    decoded = decode(ShardMap, msgpack.packb(stored))
    assert [e.state for e in decoded.shards] == [ShardState.ACTIVE, ShardState.UNAVAILABLE]


def test_a_member_is_its_wire_text():
    assert CopyRole.PRIMARY == "primary" and hash(CopyRole.PRIMARY) == hash("primary")
    assert {"primary": 1}[CopyRole.PRIMARY] == 1 and MapRole.PRIMARY == CopyRole.PRIMARY
    assert f"{ShardState.MOVING}" == "moving" and repr(ShardState.MOVING) == "'moving'"
    assert msgpack.packb(KvOp.PUT) == msgpack.packb("put") and json.dumps(NodeAction.DRAIN) == '"drain"'
