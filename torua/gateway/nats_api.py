"""The public NATS API (BRIEF section 5) as the `nats.micro` service ``torua``.

Endpoints live under ``torua.api`` in queue group ``torua-gateway``, so every
gateway shares the load and ``nats micro ls`` / ``$SRV.PING`` find them: one for
each endpoint declared with a subject in `torua.gateway.endpoints`
(``kv.get|put|delete|list``, ``cluster.info|health|shards|nodes|node|explain|...``),
whose inputs are checked by the same declaration as the REST API's.

Payloads are msgpack maps, or JSON when the request has the header
``Content-Type: application/json`` (the reply is JSON too)::

    nats req torua.api.kv.put '{"key":"a","value":"hello"}' -H Content-Type:application/json

In JSON a value is ``value`` (UTF-8 text) or ``value_b64`` (any bytes); in msgpack
``value`` is bytes. Errors are ``{"error": {"code", "message"}}`` with the
``Nats-Service-Error`` (message) and ``Nats-Service-Error-Code`` (HTTP-like status,
e.g. ``"404"``) headers. A request that is malformed in any way is refused before
anything changes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from typing import Any, Awaitable, Callable

import msgpack
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from torua import __version__
from torua.api_keys import check_size
from torua.bus import header_value
from torua.gateway.endpoints import ENDPOINTS, Endpoint, call
from torua.gateway.params import Value, bind, check_fields
from torua.gateway.service import Gateway
from torua.protocol import subjects
from torua.protocol.codec import check_plain, loads_json
from torua.protocol.errors import ToruaError

log = logging.getLogger("torua.gateway.nats")

Body = dict[str, Any]
# (gateway, the payload as it came, as JSON, the request's Authorization header)
Handler = Callable[[Gateway, bytes, bool, "str | None"], Awaitable[Body]]


# ------------------------------------------------------------ payloads (pure)


def wants_json(headers: dict[str, str] | None) -> bool:
    """True when the request says ``Content-Type: application/json`` (any case, any parameters)."""
    value = header_value(headers, "content-type")
    return value is not None and value.split(";")[0].strip().lower() == "application/json"


def parse_payload(data: bytes, as_json: bool) -> Body:
    """The request body as a map; an empty payload is an empty map; `bad_request` otherwise,
    naming the field for a value the wire cannot carry (`torua.protocol.codec.check_plain`)."""
    if not data:
        return {}
    if as_json:
        body = loads_json(data, "payload")  # strict: no NaN, no integer msgpack cannot carry, ...
    else:
        try:
            body = msgpack.unpackb(data, raw=False)
        except Exception:  # msgpack raises several unrelated types
            raise ToruaError("bad_request", "payload is not valid msgpack (for JSON, send header Content-Type: application/json)") from None
        check_plain(body)  # the same rules as JSON: finite numbers, UTF-8 text, bounded nesting
    if not isinstance(body, dict):
        raise ToruaError("bad_request", "payload must be a map")
    return body


def encode_payload(body: Body, as_json: bool) -> bytes:
    return json.dumps(body).encode() if as_json else msgpack.packb(body, use_bin_type=True)


def value_of(body: Body, as_json: bool, name: str = "value") -> bytes:
    """`value` (bytes in msgpack, text in either) or `value_b64`: exactly one of them."""
    b64 = f"{name}_b64"
    has_value, has_b64 = body.get(name) is not None, body.get(b64) is not None
    if has_value == has_b64:
        raise ToruaError("bad_request", f"give exactly one of {name} and {b64}")
    if has_b64:
        encoded = body[b64]
        if not isinstance(encoded, str):
            raise ToruaError("bad_request", f"{b64} must be a string, not {type(encoded).__name__}")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ToruaError("bad_request", f"{b64} is not valid base64") from None
    value = body[name]
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:  # JSON allows lone surrogates ("\ud800"); UTF-8 does not
            raise ToruaError("bad_request", f"{name} is not valid UTF-8 text; use {b64}") from None
    if isinstance(value, bytes) and not as_json:
        return value
    raise ToruaError("bad_request", f"{name} must be text (or bytes in msgpack); use {b64} for bytes in JSON")


def value_reply(key: str, value: bytes, content_type: str, as_json: bool) -> Body:
    """msgpack carries bytes as they are; JSON gets text when it is UTF-8, base64 otherwise."""
    out: Body = {"key": key, "content_type": content_type}
    if not as_json:
        out["value"] = value
        return out
    try:
        out["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        out["value_b64"] = base64.b64encode(value).decode()
    return out


# ------------------------------------------------------------------ handlers


def nats_handler(endpoint: Endpoint) -> Handler:
    """The handler of `endpoint`'s subject: the API key checked, then the payload's fields (unknown ones refused)
    checked by the declaration with the same `bind` as REST, the Gateway method called,
    its result as the reply (``{"ok": true}`` for a call that answers nothing)."""
    whole = endpoint.whole
    allowed, expected = endpoint.nats_fields(), endpoint.nats_expected()
    values_in = [p for p in endpoint.params if isinstance(p.kind, Value)]

    async def handle(gw: Gateway, data: bytes, as_json: bool, authorization: str | None) -> Body:
        # the API key first (401, 403 for its role, 429, 413 for its size), before the payload is read
        api_key = await gw.authenticate(authorization, endpoint.name, "nats")
        check_size(api_key, len(data))
        body = parse_payload(data, as_json)
        if whole is not None:
            values: Body = {whole.name: body}
        else:
            check_fields(body, allowed, expected)
            values = {p.name: body.get(p.nats_name) for p in endpoint.params}
            values.update((p.name, value_of(body, as_json, p.nats_name)) for p in values_in)
        kwargs = bind(endpoint.params, values)
        result = await call(gw, endpoint, kwargs, who="nats", key=api_key)
        if endpoint.reply.kind == "empty":
            return {"ok": True}
        if endpoint.reply.kind == "value":
            value, content_type = result
            return value_reply(kwargs["key"], value, content_type, as_json)
        return result

    return handle


# Subject (under torua.api.) -> handler, for every declared endpoint that has one.
HANDLERS: dict[str, Handler] = {e.nats: nats_handler(e) for e in ENDPOINTS if e.nats is not None}


async def answer(gw: Gateway, handler: Handler, data: bytes, headers: dict[str, str] | None) -> tuple[bytes, ToruaError | None]:
    """Run one request: (reply payload, the error it carries or None). Never raises."""
    as_json = wants_json(headers)
    try:
        return encode_payload(await handler(gw, data, as_json, header_value(headers, "authorization")), as_json), None
    except ToruaError as exc:
        error = exc
    except Exception:
        log.exception("NATS API request failed")
        error = ToruaError("internal", "internal error; see the gateway log")
    return encode_payload({"error": error.to_dict()}, as_json), error


def reply_headers(request_headers: dict[str, str] | None) -> dict[str, str]:
    return {"Content-Type": "application/json" if wants_json(request_headers) else "application/msgpack"}


# ------------------------------------------------------------------ service


class NatsApi:
    """The micro service. nats.micro awaits a handler before it takes the next message
    of that endpoint, so each request runs in its own task: one slow shard must not
    queue every other request behind it. (So the service's own per-endpoint stats
    count requests but not our error replies or their latency.)"""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.service: Service | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.service = await add_service(
            self.gateway.nc,
            name="torua",
            version=__version__,
            description="Torua key-value and cluster API (msgpack, or JSON with Content-Type: application/json)",
        )
        group = self.service.add_group(name=subjects.API, queue_group=subjects.API_QUEUE)
        for subject, handler in HANDLERS.items():
            await group.add_endpoint(name=subject.replace(".", "_"), subject=subject, handler=self._spawner(handler))

    def _spawner(self, handler: Handler) -> Callable[[Request], Awaitable[None]]:
        async def spawn(request: Request) -> None:
            task = asyncio.ensure_future(self._serve(handler, request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return spawn

    async def _serve(self, handler: Handler, request: Request) -> None:
        started = time.perf_counter()
        payload, error = await answer(self.gateway, handler, request.data, request.headers)
        # The endpoint's own subject (no wildcards), e.g. "kv.get": a bounded label.
        op = request.subject.removeprefix(subjects.API + ".")
        self.gateway.metrics.observe_nats(op, "ok" if error is None else error.code, time.perf_counter() - started)
        headers = reply_headers(request.headers)
        try:
            if error is None:
                await request.respond(payload, headers=headers)
            else:
                # A header value must be one line of printable text.
                description = "".join(c if c.isprintable() else "?" for c in " ".join(error.message.split())) or error.code
                await request.respond_error(str(error.http_status), description, data=payload, headers=headers)
        except Exception as exc:  # no reply subject (a plain publish) or the connection is gone
            log.debug("could not answer %s: %s", request.subject, exc)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking requests, give those in flight `grace` seconds, cancel the rest."""
        if self.service is not None:
            await self.service.stop()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
