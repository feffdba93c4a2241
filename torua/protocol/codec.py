"""One codec for every message on the wire.

Messages are frozen dataclasses. `encode` turns one into msgpack (or JSON) with the
protocol version in field `v`; `decode` checks the version and the type of every
field and raises `TouraError("bad_request"|"unsupported_version")` on anything else,
so a garbage message never reaches a handler.

>>> from torua.protocol.messages import KvRequest
>>> decode(KvRequest, encode(KvRequest(op="get", shard_id=3, epoch=7, key="a")))
KvRequest(op='get', shard_id=3, epoch=7, key='a', ...)
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from functools import cache
from typing import Any, TypeVar

import msgpack

from torua.protocol.errors import TouraError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

T = TypeVar("T")


def to_dict(msg: Any) -> dict[str, Any]:
    """The message as plain data (nested dataclasses become dicts), with `v`."""
    out: dict[str, Any] = {"v": PROTOCOL_VERSION}
    for f in dataclasses.fields(msg):
        out[f.name] = _plain(getattr(msg, f.name))
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def encode(msg: Any) -> bytes:
    return msgpack.packb(to_dict(msg), use_bin_type=True)


def encode_json(msg: Any) -> bytes:
    return json.dumps(to_dict(msg)).encode()


def unpack(data: bytes) -> Any:
    """msgpack bytes to plain data; `bad_request` on garbage."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise TouraError("bad_request", f"malformed msgpack: {exc}") from None


def decode(cls: type[T], data: bytes) -> T:
    return from_dict(cls, unpack(data))


def from_dict(cls: type[T], obj: Any) -> T:
    """Build `cls` from plain data, checking the protocol version and every field."""
    if not isinstance(obj, dict):
        raise TouraError("bad_request", f"{cls.__name__}: expected a map, got {type(obj).__name__}")
    version = obj.get("v", None)
    if version not in SUPPORTED_VERSIONS:
        raise TouraError(
            "unsupported_version",
            f"{cls.__name__}: protocol version {version!r} is not supported (this process speaks {sorted(SUPPORTED_VERSIONS)})",
        )
    return _build(cls, obj, cls.__name__)


@cache
def _hints(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


def _build(cls: type[T], obj: dict[str, Any], where: str) -> T:
    kwargs: dict[str, Any] = {}
    for name, hint, required in _hints(cls):
        if name in obj:
            kwargs[name] = _check(hint, obj[name], f"{where}.{name}")
        elif required:
            raise TouraError("bad_request", f"{where}: missing field {name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise TouraError("bad_request", f"{where}: {exc}") from None


def _check(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check(option, value, where)
            except TouraError:
                continue
        raise TouraError("bad_request", f"{where}: unexpected {type(value).__name__}")
    if hint is type(None):
        if value is None:
            return None
        raise TouraError("bad_request", f"{where}: expected null")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TouraError("bad_request", f"{where}: expected a list")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise TouraError("bad_request", f"{where}: expected {len(args)} items")
            return tuple(_check(a, v, where) for a, v in zip(args, value))
        item = args[0] if args else Any
        checked = [_check(item, v, where) for v in value]
        return tuple(checked) if origin is tuple else checked
    if origin is dict:
        if not isinstance(value, dict):
            raise TouraError("bad_request", f"{where}: expected a map")
        kt, vt = typing.get_args(hint) or (Any, Any)
        return {_check(kt, k, where): _check(vt, v, where) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise TouraError("bad_request", f"{where}: expected a map")
        return _build(hint, value, where)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TouraError("bad_request", f"{where}: expected a number")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TouraError("bad_request", f"{where}: expected an integer")
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise TouraError("bad_request", f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    raise TypeError(f"codec cannot check {hint!r}")
