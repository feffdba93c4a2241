"""What the REST gateway lets in, as pure functions over a request's parts (no I/O):
which bodies count as JSON, which browser requests from other sites are refused,
and which JSON error a request the HTTP parser could not read gets.

>>> is_json_media_type("application/json; charset=utf-8")
True
>>> is_json_media_type("text/plain")
False
>>> cross_origin_refusal("POST", {"Origin": "http://evil.example", "Host": "127.0.0.1:8080"})
'a page from http://evil.example may not POST here'
"""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import urlsplit

from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong

# Methods a browser page on another site may send without asking first, and that change nothing here.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The methods some route of the gateway answers (for Allow on a request that names no path).
SERVED_METHODS = "DELETE, GET, HEAD, POST, PUT"

# Security headers on every response: a stored value is never sniffed or run as a page of this origin.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'"}

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REQUEST_START = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) \S")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) \S+ HTTP/[0-9]\.[0-9]\r?")


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, any case, any parameters."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    if kind != "application" or not _TOKEN.fullmatch(subtype):
        return False
    return subtype == "json" or (subtype.endswith("+json") and len(subtype) > len("+json"))


# What JSON lines are sent as (the first is the common one); a JSON type is taken too.
NDJSON_MEDIA_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines"})


def is_ndjson_media_type(content_type: str | None) -> bool:
    """``application/x-ndjson`` and its aliases, or a JSON type, any case, any parameters.

    >>> is_ndjson_media_type("application/x-ndjson; charset=utf-8"), is_ndjson_media_type("application/x-www-form-urlencoded")
    (True, False)
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in NDJSON_MEDIA_TYPES or is_json_media_type(content_type)


def cross_origin_refusal(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a browser request from another origin may not change anything (None: it may).

    A browser says where a request comes from in ``Sec-Fetch-Site`` (or, older ones,
    ``Origin``); a page on another site (another port of localhost included) may
    POST a form or a body-less fetch here without asking first, which is how CSRF
    reaches operator endpoints such as ``POST /nodes/n1/drain``. Clients that are
    not browsers (curl, the CLI, SDKs) send neither header and are let through.
    """
    if method.upper() in SAFE_METHODS:
        return None
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.lower() in ("same-origin", "none"):
            return None
        return f"a {site[:40]} request from a browser page may not {method} here"
    origin = headers.get("Origin")
    if origin is None:
        return None
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        netloc = ""
    if origin != "null" and netloc and netloc.lower() == (headers.get("Host") or "").lower():
        return None
    return f"a page from {origin[:100]} may not {method} here"


def parse_failure(exc: BaseException | None, first_line: bytes, line_length: int, line_done: bool) -> tuple[int, str, str]:
    """(status, code, message) for a request aiohttp's parser refused with `exc`.

    `first_line` is the start of the request line the client sent, `line_length` its
    length so far and `line_done` whether it had ended: an over-long request line
    (414) is told apart from an over-long header (431), an unknown method in a
    well-formed request line (501) from bytes that are no HTTP at all (400).
    """
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        if (limit is not None and line_length > limit) or not line_done:
            return 414, "uri_too_long", f"the request line is longer than {limit or 'the limit of'} bytes"
        return 431, "headers_too_large", f"a header is longer than {limit or 'the limit of'} bytes"
    if isinstance(exc, HttpProcessingError) and "too many headers" in exc.message.lower():
        return 431, "headers_too_large", "the request has too many headers"
    if isinstance(exc, BadHttpMethod):
        if first_line.startswith(b"\x16\x03"):
            return 400, "bad_request", "this port speaks plain HTTP, not HTTPS"
        whole = line_length <= len(first_line)  # else only the start of the line was kept
        method = (_REQUEST_LINE.fullmatch(first_line) if whole else _REQUEST_START.match(first_line)) if line_done else None
        if method:
            name = method.group(1).decode("ascii")
            return 501, "not_implemented", f"method {name} is not implemented here; the API uses {SERVED_METHODS}"
        return 400, "bad_request", "malformed HTTP request: not a request line"
    reason = exc.message if isinstance(exc, HttpProcessingError) else ""
    reason = reason.split("\n", 1)[0].rstrip(":. ")[:200]
    return 400, "bad_request", f"malformed HTTP request: {reason}" if reason else "malformed HTTP request"
