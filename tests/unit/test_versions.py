"""The protocol compatibility rule, and what decode does across versions in a rolling upgrade."""

import msgpack
import pytest

from torua.protocol.codec import PROTOCOL_VERSION, Refused, decode, encode, encode_refusal
from torua.protocol.errors import ToruaError
from torua.protocol.messages import AssignedShard, Assignment, Heartbeat, KvRequest, LeaseGrant, NodeStatus, ShardReport
from torua.protocol.versions import OLDEST_PROTOCOL_VERSION, accepts, compatible, refusal_reason, spoken

# (ours, oldest we read, theirs) -> compatible
RULE = [
    (1, 1, 1, True),
    (1, 1, 2, True),  # one newer: additive fields only, ignored
    (1, 1, 3, False),  # two newer: may have changed meanings
    (1, 1, 0, False),
    (3, 2, 1, False),  # older than the oldest still read
    (3, 2, 2, True),
    (3, 2, 3, True),
    (3, 2, 4, True),
    (3, 2, 5, False),
    (3, 3, 2, False),
    (3, 1, 1, True),
    (3, 2, None, False),  # no version at all
    (3, 2, "3", False),
    (3, 2, 3.0, False),
    (1, 1, True, False),  # True == 1 in Python, but is not a version
]


@pytest.mark.parametrize("ours,oldest,theirs,expected", RULE)
def test_compatibility_rule(ours, oldest, theirs, expected):
    assert compatible(ours, theirs, oldest) is expected


def test_this_build_reads_the_version_before_it():
    # the invariant that makes a rolling upgrade across two versions possible
    assert OLDEST_PROTOCOL_VERSION <= max(1, PROTOCOL_VERSION - 1)
    assert accepts(PROTOCOL_VERSION) and accepts(PROTOCOL_VERSION + 1) and accepts(OLDEST_PROTOCOL_VERSION)
    assert not accepts(PROTOCOL_VERSION + 2) and not accepts(OLDEST_PROTOCOL_VERSION - 1)


REASONS = [
    (1, "protocol version 1 not supported (coordinator c1 speaks 2..4); upgrade node n4 to a release that speaks one of 2..4"),
    (5, "protocol version 5 not supported (coordinator c1 speaks 2..4); upgrade coordinator c1 first: a rolling upgrade goes one protocol version at a time"),
    (None, "protocol version None not supported (coordinator c1 speaks 2..4): the message has no valid version field `v`"),
]


@pytest.mark.parametrize("theirs,reason", REASONS)
def test_a_refusal_says_why_and_what_to_do(theirs, reason):
    assert refusal_reason(theirs, "coordinator c1", "node n4", ours=3, oldest=2) == reason


def test_spoken_range():
    assert spoken(3, 2) == "2..4" and spoken(1, 2) == "2"


def _raw(msg, **changes) -> bytes:
    """`msg` as another build would write it: fields added (unknown here), removed or the version changed."""
    obj = msgpack.unpackb(encode(msg))
    for name, value in changes.items():
        if value is _DROP:
            del obj[name]
        else:
            obj[name] = value
    return msgpack.packb(obj, use_bin_type=True)


_DROP = object()
BEAT = Heartbeat("n1", "0.2.0", 3, 1.5, 2.5, 4, "host", 42, [ShardReport(0, "primary", 9, 1, 2)])

# A message from another build -> what this build decodes it to (None: refused)
ACROSS_VERSIONS = [
    # a newer compatible build added fields: ignored
    ("newer, extra field", _raw(BEAT, v=PROTOCOL_VERSION + 1, zone="eu-1"), BEAT),
    ("newer, extra nested field", msgpack.packb({**msgpack.unpackb(encode(BEAT)), "v": PROTOCOL_VERSION + 1, "shards": [{"shard_id": 0, "role": "primary", "last_seq": 9, "keys": 1, "bytes": 2, "hot": True}]}), BEAT),
    # an older build did not have fields that have defaults: they take the default
    ("older, no max_shards", _raw(BEAT, max_shards=_DROP), Heartbeat("n1", "0.2.0", 3, 1.5, 2.5, None, "host", 42, BEAT.shards)),
    ("older, no host/pid/shards", _raw(BEAT, host=_DROP, pid=_DROP, shards=_DROP), Heartbeat("n1", "0.2.0", 3, 1.5, 2.5, 4)),
    ("older, no term", _raw(LeaseGrant(4, 2.0, [(1, 3)], term=7), term=_DROP), LeaseGrant(4, 2.0, [(1, 3)], term=0)),
    ("older, no eventual", _raw(KvRequest("get", 1, 2, key="k", eventual=False), eventual=_DROP), KvRequest("get", 1, 2, key="k")),
    # an older coordinator does not say how many shards the cluster has: 0, and the node cannot check a key's shard
    ("older, no num_shards", _raw(Assignment(4, "n1", [AssignedShard(1)], term=2, num_shards=8), num_shards=_DROP), Assignment(4, "n1", [AssignedShard(1)], term=2)),
    # a field without a default is required in every version
    ("missing required field", _raw(BEAT, node_id=_DROP), None),
    ("two versions newer", _raw(BEAT, v=PROTOCOL_VERSION + 2), None),
    ("older than the oldest read", _raw(BEAT, v=OLDEST_PROTOCOL_VERSION - 1), None),
]


@pytest.mark.parametrize("name,data,expected", ACROSS_VERSIONS, ids=[c[0] for c in ACROSS_VERSIONS])
def test_decode_across_versions(name, data, expected):
    if expected is None:
        with pytest.raises(ToruaError):
            decode(type(BEAT), data)
    else:
        assert decode(type(expected), data) == expected


def test_version_refusal_names_the_version_and_the_range():
    with pytest.raises(ToruaError) as err:
        decode(Heartbeat, _raw(BEAT, v=99))
    assert err.value.code == "unsupported_version"
    assert "protocol version 99 not supported" in err.value.message and spoken() in err.value.message


def test_node_status_defaults_protocol_for_older_coordinators():
    old = msgpack.unpackb(encode(NodeStatus("n1", "healthy", False, None, [], [])))
    if "protocol" in old:
        del old["protocol"]
    assert decode(NodeStatus, msgpack.packb(old)).protocol == 0


@pytest.mark.parametrize("into", [LeaseGrant, KvRequest, Heartbeat])
@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION, PROTOCOL_VERSION + 5, None])
def test_a_refusal_is_read_by_every_version_as_a_refusal(into, version):
    obj = msgpack.unpackb(encode_refusal("unsupported_version", "protocol version 9 not supported", by="coordinator c1"))
    if version is None:
        del obj["v"]
    else:
        obj["v"] = version
    with pytest.raises(Refused) as err:
        decode(into, msgpack.packb(obj))
    assert (err.value.code, err.value.message, err.value.by) == ("unsupported_version", "protocol version 9 not supported", "coordinator c1")
