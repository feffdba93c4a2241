"""The public NATS API (BRIEF section 5) as the `nats.micro` service ``torua``.

Endpoints live under ``torua.api`` in queue group ``torua-gateway``, so every
gateway shares the load and `nats micro ls` / ``$SRV.PING`` find them. Payloads
are msgpack maps, or JSON when the request has ``Content-Type: application/json``
(the reply then is JSON too). Errors are ``{"error": {"code", "message"}}`` with
the ``Nats-Service-Error`` and ``Nats-Service-Error-Code`` headers.

nats.micro awaits each handler before taking the next message of an endpoint, so
handlers only parse and hand the work to a task; a slow shard never queues the
requests of every other shard behind it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Any, Awaitable, Callable

import msgpack
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from torua import __version__
from torua.gateway.service import Gateway
from torua.listing import MAX_LIMIT
from torua.protocol import subjects
from torua.protocol.errors import TouraError

log = logging.getLogger("torua.gateway.nats")

Handler = Callable[[Gateway, dict[str, Any], bool], Awaitable[dict[str, Any]]]


def wants_json(headers: dict[str, str] | None) -> bool:
    return bool(headers) and headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/json"  # type: ignore[union-attr]


def parse_payload(data: bytes, as_json: bool) -> dict[str, Any]:
    """The request body as a map; `bad_request` for anything else."""
    if not data:
        return {}
    try:
        body = json.loads(data) if as_json else msgpack.unpackb(data, raw=False)
    except (ValueError, UnicodeDecodeError):
        raise TouraError("bad_request", "payload is not valid JSON") from None
    except Exception:
        raise TouraError("bad_request", "payload is not valid msgpack (send JSON with header Content-Type: application/json)") from None
    if not isinstance(body, dict):
        raise TouraError("bad_request", "payload must be a map")
    return body


def encode_payload(body: dict[str, Any], as_json: bool) -> bytes:
    return json.dumps(body).encode() if as_json else msgpack.packb(body, use_bin_type=True)


def field(body: dict[str, Any], name: str, kind: type, default: Any = None, required: bool = False) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise TouraError("bad_request", f"missing field {name!r}")
        return default
    value = body[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise TouraError("bad_request", f"field {name!r} must be {kind.__name__}")
    return value


def value_of(body: dict[str, Any], as_json: bool) -> bytes:
    """`value` (bytes in msgpack, text in JSON) or `value_b64`, exactly one of them."""
    has_value, has_b64 = body.get("value") is not None, body.get("value_b64") is not None
    if has_value == has_b64:
        raise TouraError("bad_request", "give exactly one of value and value_b64")
    if has_b64:
        try:
            return base64.b64decode(field(body, "value_b64", str), validate=True)
        except (binascii.Error, ValueError):
            raise TouraError("bad_request", "value_b64 is not valid base64") from None
    value = body["value"]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes) and not as_json:
        return value
    raise TouraError("bad_request", "value must be bytes (msgpack) or text (JSON)")


async def kv_get(gw: Gateway, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    key = field(body, "key", str, required=True)
    value, content_type = await gw.kv_get(key)
    out: dict[str, Any] = {"key": key, "content_type": content_type}
    if not as_json:
        out["value"] = value
    else:
        try:
            out["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            out["value_b64"] = base64.b64encode(value).decode()
    return out


async def kv_put(gw: Gateway, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    key = field(body, "key", str, required=True)
    await gw.kv_put(key, value_of(body, as_json), field(body, "content_type", str, "application/octet-stream"))
    return {"ok": True}


async def kv_delete(gw: Gateway, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    await gw.kv_delete(field(body, "key", str, required=True))
    return {"ok": True}


async def kv_list(gw: Gateway, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    limit = field(body, "limit", int, 100)
    if not 1 <= limit <= MAX_LIMIT:
        raise TouraError("bad_request", f"limit must be from 1 to {MAX_LIMIT}")
    return await gw.kv_list(field(body, "prefix", str, ""), limit, field(body, "cursor", str))


async def cluster_info(gw: Gateway, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    return await gw.cluster_info()


async def cluster_health(gw: Gateway, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    return await gw.health()


async def cluster_shards(gw: Gateway, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    return gw.shards()


async def cluster_nodes(gw: Gateway, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    return await gw.nodes()


ENDPOINTS: dict[str, Handler] = {
    "kv.get": kv_get,
    "kv.put": kv_put,
    "kv.delete": kv_delete,
    "kv.list": kv_list,
    "cluster.info": cluster_info,
    "cluster.health": cluster_health,
    "cluster.shards": cluster_shards,
    "cluster.nodes": cluster_nodes,
}


class NatsApi:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.service: Service | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.service = await add_service(
            self.gateway.nc, name="torua", version=__version__, description="Torua key-value and cluster API"
        )
        group = self.service.add_group(name=subjects.API, queue_group=subjects.API_QUEUE)
        for subject, handler in ENDPOINTS.items():
            await group.add_endpoint(name=subject.replace(".", "_"), subject=subject, handler=self._spawner(handler))

    def _spawner(self, handler: Handler) -> Callable[[Request], Awaitable[None]]:
        async def spawn(request: Request) -> None:
            task = asyncio.ensure_future(self._answer(handler, request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return spawn

    async def _answer(self, handler: Handler, request: Request) -> None:
        as_json = wants_json(request.headers)
        try:
            result = await handler(self.gateway, parse_payload(request.data, as_json), as_json)
            await request.respond(encode_payload(result, as_json))
            return
        except TouraError as exc:
            error = exc
        except Exception:
            log.exception("NATS API %s failed", request.subject)
            error = TouraError("internal", "internal error; see the gateway log")
        try:
            await request.respond_error(
                str(error.http_status), error.message, data=encode_payload({"error": error.to_dict()}, as_json)
            )
        except Exception as exc:  # the requester is gone; nothing more to do
            log.debug("could not answer %s: %s", request.subject, exc)

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
        for task in list(self._tasks):
            task.cancel()


async def start_nats_api(gateway: Gateway) -> NatsApi:
    api = NatsApi(gateway)
    await api.start()
    return api
