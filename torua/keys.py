"""Keys: what a valid key is, and which shard it lives in.

The rules live in `torua.kv_rules` (with those for values and content types);
they are re-exported here, where older code imports them from.

>>> shard_for_key("user@example.com", 16)
12
"""

from __future__ import annotations

from torua.kv_rules import MAX_KEY_BYTES, shard_for_key, validate_key, validate_prefix

__all__ = ["MAX_KEY_BYTES", "shard_for_key", "validate_key", "validate_prefix"]
