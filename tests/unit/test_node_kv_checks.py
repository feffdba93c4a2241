"""What a node refuses in a KV request before serving it (torua.node.kv_checks): the
rules the gateway applies, plus the shard a key belongs to."""

from __future__ import annotations

import pytest

from torua.kv_rules import shard_for_key
from torua.node.kv_checks import operation_for
from torua.protocol.errors import ToruaError
from torua.protocol.messages import KvRequest
from torua.storage.operations import KvDelete, KvPut

SHARDS = 8
LIMIT = 16
KEY = "user@example.com"
HOME = shard_for_key(KEY, SHARDS)
AWAY = (HOME + 1) % SHARDS

# (id, request, num_shards the node knows, expected: the op it logs, None, or the refusal's code)
CASES = [
    ("get", KvRequest("get", HOME, 1, key=KEY), SHARDS, None),
    ("put", KvRequest("put", HOME, 1, key=KEY, value=b"v", content_type="text/plain"), SHARDS, KvPut(KEY, b"v", "text/plain")),
    ("put-default-type", KvRequest("put", HOME, 1, key=KEY, value=b"v", content_type=""), SHARDS, KvPut(KEY, b"v")),
    ("delete", KvRequest("delete", HOME, 1, key=KEY), SHARDS, KvDelete(KEY)),
    ("list", KvRequest("list", AWAY, 1, prefix="user", after="a", limit=5), SHARDS, None),
    # the key's shard is another one: refused, whatever the op
    ("get-wrong-shard", KvRequest("get", AWAY, 1, key=KEY), SHARDS, "bad_request"),
    ("put-wrong-shard", KvRequest("put", AWAY, 1, key=KEY, value=b"v"), SHARDS, "bad_request"),
    ("delete-wrong-shard", KvRequest("delete", AWAY, 1, key=KEY), SHARDS, "bad_request"),
    # an older coordinator did not say how many shards: that one check cannot be made
    ("put-shards-unknown", KvRequest("put", AWAY, 1, key=KEY, value=b"v"), 0, KvPut(KEY, b"v")),
    ("put-shards-unknown-bad-type", KvRequest("put", AWAY, 1, key=KEY, value=b"v", content_type="a\r\nb"), 0, "bad_request"),
    # a shard the cluster does not have
    ("get-no-such-shard", KvRequest("get", SHARDS, 1, key=KEY), SHARDS, "unknown_shard"),
    ("list-no-such-shard", KvRequest("list", -1, 1), SHARDS, "unknown_shard"),
    # what the gateway refuses, a node refuses too
    ("put-crlf-type", KvRequest("put", HOME, 1, key=KEY, value=b"v", content_type="text/plain\r\nX: 1"), SHARDS, "bad_request"),
    ("put-long-type", KvRequest("put", HOME, 1, key=KEY, value=b"v", content_type="t" * 256), SHARDS, "bad_request"),
    ("put-too-large", KvRequest("put", HOME, 1, key=KEY, value=b"v" * (LIMIT + 1)), SHARDS, "value_too_large"),
    ("put-at-limit", KvRequest("put", HOME, 1, key=KEY, value=b"v" * LIMIT), SHARDS, KvPut(KEY, b"v" * LIMIT)),
    ("put-no-value", KvRequest("put", HOME, 1, key=KEY), SHARDS, "bad_request"),
    ("put-empty-key", KvRequest("put", 0, 1, key="", value=b"v"), SHARDS, "bad_request"),
    ("get-nul-key", KvRequest("get", 0, 1, key="a\x00b"), 0, "bad_request"),
    ("delete-long-key", KvRequest("delete", 0, 1, key="k" * 1025), 0, "bad_request"),
    ("list-long-prefix", KvRequest("list", 0, 1, prefix="p" * 1025), SHARDS, "bad_request"),
    ("list-bad-after", KvRequest("list", 0, 1, after=""), SHARDS, "bad_request"),
    ("list-zero-limit", KvRequest("list", 0, 1, limit=0), SHARDS, "bad_request"),
    ("unknown-op", KvRequest("scan", 0, 1), SHARDS, "bad_request"),
]


@pytest.mark.parametrize("request_,num_shards,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_what_a_node_serves_and_refuses(request_, num_shards, expected):
    if isinstance(expected, str):
        with pytest.raises(ToruaError) as err:
            operation_for(request_, num_shards, LIMIT)
        assert err.value.code == expected
    else:
        assert operation_for(request_, num_shards, LIMIT) == expected
