"""Reading a key and query parameters out of a request target, strictly.

The key is everything after ``/data/`` in the raw (still percent-encoded) path, so
``/data/a%2Fb`` and ``/data/a/b`` both mean the key ``a/b``, and the query string
is never part of it. A ``%`` not followed by two hex digits, bytes that are not
UTF-8, a raw ``#`` (a fragment is never sent; the key's ``#`` is ``%23``), or an
invalid key (`torua.keys.validate_key`) are `bad_request`. Every character a key
may hold arrives percent-encoded (``%0A`` for a newline), so every key is reachable.

>>> key_from_raw_path("/data/key-with-spaces%20here?x=1")
'key-with-spaces here'

Query parameters are decoded as strictly (``+`` is a space there, as in forms):

>>> query_params("/data?prefix=a%2Bb+c&limit=")
{'prefix': 'a+b c', 'limit': ''}
"""

from __future__ import annotations

import functools
import re
from typing import Collection
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
    return keys_from_raw_path(prefix + "{key}" + suffix, raw_path, ("key",))["key"]


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def keys_from_raw_path(template: str, raw_path: str, names: Collection[str], validate: bool = True) -> dict[str, str]:
    """The keys `names` of a raw request path laid out as `template`, each decoded
    strictly and validated (`torua.keys.validate_key`; with `validate` False, the
    caller checks them, e.g. as vertex ids); a key may hold slashes, any other
    ``{param}`` is one path segment (read by the router, not here).

    >>> keys_from_raw_path("/keys/{key}/location", "/keys/a%2Fb/c/location?x=1", ["key"])
    {'key': 'a/b/c'}
    """
    path = raw_path.split("?", 1)[0]
    if "#" in path:
        raise ToruaError("bad_request", "a '#' in the key must be sent percent-encoded, as %23")
    match = _layout(template, frozenset(names)).fullmatch(path)
    if match is None:
        raise ToruaError("bad_request", f"expected a path of the form {template}")
    decoded = {name: percent_decode(raw) for name, raw in match.groupdict().items()}
    return {name: validate_key(key) for name, key in decoded.items()} if validate else decoded


@functools.cache
def _layout(template: str, names: frozenset[str]) -> re.Pattern[str]:
    pattern, at = "", 0
    for param in _PARAM.finditer(template):
        pattern += re.escape(template[at : param.start()])
        pattern += f"(?P<{param[1]}>[\\s\\S]*)" if param[1] in names else "[^/]+"
        at = param.end()
    return re.compile(pattern + re.escape(template[at:]))


def query_params(raw_target: str) -> dict[str, str]:
    """The query parameters of a raw request target (``/data?prefix=a``), each
    strictly decoded (`percent_decode`, after ``+`` -> space); a name given twice is
    `bad_request`, as is a ``#`` (a fragment is never sent)."""
    query = raw_target.partition("?")[2]
    if "#" in query:
        raise ToruaError("bad_request", "a '#' in the query must be sent percent-encoded, as %23")
    out: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition("=")
        name, value = (_query_decode(raw, raw_name) for raw in (raw_name, raw_value))
        if name in out:
            raise ToruaError("bad_request", f"query parameter {name[:40]!r} is given more than once")
        out[name] = value
    return out


def _query_decode(raw: str, name: str) -> str:
    try:
        return percent_decode(raw.replace("+", " "))
    except ToruaError:
        raise ToruaError("bad_request", f"query parameter {name[:40]!r}: malformed percent-encoding or not UTF-8") from None
