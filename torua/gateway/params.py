"""The inputs of a gateway operation, declared once (`torua.gateway.endpoints`) and
checked once, alike for both front-ends: REST (`torua.gateway.http`) and the NATS
API (`torua.gateway.nats_api`). Pure: no aiohttp, no nats, no asyncio.

A `Param` is one named input: its type and bounds (a `Kind`), whether it is
required or else its default, and where REST reads it (`In`: the path, the query,
a field of the JSON body, the whole JSON body, the raw body or its Content-Type,
or a body of JSON lines).
Over NATS every input is a field of the payload (named `nats` where that name
differs) or, for a whole-body input, the payload itself.

A front-end gathers the raw values, refuses unknown fields (`check_fields`) and
calls `bind`, which gives the Gateway method's keyword arguments or raises
`bad_request` naming the input (in ``message`` and ``fields``), before anything
changes. Text from a path, a query or a header is parsed (``"10"`` -> 10, ``"true"``
-> True), a JSON or msgpack value must already have its type; an empty text, or a
null, counts as absent:

>>> limit = Param("limit", Integer(1, 1000), default=100, rest=In.QUERY)
>>> bind((limit,), {"limit": "10"}, from_text={"limit"})
{'limit': 10}
>>> bind((limit,), {"limit": ""}, from_text={"limit"})
{'limit': 100}
>>> bind((limit,), {"limit": 0})
Traceback (most recent call last):
torua.protocol.errors.ToruaError: bad_request: limit must be an integer from 1 to 1000, not 0
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Collection, Iterable, Mapping

from torua.graph.rules import validate_vertex_id
from torua.kv_rules import validate_key
from torua.protocol.errors import ToruaError

Schema = dict[str, Any]


class In(enum.Enum):
    """Where the REST API reads an input (NATS: always the payload)."""

    PATH = "path"  # a {name} of the route's path
    QUERY = "query"  # ?name=
    BODY = "body"  # a field of the JSON object body
    WHOLE_BODY = "whole_body"  # the JSON object body itself (NATS: the whole payload)
    RAW_BODY = "raw_body"  # the request's bytes (NATS: "value" text or bytes, or "value_b64")
    CONTENT_TYPE = "content_type"  # the raw body's Content-Type header (NATS: a field)
    NDJSON = "ndjson"  # the request's body as JSON lines, streamed (NATS: a field, the lines as text or bytes)


class Invalid(Exception):
    """A value its `Kind` does not accept (`bind` says which and why)."""


class Kind:
    """A type with its bounds: what `check` accepts from JSON or msgpack, what `parse`
    makes of text (a path segment, a query parameter, a header), how the OpenAPI
    document shows it (`schema`) and how an error names it (`describe`)."""

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be read from text")

    def schema(self) -> Schema:
        raise NotImplementedError

    @property
    def from_text(self) -> bool:
        """Whether `parse` reads it from text (so it may come from a path, query or header)."""
        return type(self).parse is not Kind.parse


@dataclass(frozen=True)
class Text(Kind):
    min_length: int = 0
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ""  # a regular expression the whole text must match (give the param a `what`)

    def describe(self) -> str:
        if self.choices:
            return _either(self.choices)
        if self.pattern:
            return f"a string matching {self.pattern}"
        if self.max_length is not None:
            return f"a string of {self.min_length} to {self.max_length} characters"
        return "a non-empty string" if self.min_length else "a string"

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or len(value) < self.min_length:
            raise Invalid
        if (self.max_length is not None and len(value) > self.max_length) or (self.choices and value not in self.choices):
            raise Invalid
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise Invalid
        return value

    def parse(self, text: str) -> str:
        return self.check(text)

    def schema(self) -> Schema:
        out: Schema = {"type": "string"}
        if self.choices:
            out["enum"] = list(self.choices)
        if self.min_length:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern:
            out["pattern"] = f"^{self.pattern}$"
        return out


@dataclass(frozen=True)
class Key(Text):
    """A key (torua.kv_rules: 1-1024 bytes of UTF-8, no NUL): REST reads it from the raw,
    still percent-encoded path (`torua.gateway.paths`), so it may hold slashes and any
    character; `route_pattern` is what aiohttp's route lets through to be checked."""

    min_length: int = 1
    route_pattern: str = r"[\s\S]+"

    def describe(self) -> str:
        return "a key (a non-empty string)"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid
        return validate_key(value)  # its own words: "key must not be empty", as the REST path's

    def parse(self, text: str) -> str:
        return self.check(text)


@dataclass(frozen=True)
class VertexId(Key):
    """A graph vertex id: a key's rules (torua.graph.rules.validate_vertex_id), in an error
    named as the param is (``src must not be empty``); over REST a path param is read
    from the raw path like a key."""

    name: str = "id"

    def describe(self) -> str:
        return "a vertex id (1 to 1024 bytes of UTF-8, no NUL)"

    def check(self, value: Any) -> str:
        return validate_vertex_id(value, self.name)


@dataclass(frozen=True)
class VertexIds(Kind):
    """A list of vertex ids, at least one and at most `max_items`."""

    max_items: int = 1000

    def describe(self) -> str:
        return f"a list of 1 to {self.max_items} vertex ids"

    def check(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not 1 <= len(value) <= self.max_items:
            raise Invalid
        return [validate_vertex_id(v, "each vertex id") for v in value]

    def schema(self) -> Schema:
        return {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": self.max_items}


@dataclass(frozen=True)
class Number(Kind):
    """A finite number (an integer is taken as one)."""

    def describe(self) -> str:
        return "a number"

    def check(self, value: Any) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise Invalid
        return float(value)

    def schema(self) -> Schema:
        return {"type": "number"}


@dataclass(frozen=True)
class Numbers(Kind):
    """A list of finite numbers (a vector; its length is the graph's to check)."""

    def describe(self) -> str:
        return "a list of numbers"

    def check(self, value: Any) -> list[float]:
        if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value):
            raise Invalid
        return [float(x) for x in value]

    def schema(self) -> Schema:
        return {"type": "array", "items": {"type": "number"}}


class NdjsonBody:
    """The body of an NDJSON request as it arrives: `chunks` yields its bytes piece by
    piece (REST streams them from the connection, with a size limit; NATS has them whole)."""

    def __init__(self, chunks: Callable[[], AsyncIterator[bytes]]) -> None:
        self._chunks = chunks

    @classmethod
    def whole(cls, data: bytes) -> "NdjsonBody":
        async def once() -> AsyncIterator[bytes]:
            yield data

        return cls(once)

    def chunks(self) -> AsyncIterator[bytes]:
        return self._chunks()


@dataclass(frozen=True)
class Ndjson(Kind):
    """JSON lines (REST: the body, streamed; NATS: a field holding the lines as text,
    or bytes in msgpack)."""

    def describe(self) -> str:
        return "JSON lines as text"

    def check(self, value: Any) -> NdjsonBody:
        if isinstance(value, NdjsonBody):
            return value
        if isinstance(value, str):
            try:
                return NdjsonBody.whole(value.encode("utf-8"))
            except UnicodeEncodeError:
                raise Invalid from None
        if isinstance(value, bytes):
            return NdjsonBody.whole(value)
        raise Invalid

    def schema(self) -> Schema:
        return {"type": "string", "description": "one JSON document per line"}


_DIGITS = re.compile(r"[0-9]{1,20}")  # bounded: no 4300-digit int() from a query string


@dataclass(frozen=True)
class Integer(Kind):
    minimum: int | None = None
    maximum: int | None = None

    def describe(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"an integer from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"an integer of at least {self.minimum}"
        return "an integer"

    def check(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise Invalid
        return value

    def parse(self, text: str) -> int:
        if not _DIGITS.fullmatch(text):
            raise Invalid
        return self.check(int(text))

    def schema(self) -> Schema:
        out: Schema = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass(frozen=True)
class Boolean(Kind):
    def describe(self) -> str:
        return "true or false"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid
        return value

    def parse(self, text: str) -> bool:
        """``true``/``1`` or ``false``/``0``, any case (an empty text is absent: its default)."""
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise Invalid

    def schema(self) -> Schema:
        return {"type": "boolean"}


@dataclass(frozen=True)
class TextList(Kind):
    """A list of non-empty strings (node ids, ...)."""

    min_items: int = 0

    def describe(self) -> str:
        return "a non-empty list of non-empty strings" if self.min_items else "a list of non-empty strings"

    def check(self, value: Any) -> list[str]:
        if not isinstance(value, list) or len(value) < self.min_items or not all(isinstance(v, str) and v for v in value):
            raise Invalid
        return list(value)

    def schema(self) -> Schema:
        out: Schema = {"type": "array", "items": {"type": "string", "minLength": 1}}
        if self.min_items:
            out["minItems"] = self.min_items
        return out


@dataclass(frozen=True)
class JsonObject(Kind):
    """An object with string keys (its values were already checked by the codec: finite, bounded)."""

    def describe(self) -> str:
        return "an object"

    def check(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise Invalid
        return value

    def schema(self) -> Schema:
        return {"type": "object"}


@dataclass(frozen=True)
class Value(Kind):
    """A stored value: bytes (REST: the raw body; NATS: see `torua.gateway.nats_api.value_of`)."""

    def describe(self) -> str:
        return "bytes"

    def check(self, value: Any) -> bytes:
        if not isinstance(value, bytes):
            raise Invalid
        return value

    def schema(self) -> Schema:
        return {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class Param:
    """One input of an operation, and the Gateway method's keyword argument of the same name."""

    name: str
    kind: Kind
    required: bool = False
    default: Any = None
    rest: In | None = In.BODY  # None: never read over REST (each route fixes it, e.g. drain's on)
    nats: str = ""  # its name in a NATS payload, when not `name` (e.g. "node" for node_id)
    doc: str = ""
    what: str = ""  # how an error names what it must be, when the kind's words are too general
    schema_extra: Mapping[str, Any] = field(default_factory=dict)  # for the OpenAPI document only
    arg: str = ""  # the Gateway method's keyword argument, when not `name` (a name Python reserves: "from")

    @property
    def nats_name(self) -> str:
        return self.nats or self.name

    @property
    def argument(self) -> str:
        return self.arg or self.name

    @property
    def must_be(self) -> str:
        return self.what or self.kind.describe()

    def schema(self) -> Schema:
        """Its JSON schema in the OpenAPI document."""
        out = {**self.kind.schema(), **self.schema_extra}
        if self.doc:
            out["description"] = self.doc
        if self.default is not None:
            out["default"] = self.default
        return out


def bind(
    params: Iterable[Param], values: Mapping[str, Any], from_text: Collection[str] = (), fixed: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The checked keyword arguments of a call: `values` by param name (those named
    in `from_text` are text to parse), `fixed` as given (a route's own values)."""
    out: dict[str, Any] = {}
    for p in params:
        if fixed is not None and p.name in fixed:
            out[p.name] = fixed[p.name]
            continue
        value = values.get(p.name)
        text = p.name in from_text
        if value is None or (text and value == ""):
            if p.required:
                raise ToruaError("bad_request", f"{p.name} is required: {p.must_be}", fields={p.name: "is required"})
            out[p.name] = p.default
            continue
        try:
            out[p.name] = p.kind.parse(value) if text else p.kind.check(value)
        except Invalid:
            what = f"must be {p.must_be}, not {_shown(value, text)}"
            raise ToruaError("bad_request", f"{p.name} {what}", fields={p.name: what}) from None
    return out


def check_fields(body: Mapping[Any, Any], allowed: Collection[str], expected: str | None = None) -> None:
    """Refuse unknown fields, so a typo (``"vaule"``) is an error rather than silently ignored."""
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        said = expected if expected is not None else ", ".join(sorted(allowed)) or "none"
        raise ToruaError("bad_request", f"unknown field(s) {', '.join(unknown)}; expected {said}", fields={k: "unknown field" for k in unknown})


def expected_fields(required: list[str], optional: list[str]) -> str:
    """The fields a call takes, in words: ``shard_id and node_id``, ``kind and optionally body``.

    >>> expected_fields(["nodes", "maintenance"], ["drain"])
    'nodes and maintenance, and optionally drain'
    """
    if not required and not optional:
        return "none"
    said = _both(required)
    if optional:
        said += (", and optionally " if len(required) > 1 else " and optionally " if required else "optionally ") + _either(optional)
    return said


def _both(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}" if names else ""


def _either(names: Iterable[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", bytes: "bytes", list: "a list", dict: "an object"}


def _shown(value: Any, text: bool) -> str:
    """A bad value, briefly: the text as sent, a number, or the JSON type."""
    if text or isinstance(value, str):
        return repr(value[:40])
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list) and not value:
        return "an empty list"
    return _TYPE_NAMES.get(type(value), type(value).__name__)
