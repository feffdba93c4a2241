"""Error codes shared by every process, and the HTTP status each one maps to.

A `ToruaError` (exported as `torua.ToruaError`) travels on the wire as `{"code", "message"}` and reaches users as
`{"error": {"code": ..., "message": ...}}` with the status below.
"""

from __future__ import annotations

import warnings
from typing import Any

HTTP_STATUS: dict[str, int] = {
    "bad_request": 400,
    "unsupported_version": 400,
    "not_found": 404,
    "unknown_node": 404,
    "unknown_shard": 404,
    "unauthorized": 401,
    "forbidden": 403,
    "cross_origin": 403,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "fenced": 409,
    "value_too_large": 413,
    "uri_too_long": 414,
    "unsupported_media_type": 415,
    "too_many_requests": 429,
    "headers_too_large": 431,
    "not_implemented": 501,
    "unavailable": 503,
    "moved": 503,
    "stale_epoch": 503,
    "no_coordinator": 503,
    "timeout": 504,
    "internal": 500,
}

# Codes after which a router refreshes its shard map and tries again.
RETRYABLE = frozenset({"moved", "stale_epoch", "unavailable"})


class ToruaError(Exception):
    """An error with a stable code; `message` is for people."""

    def __init__(self, code: str, message: str, retry_after: float | None = None, fields: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after
        # what is wrong with each named input field (e.g. a setting), when there are several
        self.fields = fields or {}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields:
            out["fields"] = dict(self.fields)
        return out


def __getattr__(name: str) -> Any:
    """`TouraError`, the old misspelt name, still works for now, with a warning."""
    if name == "TouraError":
        warnings.warn("torua.protocol.errors.TouraError is deprecated; use torua.ToruaError", DeprecationWarning, stacklevel=2)
        return ToruaError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
