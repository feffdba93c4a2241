"""What may be stored, and where: the rules for keys, values and content types,
and which shard a key belongs to.

Pure functions, called alike by the gateway (before it routes), `torua.Client`
(before it sends) and the node (before it writes), so that a request one of them
takes the others take too, and whatever a node stored the gateway can serve. Each
raises `ToruaError` with code `bad_request` (or `value_too_large`) saying what is
wrong.

>>> validate_put("greeting", b"hello", "", max_value_bytes=8)
('greeting', b'hello', 'application/octet-stream')
>>> validate_put("greeting", b"hello", "text/plain\\r\\nX-Evil: 1", max_value_bytes=8)
Traceback (most recent call last):
...
torua.protocol.errors.ToruaError: bad_request: content_type must be printable ASCII (no control characters such as CR or LF), at most 255 characters
>>> shard_for_key("user@example.com", 16)
12
"""

from __future__ import annotations

import mmh3

from torua.protocol.errors import ToruaError

MAX_KEY_BYTES = 1024
DEFAULT_MAX_VALUE_BYTES = 8 << 20
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_CONTENT_TYPE_CHARS = 255
# A page of a key listing holds at most this many keys (`limit`).
MAX_LIMIT = 1000
# NATS refuses a message above the server's max_payload (64 MiB at most, whatever
# it is set to). A put travels as one message: the value, plus the key (at most
# 1 KiB), the content type and the request's other fields, well under this.
ENVELOPE_BYTES = 64 << 10
NATS_PAYLOAD_CEILING = 64 << 20
# The largest --max-value-bytes any process accepts: a larger value could never
# reach a node through any NATS server.
MAX_VALUE_BYTES_CEILING = NATS_PAYLOAD_CEILING - ENVELOPE_BYTES


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
    """A listing's prefix follows the key rules except that it may be empty (lists everything).

    >>> validate_prefix("")
    ''
    """
    if prefix == "":
        return ""
    try:
        return validate_key(prefix)
    except ToruaError as exc:
        raise ToruaError("bad_request", exc.message.replace("key", "prefix", 1)) from None


def validate_value(value: object, max_value_bytes: int) -> bytes:
    """The value as bytes if it is bytes of at most `max_value_bytes`."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ToruaError("bad_request", "value must be bytes")
    size = value.nbytes if isinstance(value, memoryview) else len(value)
    if size > max_value_bytes:
        raise ToruaError("value_too_large", f"value is {size} bytes; the limit is {max_value_bytes}")
    return bytes(value)


def validate_content_type(content_type: object) -> str:
    """A content type the gateway can hand back in an HTTP header: printable ASCII
    (no CR, LF or other control character), at most 255 characters; none or empty
    is `application/octet-stream`."""
    if content_type is None or content_type == "":
        return DEFAULT_CONTENT_TYPE
    if not isinstance(content_type, str) or len(content_type) > MAX_CONTENT_TYPE_CHARS or not all(" " <= c <= "~" for c in content_type):
        raise ToruaError(
            "bad_request",
            f"content_type must be printable ASCII (no control characters such as CR or LF), at most {MAX_CONTENT_TYPE_CHARS} characters",
        )
    return content_type


def servable_content_type(content_type: object) -> str:
    """A stored content type as it may be served: itself, or `application/octet-stream`
    for one stored before these rules held (say, with CR/LF) that no HTTP header can carry."""
    try:
        return validate_content_type(content_type)
    except ToruaError:
        return DEFAULT_CONTENT_TYPE


def validate_put(key: object, value: object, content_type: object, max_value_bytes: int) -> tuple[str, bytes, str]:
    """Everything a put stores, checked: (key, value, content type), the content type
    defaulted. The one rule for gateway, client and node."""
    return validate_key(key), validate_value(value, max_value_bytes), validate_content_type(content_type)


def shard_for_key(key: str, num_shards: int) -> int:
    """The shard a key (or graph vertex id) belongs to: murmur3 of its UTF-8 bytes, seed 0."""
    return mmh3.hash(key.encode("utf-8"), 0, signed=False) % num_shards


def validate_shard(shard_id: int, num_shards: int) -> int:
    """`unknown_shard` unless 0 <= shard_id < num_shards; num_shards 0 (not known) checks nothing."""
    if num_shards and not 0 <= shard_id < num_shards:
        raise ToruaError("unknown_shard", f"shard {shard_id} does not exist (0..{num_shards - 1})")
    return shard_id


def validate_key_in_shard(key: str, shard_id: int, num_shards: int) -> str:
    """`bad_request` unless `key` belongs to `shard_id`, so no key is ever stored where
    reads of it do not look; num_shards 0 (not known) checks nothing."""
    if num_shards:
        home = shard_for_key(key, num_shards)
        if home != shard_id:
            raise ToruaError("bad_request", f"key {key!r} belongs to shard {home}, not {shard_id} (of {num_shards})")
    return key


def payload_room(max_value_bytes: int, max_payload: int) -> str | None:
    """Why a value of `max_value_bytes` cannot travel through a NATS server whose
    max_payload is `max_payload`, or None when it can."""
    if max_payload and max_value_bytes + ENVELOPE_BYTES > max_payload:
        return (
            f"max_value_bytes {max_value_bytes} plus {ENVELOPE_BYTES} bytes of envelope is more than the NATS server's "
            f"max_payload {max_payload}: raise max_payload (torua up sets 16 MiB) or lower max_value_bytes"
        )
    return None
