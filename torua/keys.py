"""Keys: what a valid key is, and which shard it lives in.

Pure functions, shared by the gateway, the client and the nodes so that every
process routes a key the same way.

>>> shard_for_key("user@example.com", 16)
12
"""

from __future__ import annotations

import mmh3

from torua.protocol.errors import ToruaError

MAX_KEY_BYTES = 1024


def validate_key(key: object) -> str:
    """Return the key if it is 1..1024 bytes of UTF-8 without NUL; raise `bad_request` otherwise."""
    if not isinstance(key, str):
        raise ToruaError("bad_request", "key must be a string")
    if not key:
        raise ToruaError("bad_request", "key must not be empty")
    if "\x00" in key:
        raise ToruaError("bad_request", "key must not contain NUL")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ToruaError("bad_request", "key must be valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise ToruaError("bad_request", f"key is {size} bytes; the limit is {MAX_KEY_BYTES}")
    return key


def validate_prefix(prefix: object) -> str:
    """A key prefix (for listing) follows the key rules except that it may be empty.

    >>> validate_prefix("")
    ''
    """
    if prefix == "":
        return ""
    try:
        return validate_key(prefix)
    except ToruaError as exc:
        raise ToruaError("bad_request", exc.message.replace("key", "prefix", 1)) from None


def shard_for_key(key: str, num_shards: int) -> int:
    """The shard a key (or graph vertex id) belongs to: murmur3 of its UTF-8 bytes, seed 0."""
    return mmh3.hash(key.encode("utf-8"), 0, signed=False) % num_shards
