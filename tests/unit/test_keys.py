import pytest

from torua.keys import MAX_KEY_BYTES, shard_for_key, validate_key, validate_prefix
from torua.protocol.errors import ToruaError

GOOD = ["simple", "user@example.com", "path/to/resource", "key-with-spaces here", "数字",
        "very:long:key:with:many:colons:and:segments", "k" * MAX_KEY_BYTES, "é" * 512]
BAD = ["", "nul\x00inside", "k" * (MAX_KEY_BYTES + 1), "é" * 513, None, 5, b"bytes", "\ud800"]


@pytest.mark.parametrize("key", GOOD)
def test_valid_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize("key", BAD, ids=repr)
def test_invalid_keys(key):
    with pytest.raises(ToruaError) as err:
        validate_key(key)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize(
    "key,shards,expected",
    # mmh3 x86_32, seed 0, unsigned, of the UTF-8 bytes: fixed by the brief, so pinned here.
    [("simple", 16, __import__("mmh3").hash(b"simple", 0, signed=False) % 16), ("数字", 7, __import__("mmh3").hash("数字".encode(), 0, signed=False) % 7)],
)
def test_shard_for_key_is_murmur3_of_utf8(key, shards, expected):
    assert shard_for_key(key, shards) == expected


def test_keys_spread_over_all_shards():
    assert {shard_for_key(f"key-{i}", 16) for i in range(500)} == set(range(16))


@pytest.mark.parametrize("prefix", ["", *GOOD])
def test_valid_prefixes_are_keys_or_empty(prefix):
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", [k for k in BAD if k != ""], ids=repr)
def test_invalid_prefixes_are_refused_as_prefixes(prefix):
    with pytest.raises(ToruaError) as err:
        validate_prefix(prefix)
    assert err.value.code == "bad_request" and "prefix" in err.value.message
