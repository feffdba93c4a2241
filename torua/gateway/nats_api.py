"""The public NATS API (BRIEF section 5) as the `nats.micro` service ``torua``.

Endpoints live under ``torua.api`` in queue group ``torua-gateway``, so every
gateway shares the load and ``nats micro ls`` / ``$SRV.PING`` find them:
``kv.get|put|delete|list``, ``cluster.info|health|shards|nodes|node|explain``,
``cluster.config`` / ``cluster.config.set``, ``cluster.broadcast``, ``cluster.rebalance``,
``cluster.assign``, ``cluster.drain``, ``cluster.evacuate`` and ``cluster.maintenance``:
the REST API's cluster calls.

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
from torua.gateway.service import Gateway
from torua.protocol import subjects
from torua.protocol.codec import check_plain, loads_json
from torua.protocol.errors import ToruaError

# Shard numbers fit msgpack's integers with room to spare (a cluster has at most 4096).
MAX_SHARD_NUMBER = 1 << 31

log = logging.getLogger("torua.gateway.nats")

Body = dict[str, Any]
Handler = Callable[[Gateway, Body, bool], Awaitable[Body]]


# ------------------------------------------------------------ payloads (pure)


def wants_json(headers: dict[str, str] | None) -> bool:
    """True when the request says ``Content-Type: application/json`` (any case, any parameters)."""
    for name, value in (headers or {}).items():
        if name.lower() == "content-type":
            return value.split(";")[0].strip().lower() == "application/json"
    return False


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


def check_fields(body: Body, allowed: frozenset[str]) -> None:
    """Refuse unknown fields, so a typo (``"vaule"``) is an error rather than silently ignored."""
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise ToruaError("bad_request", f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed)) or 'none'}")


def field(body: Body, name: str, kind: type, default: Any = None, required: bool = False) -> Any:
    """`body[name]` checked to be a `kind`; absent or null gives `default`."""
    value = body.get(name)
    if value is None:
        if required:
            raise ToruaError("bad_request", f"missing field {name!r}")
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ToruaError("bad_request", f"field {name!r} must be {_KIND_NAMES.get(kind, kind.__name__)}, not {type(value).__name__}")
    return value


_KIND_NAMES = {str: "a string", int: "an integer", bytes: "bytes"}


def value_of(body: Body, as_json: bool) -> bytes:
    """`value` (bytes in msgpack, text in either) or `value_b64`: exactly one of them."""
    has_value, has_b64 = body.get("value") is not None, body.get("value_b64") is not None
    if has_value == has_b64:
        raise ToruaError("bad_request", "give exactly one of value and value_b64")
    if has_b64:
        encoded = field(body, "value_b64", str)
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ToruaError("bad_request", "value_b64 is not valid base64") from None
    value = body["value"]
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:  # JSON allows lone surrogates ("\ud800"); UTF-8 does not
            raise ToruaError("bad_request", "value is not valid UTF-8 text; use value_b64") from None
    if isinstance(value, bytes) and not as_json:
        return value
    raise ToruaError("bad_request", "value must be text (or bytes in msgpack); use value_b64 for bytes in JSON")


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

KEY = frozenset({"key"})
GET = frozenset({"key", "consistency"})
PUT = frozenset({"key", "value", "value_b64", "content_type"})
LIST = frozenset({"prefix", "limit", "cursor"})
NONE: frozenset[str] = frozenset()


async def kv_get(gw: Gateway, body: Body, as_json: bool) -> Body:
    check_fields(body, GET)
    key = field(body, "key", str, required=True)
    value, content_type = await gw.kv_get(key, field(body, "consistency", str) or "strong")
    return value_reply(key, value, content_type, as_json)


async def kv_put(gw: Gateway, body: Body, as_json: bool) -> Body:
    check_fields(body, PUT)
    key = field(body, "key", str, required=True)
    value = value_of(body, as_json)
    await gw.kv_put(key, value, field(body, "content_type", str))
    return {"ok": True}


async def kv_delete(gw: Gateway, body: Body, as_json: bool) -> Body:
    check_fields(body, KEY)
    await gw.kv_delete(field(body, "key", str, required=True))
    return {"ok": True}


async def kv_list(gw: Gateway, body: Body, as_json: bool) -> Body:
    check_fields(body, LIST)
    return await gw.kv_list(field(body, "prefix", str, ""), field(body, "limit", int, 100), field(body, "cursor", str))


async def cluster_explain(gw: Gateway, body: Body, as_json: bool) -> Body:
    check_fields(body, frozenset({"shard"}))
    shard = field(body, "shard", int, required=True)
    if not 0 <= shard < MAX_SHARD_NUMBER:
        raise ToruaError("bad_request", f"shard must be a shard number (0, 1, ...), not {shard}")
    return await gw.explain(shard)


async def cluster_node(gw: Gateway, body: Body, as_json: bool) -> Body:
    """As GET /nodes/{id}: ``{"node": "n1"}``."""
    check_fields(body, frozenset({"node"}))
    return await gw.node(field(body, "node", str, required=True))


def _node_switch(call: Callable[[Gateway, str, bool], Awaitable[Body]], flag: str) -> Handler:
    """As POST (flag true, the default) or DELETE /nodes/{id}/drain|evacuate: ``{"node": "n1", "<flag>": true}``."""

    async def handle(gw: Gateway, body: Body, as_json: bool) -> Body:
        check_fields(body, frozenset({"node", flag}))
        on = body.get(flag, True)
        if not isinstance(on, bool):
            raise ToruaError("bad_request", f"field {flag!r} must be true or false")
        return await call(gw, field(body, "node", str, required=True), on)

    return handle


async def cluster_maintenance(gw: Gateway, body: Body, as_json: bool) -> Body:
    """As POST /nodes/maintenance: ``{"nodes": [...], "maintenance": true, "drain": false}``."""
    check_fields(body, frozenset({"nodes", "maintenance", "drain"}))
    return await gw.maintenance(body.get("nodes"), body.get("maintenance"), body.get("drain", False))


async def cluster_assign(gw: Gateway, body: Body, as_json: bool) -> Body:
    """As POST /shards/assign: ``{"shard_id": 3, "node_id": "n2"}``."""
    check_fields(body, frozenset({"shard_id", "node_id"}))
    return await gw.assign(body.get("shard_id"), body.get("node_id"))


async def cluster_config_set(gw: Gateway, body: Body, as_json: bool) -> Body:
    """The body names the settings to change (as PUT /cluster/config)."""
    return await gw.set_cluster_config(body)


async def cluster_rebalance(gw: Gateway, body: Body, as_json: bool) -> Body:
    """As POST /cluster/rebalance; ``{"dry_run": true}`` only says what it would do."""
    check_fields(body, frozenset({"dry_run"}))
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ToruaError("bad_request", "field 'dry_run' must be true or false")
    return await gw.rebalance(dry_run)


async def cluster_broadcast(gw: Gateway, body: Body, as_json: bool) -> Body:
    check_fields(body, frozenset({"kind", "body"}))
    return await gw.broadcast(body.get("kind"), body.get("body"))


def _cluster(call: Callable[[Gateway], Awaitable[Body]]) -> Handler:
    async def handle(gw: Gateway, body: Body, as_json: bool) -> Body:
        check_fields(body, NONE)
        return await call(gw)

    return handle


ENDPOINTS: dict[str, Handler] = {
    "kv.get": kv_get,
    "kv.put": kv_put,
    "kv.delete": kv_delete,
    "kv.list": kv_list,
    "cluster.info": _cluster(Gateway.cluster_info),
    "cluster.health": _cluster(Gateway.cluster_health),
    "cluster.shards": _cluster(Gateway.shards),
    "cluster.nodes": _cluster(Gateway.nodes),
    "cluster.explain": cluster_explain,
    "cluster.node": cluster_node,
    "cluster.drain": _node_switch(Gateway.drain, "drain"),
    "cluster.evacuate": _node_switch(Gateway.evacuate, "evacuate"),
    "cluster.maintenance": cluster_maintenance,
    "cluster.assign": cluster_assign,
    "cluster.config": _cluster(Gateway.cluster_config),
    "cluster.config.set": cluster_config_set,
    "cluster.broadcast": cluster_broadcast,
    "cluster.rebalance": cluster_rebalance,
}


async def answer(gw: Gateway, handler: Handler, data: bytes, headers: dict[str, str] | None) -> tuple[bytes, ToruaError | None]:
    """Run one request: (reply payload, the error it carries or None). Never raises."""
    as_json = wants_json(headers)
    try:
        return encode_payload(await handler(gw, parse_payload(data, as_json), as_json), as_json), None
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
        for subject, handler in ENDPOINTS.items():
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
