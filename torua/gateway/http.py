"""The REST API (BRIEF section 4) on aiohttp: thin handlers over `Gateway`.

Every error, including aiohttp's own (404, 405, 413) and unexpected exceptions,
leaves as JSON ``{"error": {"code", "message"}}`` with its status; 503 always
carries Retry-After; a traceback only ever reaches the log.
"""

from __future__ import annotations

import json
import logging
import math

from aiohttp import web

from torua.gateway.openapi import openapi_document
from torua.gateway.paths import key_from_raw_path, percent_decode
from torua.gateway.service import Gateway
from torua.listing import MAX_LIMIT
from torua.protocol.errors import HTTP_STATUS, TouraError

log = logging.getLogger("torua.gateway.http")

GATEWAY = web.AppKey("gateway", Gateway)

_AIOHTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "value_too_large"}


def error_response(code: str, message: str, status: int | None = None, retry_after: float | None = None) -> web.Response:
    status = status or HTTP_STATUS.get(code, 500)
    headers = {}
    if status == 503:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TouraError as exc:
        return error_response(exc.code, exc.message, retry_after=exc.retry_after)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _AIOHTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        message = {404: f"no route for {request.method} {request.path}", 405: f"{request.method} is not allowed on {request.path}"}.get(
            exc.status, exc.reason
        )
        if exc.status == 413:
            limit = request.app[GATEWAY].config.max_value_bytes
            message = f"the body is larger than the {limit}-byte limit"
        return error_response(code, message, status=exc.status)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response("internal", "internal error; see the gateway log")


def _gw(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


async def get_data(request: web.Request) -> web.Response:
    value, content_type = await _gw(request).kv_get(key_from_raw_path(request.raw_path))
    return web.Response(body=value, headers={"Content-Type": content_type})


async def put_data(request: web.Request) -> web.Response:
    gw = _gw(request)
    key = key_from_raw_path(request.raw_path)
    limit = gw.config.max_value_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TouraError("value_too_large", f"value is {request.content_length} bytes; the limit is {limit}")
    body = await request.read()
    await gw.kv_put(key, body, request.headers.get("Content-Type", "application/octet-stream"))
    return web.Response(status=204)


async def delete_data(request: web.Request) -> web.Response:
    await _gw(request).kv_delete(key_from_raw_path(request.raw_path))
    return web.Response(status=204)


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise TouraError("bad_request", f"{name} must be an integer") from None


async def list_data(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 100)
    if not 1 <= limit <= MAX_LIMIT:
        raise TouraError("bad_request", f"limit must be from 1 to {MAX_LIMIT}")
    result = await _gw(request).kv_list(request.query.get("prefix", ""), limit, request.query.get("cursor") or None)
    return web.json_response(result)


async def key_location(request: web.Request) -> web.Response:
    return web.json_response(await _gw(request).location(key_from_raw_path(request.raw_path, "/keys/", "/location")))


async def shards(request: web.Request) -> web.Response:
    return web.json_response(_gw(request).shards())


async def assign(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise TouraError("bad_request", "body must be JSON") from None
    if not isinstance(body, dict):
        raise TouraError("bad_request", 'body must be {"shard_id": <integer>, "node_id": <string>}')
    result = await _gw(request).assign(body.get("shard_id"), body.get("node_id"))
    return web.json_response(result, status=202)


async def nodes(request: web.Request) -> web.Response:
    return web.json_response(await _gw(request).nodes())


async def node(request: web.Request) -> web.Response:
    return web.json_response(await _gw(request).node(percent_decode(request.match_info["node_id"])))


async def cluster_info(request: web.Request) -> web.Response:
    return web.json_response(await _gw(request).cluster_info())


async def cluster_health(request: web.Request) -> web.Response:
    return web.json_response(await _gw(request).health())


async def health(request: web.Request) -> web.Response:
    return web.json_response(_gw(request).gateway_health())


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def make_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[errors_as_json], client_max_size=gateway.config.max_value_bytes + 1)
    app[GATEWAY] = gateway
    app.router.add_get("/data", list_data)
    app.router.add_get("/data/{key:.*}", get_data)
    app.router.add_put("/data/{key:.*}", put_data)
    app.router.add_delete("/data/{key:.*}", delete_data)
    app.router.add_get("/keys/{key:.*}", key_location)
    app.router.add_get("/shards", shards)
    app.router.add_post("/shards/assign", assign)
    app.router.add_get("/nodes", nodes)
    app.router.add_get("/nodes/{node_id}", node)
    app.router.add_get("/cluster/info", cluster_info)
    app.router.add_get("/cluster/health", cluster_health)
    app.router.add_get("/health", health)
    app.router.add_get("/openapi.json", openapi)
    return app
