"""Reading a key out of a request path, strictly.

The key is everything after ``/data/`` in the raw (still percent-encoded) path, so
``/data/a%2Fb`` and ``/data/a/b`` both mean the key ``a/b``, and the query string
is never part of it. A ``%`` not followed by two hex digits, bytes that are not
UTF-8, or an invalid key (`torua.keys.validate_key`) are `bad_request`.

>>> key_from_raw_path("/data/key-with-spaces%20here?x=1")
'key-with-spaces here'
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from torua.keys import validate_key
from torua.protocol.errors import ToruaError

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def percent_decode(raw: str) -> str:
    """Strict percent-decoding to UTF-8 text (no '+' for space: this is a path)."""
    if _BAD_ESCAPE.search(raw):
        raise ToruaError("bad_request", "malformed percent-encoding in the key: '%' must be followed by two hex digits")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        # Encode errors come from raw non-UTF-8 bytes the HTTP parser kept as surrogates.
        raise ToruaError("bad_request", "the key is not valid UTF-8") from None


def key_from_raw_path(raw_path: str, prefix: str = "/data/", suffix: str = "") -> str:
    """The validated key between `prefix` and `suffix` of a raw request path."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith(prefix):
        raise ToruaError("bad_request", f"expected a path under {prefix}")
    raw = path[len(prefix) :]
    if suffix:
        if not raw.endswith(suffix):
            raise ToruaError("bad_request", f"expected a path ending in {suffix}")
        raw = raw[: -len(suffix)]
    return validate_key(percent_decode(raw))
