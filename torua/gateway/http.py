"""The REST API (BRIEF section 4) on aiohttp: thin handlers over `Gateway`.

Every error, aiohttp's own included (404, 405, 413, and the parser's refusals in
`torua.gateway.connection`) and unexpected exceptions, leaves as JSON
``{"error": {"code", "message"}}`` with the status from
`torua.protocol.errors.HTTP_STATUS`; a 503 always carries Retry-After; a
traceback only ever reaches the log.

Keys and query parameters are read from the raw request target (see
`torua.gateway.paths`), never from aiohttp's leniently decoded one, so ``%2F``
and ``/`` mean the same, ``%0A`` is a newline, and a bad escape is a 400.

What a request must be to get in (`torua.gateway.http_rules`): a JSON body comes
with ``Content-Type: application/json`` (or ``application/*+json``), else 415; a
browser page from another origin may not change anything (403 ``cross_origin``);
a body must arrive within the request deadline, else 408. Every response carries
``X-Content-Type-Options: nosniff`` and a sandboxing Content-Security-Policy, so a
stored ``text/html`` value is never run as a page of the gateway's origin.
"""

from __future__ import annotations

import logging
import asyncio
import math
import re
import time
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from torua.config import GatewayConfig
from torua.gateway.http_rules import SECURITY_HEADERS, SERVED_METHODS, cross_origin_refusal, is_json_media_type
from torua.gateway.openapi import openapi_document
from torua.gateway.paths import key_from_raw_path, query_params
from torua.gateway.service import Gateway
from torua.metrics import CONTENT_TYPE_LATEST, http_op
from torua.protocol.codec import loads_json
from torua.protocol.errors import HTTP_STATUS, ToruaError

log = logging.getLogger("torua.gateway.http")

GATEWAY = web.AppKey("gateway", Gateway)
CONFIG = web.AppKey("config", GatewayConfig)

# Small JSON bodies (POST /shards/assign) never need more than this.
MAX_JSON_BODY = 64 << 10

_AIOHTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "value_too_large"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    code: str, message: str, status: int | None = None, retry_after: float | None = None, headers: dict[str, str] | None = None,
    fields: dict[str, str] | None = None,
) -> web.Response:
    status = status or HTTP_STATUS.get(code, 500)
    out = dict(headers or {})
    if status == 503:
        out["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields  # what is wrong with each named field (e.g. a setting)
    return web.json_response({"error": error}, status=status, headers=out)


def _too_large(size: int | None, limit: int) -> ToruaError:
    if size is None:  # a chunked body, cut off once it passed the limit
        return ToruaError("value_too_large", f"the body is larger than the limit of {limit} bytes")
    return ToruaError("value_too_large", f"the body is {size} bytes; the limit is {limit} bytes")


@web.middleware
async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by operation and the status it leaves with
    (outermost, so errors_as_json's answers are counted as sent)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away first
        raise
    finally:
        resource = request.match_info.route.resource
        op = http_op(request.method, resource.canonical if resource is not None else None)
        request.app[GATEWAY].metrics.observe_http(op, status, time.perf_counter() - started)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ToruaError as exc:
        response = error_response(exc.code, exc.message, retry_after=exc.retry_after, fields=exc.fields)
        if exc.code == "request_timeout":
            response.force_close()  # the client is too slow to keep this connection for
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        code = _AIOHTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        message = exc.reason
        headers = {}
        if exc.status == 404 and request.method == hdrs.METH_CONNECT:
            # aiohttp reads CONNECT's target as host:port, so no route ever matches it
            return error_response("method_not_allowed", "CONNECT is not allowed: this is not a proxy", headers={"Allow": SERVED_METHODS})
        if exc.status == 404 and not _raw_target(request).startswith("/"):
            return error_response("bad_request", f"the request target must be a path, not {request.raw_path[:100]!r}")
        if exc.status == 404 and "#" in request.raw_path:  # aiohttp routed on the path before the '#'
            return error_response("bad_request", "a '#' in the path must be sent percent-encoded, as %23 (a fragment is never sent)")
        if exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
            if "Allow" in exc.headers:
                headers["Allow"] = exc.headers["Allow"]
        elif exc.status == 413:
            message = _too_large(request.content_length, request.app[CONFIG].max_value_bytes).message
        return error_response(code, message, status=exc.status, headers=headers)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response("internal", "internal error; see the gateway log")


@web.middleware
async def same_origin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No browser page from another origin changes anything here (CSRF); see `cross_origin_refusal`."""
    refusal = cross_origin_refusal(request.method, request.headers)
    if refusal is not None:
        raise ToruaError("cross_origin", f"{refusal}; call the API from a client that is not a web page, or from this origin")
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """nosniff and a sandboxing CSP on every response: a stored text/html value is inert."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _raw_target(request: web.Request) -> str:
    """The raw request target as a path with its query ("/data/k?x=1"), still percent-encoded."""
    raw = request.raw_path
    if raw.startswith("/") or "://" not in raw:
        return raw
    # An absolute-form request target ("PUT http://host/data/k HTTP/1.1") is legal HTTP;
    # a fragment in it is kept, so that it is refused like a raw '#' in a path.
    parts = urlsplit(raw)
    return parts.path + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def _raw_path(request: web.Request) -> str:
    return _raw_target(request).split("?", 1)[0]


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes (up front from Content-Length,
    and again while reading: a chunked body has no length to check) and a body that
    does not arrive within the request deadline (``request_timeout``, 408)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    deadline = request.app[CONFIG].request_timeout
    body = bytearray()
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise _too_large(None, limit)
    except TimeoutError:
        got = f"{len(body)} of {request.content_length}" if request.content_length is not None else f"{len(body)}"
        raise ToruaError("request_timeout", f"the body did not arrive within {deadline:g} s ({got} bytes came)") from None
    except web.RequestPayloadError as exc:  # e.g. a malformed chunk (GatewayProtocol._refuse_body)
        raise ToruaError("bad_request", f"malformed request body: {str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}") from None
    except ConnectionError:  # the client went away mid-body: nobody to answer, nothing to log as a bug
        raise ToruaError("bad_request", "the connection closed before the body was complete") from None
    return bytes(body)


async def expect_value(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue`: refuse an oversized value before the client sends it."""
    limit = request.app[CONFIG].max_value_bytes
    if request.content_length is not None and request.content_length > limit:
        return error_response("value_too_large", _too_large(request.content_length, limit).message)
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version == HttpVersion11:
        if expect.lower() != "100-continue":
            return error_response("bad_request", f"unknown Expect: {expect}", status=417)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp's own handler: the real response has not started
    return None


def _gw(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def _query(request: web.Request) -> dict[str, str]:
    return query_params(_raw_target(request))


async def get_data(request: web.Request) -> web.StreamResponse:
    """The stored bytes with their content type; `security_headers` keeps them inert in a browser."""
    key = key_from_raw_path(_raw_path(request))
    value, content_type = await _gw(request).kv_get(key, _query(request).get("consistency") or "strong")
    return web.Response(body=value, headers={hdrs.CONTENT_TYPE: content_type})


async def put_data(request: web.Request) -> web.StreamResponse:
    gw = _gw(request)
    key = key_from_raw_path(_raw_path(request))  # a bad key is refused before the body is read
    value = await read_body(request, request.app[CONFIG].max_value_bytes)
    await gw.kv_put(key, value, request.headers.get(hdrs.CONTENT_TYPE) or None)
    return web.Response(status=204)


async def delete_data(request: web.Request) -> web.StreamResponse:
    await _gw(request).kv_delete(key_from_raw_path(_raw_path(request)))
    return web.Response(status=204)


_DIGITS = re.compile(r"[0-9]{1,7}")


def query_int(params: dict[str, str], name: str, default: int) -> int:
    """A non-negative integer query parameter; absent or empty means `default`."""
    raw = params.get(name, "")
    if raw == "":
        return default
    if not _DIGITS.fullmatch(raw):
        raise ToruaError("bad_request", f"{name} must be a whole number, not {raw[:40]!r}")
    return int(raw)


async def list_data(request: web.Request) -> web.StreamResponse:
    """Keys come sorted within a shard, shards in order (0..n-1); `next_cursor` is null at the end."""
    params = _query(request)
    limit = query_int(params, "limit", 100)
    result = await _gw(request).kv_list(params.get("prefix", ""), limit, params.get("cursor") or None)
    return web.json_response(result)


async def key_location(request: web.Request) -> web.StreamResponse:
    key = key_from_raw_path(_raw_path(request), "/keys/", "/location")
    return web.json_response(await _gw(request).location(key))


async def shards(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _gw(request).shards())


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object. It must say it is JSON: a browser page may send
    text/plain or a form to any origin without asking (CSRF), but not JSON."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if not is_json_media_type(content_type):
        said = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type"
        raise ToruaError("unsupported_media_type", f"the body must be JSON sent with Content-Type: application/json, not {said}")
    data = loads_json(await read_body(request, MAX_JSON_BODY))  # bad_request naming a value the wire cannot carry
    if not isinstance(data, dict):
        raise ToruaError("bad_request", "the body must be a JSON object")
    return data


async def assign(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"shard_id", "node_id"})
    if unknown:
        raise ToruaError("bad_request", f"unknown field(s) {', '.join(unknown)}; expected shard_id and node_id")
    result = await _gw(request).assign(body.get("shard_id"), body.get("node_id"))
    return web.json_response(result, status=202)


async def drain(request: web.Request) -> web.StreamResponse:
    """POST starts moving every copy off the node; DELETE undoes it."""
    on = request.method == "POST"
    return web.json_response(await _gw(request).drain(request.match_info["node_id"], on), status=202 if on else 200)


async def evacuate(request: web.Request) -> web.StreamResponse:
    """POST moves every copy off the node now (409 if the others have no room); DELETE undoes it."""
    on = request.method == "POST"
    return web.json_response(await _gw(request).evacuate(request.match_info["node_id"], on), status=202 if on else 200)


async def maintenance(request: web.Request) -> web.StreamResponse:
    """{"nodes": [...], "maintenance": true|false, "drain": false}: all named nodes or none."""
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"nodes", "maintenance", "drain"})
    if unknown:
        raise ToruaError("bad_request", f"unknown field(s) {', '.join(unknown)}; expected nodes, maintenance and drain")
    if "nodes" not in body or "maintenance" not in body:
        raise ToruaError("bad_request", "the body needs nodes (a list of node ids) and maintenance (true or false)")
    return web.json_response(await _gw(request).maintenance(body["nodes"], body["maintenance"], body.get("drain", False)))


async def allocation_explain(request: web.Request) -> web.StreamResponse:
    raw = _query(request).get("shard", "")
    if raw == "":
        raise ToruaError("bad_request", "the query parameter shard is required: /cluster/allocation/explain?shard=N")
    if not _DIGITS.fullmatch(raw):
        raise ToruaError("bad_request", f"shard must be a shard number (0, 1, ...), not {raw[:40]!r}")
    return web.json_response(await _gw(request).explain(int(raw)))


async def nodes(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _gw(request).nodes())


async def node(request: web.Request) -> web.StreamResponse:
    # match_info is already percent-decoded by aiohttp; node ids are plain tokens anyway.
    return web.json_response(await _gw(request).node(request.match_info["node_id"]))


async def cluster_info(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _gw(request).cluster_info())


async def cluster_health(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _gw(request).cluster_health())


async def rebalance(request: web.Request) -> web.StreamResponse:
    """Spread hot shards now; ?dry_run=true only says what it would do. 202 when moves started."""
    raw = _query(request).get("dry_run", "false").lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise ToruaError("bad_request", f"dry_run must be true or false, not {raw[:40]!r}")
    result = await _gw(request).rebalance(dry_run=raw in ("true", "1"))
    return web.json_response(result, status=202 if result["started"] else 200)


async def get_cluster_config(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _gw(request).cluster_config())


async def put_cluster_config(request: web.Request) -> web.StreamResponse:
    """The body names the settings to change: all of them change, or (400) none."""
    return web.json_response(await _gw(request).set_cluster_config(await read_json_object(request)))


async def broadcast(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"kind", "body"})
    if unknown:
        raise ToruaError("bad_request", f"unknown field(s) {', '.join(unknown)}; expected kind and optionally body")
    return web.json_response(await _gw(request).broadcast(body.get("kind"), body.get("body")))


async def health(request: web.Request) -> web.StreamResponse:
    return web.json_response(_gw(request).gateway_health())


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document())


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text format (torua.metrics)."""
    return web.Response(body=_gw(request).metrics.exposition(), headers={hdrs.CONTENT_TYPE: CONTENT_TYPE_LATEST})


def make_app(config: GatewayConfig, gateway: Gateway) -> web.Application:
    # client_max_size guards request.read() anywhere; PUT bodies are also counted in read_body.
    app = web.Application(middlewares=[counted, errors_as_json, same_origin_only], client_max_size=config.max_value_bytes + 1)
    app[GATEWAY] = gateway
    app[CONFIG] = config
    app.on_response_prepare.append(security_headers)
    r = app.router
    # [\s\S]: any character, newline included (a key may hold one, sent as %0A); the
    # handlers read the key from the raw path, the pattern only has to match it.
    r.add_get("/data", list_data)
    r.add_get(r"/data/{key:[\s\S]*}", get_data)
    r.add_put(r"/data/{key:[\s\S]*}", put_data, expect_handler=expect_value)
    r.add_delete(r"/data/{key:[\s\S]*}", delete_data)
    r.add_get(r"/keys/{key:[\s\S]+}/location", key_location)
    r.add_get("/shards", shards)
    r.add_post("/shards/assign", assign)
    r.add_get("/nodes", nodes)
    r.add_get("/nodes/{node_id}", node)
    r.add_post("/nodes/{node_id}/drain", drain)
    r.add_delete("/nodes/{node_id}/drain", drain)
    r.add_post("/nodes/maintenance", maintenance)
    r.add_post("/nodes/{node_id}/evacuate", evacuate)
    r.add_delete("/nodes/{node_id}/evacuate", evacuate)
    r.add_get("/cluster/allocation/explain", allocation_explain)
    r.add_get("/cluster/info", cluster_info)
    r.add_get("/cluster/health", cluster_health)
    r.add_get("/cluster/config", get_cluster_config)
    r.add_post("/cluster/rebalance", rebalance)
    r.add_put("/cluster/config", put_cluster_config)
    r.add_post("/broadcast", broadcast)
    r.add_get("/health", health)
    r.add_get("/openapi.json", openapi)
    r.add_get("/metrics", metrics)
    return app
