"""What a node checks in a KV request before it serves it: pure, over the request,
the cluster's shard count and this node's value limit.

The rules are `torua.kv_rules`, the same the gateway and `torua.Client` apply,
so a request that reaches a node straight (any NATS client may send one) is held
to them too: a bad one is refused, and nothing is written that the gateway could
not serve or that reads of the key would not find.

>>> from torua.protocol.messages import KvRequest
>>> operation_for(KvRequest("put", 12, 1, key="user@example.com", value=b"v"), 16, 8)
KvPut(key='user@example.com', value=b'v', content_type='application/octet-stream')
>>> operation_for(KvRequest("put", 3, 1, key="user@example.com", value=b"v"), 16, 8)
Traceback (most recent call last):
...
torua.protocol.errors.ToruaError: bad_request: key 'user@example.com' belongs to shard 12, not 3 (of 16)
"""

from __future__ import annotations

from torua.kv_rules import validate_key, validate_key_in_shard, validate_prefix, validate_put, validate_shard
from torua.protocol.errors import ToruaError
from torua.protocol.messages import KvRequest
from torua.storage.operations import KvDelete, KvPut

OPS = ("get", "put", "delete", "list")
MAX_LIST_LIMIT = 10000  # keys one list request returns at most (a larger limit is cut to it)


def operation_for(request: KvRequest, num_shards: int, max_value_bytes: int) -> KvPut | KvDelete | None:
    """Check `request`; return the operation a put or delete logs (None for get and list).

    `num_shards` 0 means the node has not been told (an older coordinator): the
    shard of a key cannot be checked then, everything else is."""
    if request.op not in OPS:
        raise ToruaError("bad_request", f"unknown operation {request.op!r}")
    validate_shard(request.shard_id, num_shards)
    if request.op == "list":
        validate_prefix(request.prefix)
        if request.after is not None:
            validate_key(request.after)  # a cursor is the last key a page returned
        if request.limit < 1:
            raise ToruaError("bad_request", "limit must be >= 1")
        return None
    validate_key_in_shard(validate_key(request.key), request.shard_id, num_shards)
    if request.op == "get":
        return None
    if request.op == "delete":
        return KvDelete(request.key)
    if request.value is None:
        raise ToruaError("bad_request", "put needs a value")
    return KvPut(*validate_put(request.key, request.value, request.content_type, max_value_bytes))
