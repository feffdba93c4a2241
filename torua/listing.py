"""Listing keys across shards, one page at a time.

Shards are walked in order and each holder returns its keys sorted, so a page is
sorted within a shard, not globally. The cursor is opaque to users: urlsafe
base64 of msgpack ``[shard_id, last_key]``.
"""

from __future__ import annotations

import base64

import msgpack

from torua.kv_rules import MAX_LIMIT, validate_prefix
from torua.protocol.errors import ToruaError
from torua.protocol.messages import KvRequest
from torua.protocol.vocabulary import KvOp
from torua.routing import ShardRouter


def encode_cursor(shard_id: int, last_key: str | None) -> str:
    return base64.urlsafe_b64encode(msgpack.packb([shard_id, last_key])).decode().rstrip("=")


def decode_cursor(cursor: str, num_shards: int) -> tuple[int, str | None]:
    """(shard_id, last_key) from a cursor `encode_cursor` made; `bad_request` for anything else."""
    bad = ToruaError("bad_request", "cursor is not one this API returned")
    if not isinstance(cursor, str) or not cursor or len(cursor) > 4096:
        raise bad
    try:
        # validate=True: a character outside the urlsafe alphabet is an error, not skipped.
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        decoded = msgpack.unpackb(raw, raw=False)
    except Exception:  # binascii, msgpack and unicode errors alike: all mean "not our cursor"
        raise bad from None
    if not isinstance(decoded, list) or len(decoded) != 2:
        raise bad
    shard_id, last_key = decoded
    if not isinstance(shard_id, int) or isinstance(shard_id, bool) or not 0 <= shard_id < num_shards:
        raise bad
    if not (last_key is None or isinstance(last_key, str)):
        raise bad
    return shard_id, last_key


async def list_keys(router: ShardRouter, prefix: str, limit: int, cursor: str | None, timeout: float) -> tuple[list[str], str | None]:
    """Up to `limit` keys starting with `prefix`, after `cursor`; returns (keys, next cursor or None)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ToruaError("bad_request", f"limit must be an integer from 1 to {MAX_LIMIT}")
    validate_prefix(prefix)
    num_shards = router.shard_map().num_shards
    shard_id, after = decode_cursor(cursor, num_shards) if cursor else (0, None)
    keys: list[str] = []
    while shard_id < num_shards:
        want = limit - len(keys)
        reply = await router.call(
            shard_id, lambda epoch, s=shard_id, a=after, w=want: KvRequest(KvOp.LIST, s, epoch, prefix=prefix, after=a, limit=w), timeout
        )
        if not reply.ok:
            raise ToruaError(reply.error_code or "internal", reply.error_message)
        keys.extend(reply.keys)
        if len(reply.keys) >= want:
            return keys, encode_cursor(shard_id, reply.keys[-1])
        shard_id, after = shard_id + 1, None
    return keys, None
