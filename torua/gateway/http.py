"""The REST API (BRIEF section 4) on aiohttp. Its routes and handlers come from the
endpoint declarations (`torua.gateway.endpoints`): each reads its inputs where its
params say, checks them with `torua.gateway.params.bind` (as the NATS API does),
calls its `Gateway` method and answers as its reply says. What is written here is
what every route shares, and the few things only REST has: a raw value's body and
``Expect: 100-continue``, /openapi.json and /metrics.

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
import time
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from torua.config import GatewayConfig
from torua.api_keys import check_reach, size_limit
from torua.gateway.endpoints import ENDPOINTS, MAX_JSON_BODY, Endpoint, Route, call, rule_of
from torua.gateway.http_rules import SECURITY_HEADERS, SERVED_METHODS, cross_origin_refusal, is_json_media_type, is_ndjson_media_type
from torua.gateway.openapi import openapi_document
from torua.gateway.params import In, Key, NdjsonBody, bind, check_fields
from torua.gateway.paths import keys_from_raw_path, query_params
from torua.gateway.service import Gateway
from torua.metrics import CONTENT_TYPE_LATEST, http_op
from torua.protocol.codec import loads_json
from torua.protocol.errors import HTTP_STATUS, ToruaError

log = logging.getLogger("torua.gateway.http")

GATEWAY = web.AppKey("gateway", Gateway)
CONFIG = web.AppKey("config", GatewayConfig)


_AIOHTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "value_too_large"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    code: str, message: str, status: int | None = None, retry_after: float | None = None, headers: dict[str, str] | None = None,
    fields: dict[str, str] | None = None,
) -> web.Response:
    status = status or HTTP_STATUS.get(code, 500)
    out = dict(headers or {})
    if status in (429, 503):
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
        headers = {"WWW-Authenticate": 'Bearer realm="torua"'} if exc.code == "unauthorized" else None
        response = error_response(exc.code, exc.message, retry_after=exc.retry_after, headers=headers, fields=exc.fields)
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


def stream_body(request: web.Request, limit: int) -> NdjsonBody:
    """The body as it arrives (an NDJSON import), at most `limit` bytes (up front from
    Content-Length, and again while reading) and within the request deadline (408),
    read when the Gateway method reads it (after it found the graph)."""

    async def chunks() -> AsyncIterator[bytes]:
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(request.content_length, limit)
        deadline = asyncio.get_running_loop().time() + request.app[CONFIG].request_timeout
        got = 0
        try:
            while True:
                async with asyncio.timeout_at(deadline):
                    chunk = await request.content.readany()
                if not chunk:
                    return
                got += len(chunk)
                if got > limit:
                    raise _too_large(None, limit)
                yield chunk
        except TimeoutError:
            timeout = request.app[CONFIG].request_timeout
            raise ToruaError("request_timeout", f"the body did not arrive within {timeout:g} s ({got} bytes came)") from None
        except web.RequestPayloadError as exc:
            raise ToruaError("bad_request", f"malformed request body: {str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}") from None
        except ConnectionError:
            raise ToruaError("bad_request", "the connection closed before the body was complete") from None

    return NdjsonBody(chunks)


def check_ndjson_type(request: web.Request) -> None:
    """JSON lines say so (application/x-ndjson, ...): a browser page cannot send that to
    another origin without asking, as it can text/plain or a form (CSRF)."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if not is_ndjson_media_type(content_type):
        said = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type"
        raise ToruaError("unsupported_media_type", f"the body must be JSON lines sent with Content-Type: application/x-ndjson, not {said}")


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


async def read_json_object(request: web.Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The body as a JSON object of at most `limit` bytes. It must say it is JSON: a
    browser page may send text/plain or a form to any origin without asking (CSRF), but not JSON."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if not is_json_media_type(content_type):
        said = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type"
        raise ToruaError("unsupported_media_type", f"the body must be JSON sent with Content-Type: application/json, not {said}")
    data = loads_json(await read_body(request, limit))  # bad_request naming a value the wire cannot carry
    if not isinstance(data, dict):
        raise ToruaError("bad_request", "the body must be a JSON object")
    return data


# ------------------------------------------------- handlers from the declarations


def route_handler(endpoint: Endpoint, route: Route) -> Handler:
    """The aiohttp handler of one route of `endpoint`: read its inputs where the
    declaration says (a key from the raw path, other path params, the query, the
    body), check them with `bind` as the NATS API does, call the Gateway method,
    and answer as the reply says. Path and query come first, so a bad key is
    refused before its body is read."""
    params = endpoint.read_over_rest(route)
    key_params = [p for p in params if p.rest is In.PATH and isinstance(p.kind, Key)]
    keys = [p.name for p in key_params]
    # a JSON body none of whose fields is required may be left out altogether (PUT /graphs/{graph})
    optional_body = not any(p.required for p in params if p.rest is In.BODY)
    segments = [p.name for p in params if p.rest is In.PATH and not isinstance(p.kind, Key)]
    query = [p.name for p in params if p.rest is In.QUERY]
    content_type = [p.name for p in params if p.rest is In.CONTENT_TYPE]
    from_text = frozenset(keys + segments + query + content_type)
    body = endpoint.body(route)
    raw = next((p.name for p in params if p.rest in (In.RAW_BODY, In.WHOLE_BODY, In.NDJSON)), "")
    fields, expected = endpoint.body_expected(route)
    reply, status = endpoint.reply, route.status or endpoint.reply.status
    rule = rule_of(endpoint)

    async def handle(request: web.Request) -> web.StreamResponse:
        # the API key first (401, or 403 for its role), before anything is read
        api_key = await _gw(request).authenticate(request.headers.get(hdrs.AUTHORIZATION), endpoint.name, request.remote or "")
        values: dict[str, Any] = {}
        if keys:
            # checked at once, with each kind's words (a key's, a vertex id's): before any body is read
            values.update(keys_from_raw_path(route.path, _raw_path(request), keys, validate=False))
            bind(key_params, values, keys)
        for name in segments:
            # match_info is already percent-decoded by aiohttp; node ids are plain tokens anyway.
            values[name] = request.match_info[name]
        if query:
            given = _query(request)
            values.update((name, given.get(name, "")) for name in query)
        if api_key is not None:
            check_reach(rule, api_key, values, endpoint.name)  # a tenant's graph or key: before any body is read
        for name in content_type:
            values[name] = request.headers.get(hdrs.CONTENT_TYPE, "")
        if body == "raw":
            values[raw] = await read_body(request, size_limit(api_key, request.app[CONFIG].max_value_bytes))
        elif body == "whole":
            values[raw] = await read_json_object(request, size_limit(api_key, endpoint.max_json_body))
        elif body == "ndjson":
            check_ndjson_type(request)
            values[raw] = stream_body(request, size_limit(api_key, request.app[CONFIG].max_import_bytes))
        elif body == "json":
            data = {} if optional_body and not request.body_exists else await read_json_object(request, size_limit(api_key, endpoint.max_json_body))
            check_fields(data, fields, expected)
            values.update(data)
        result = await call(_gw(request), endpoint, bind(endpoint.params, values, from_text, route.fixed), who=request.remote or "", key=api_key)
        if reply.kind == "empty":
            return web.Response(status=status)
        if reply.kind == "value":
            # The stored bytes with their content type; `security_headers` keeps them inert in a browser.
            value, stored_type = result
            return web.Response(body=value, status=status, headers={hdrs.CONTENT_TYPE: stored_type})
        return web.json_response(result, status=reply.status_of(result, status))

    return handle


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document())


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text format (torua.metrics)."""
    return web.Response(body=_gw(request).metrics.exposition(), headers={hdrs.CONTENT_TYPE: CONTENT_TYPE_LATEST})


# The endpoints the front-end serves itself (declared with call=None).
SERVED_HERE: dict[str, Handler] = {"openapi": openapi, "metrics": metrics}


def served_here(endpoint: Endpoint) -> Handler:
    """The front-end's own handler of `endpoint`, behind its API key rule."""
    handler = SERVED_HERE[endpoint.name]

    async def guarded(request: web.Request) -> web.StreamResponse:
        await _gw(request).authenticate(request.headers.get(hdrs.AUTHORIZATION), endpoint.name)
        return await handler(request)

    return guarded


def aiohttp_path(endpoint: Endpoint, route: Route) -> str:
    """The route's path as aiohttp wants it: a key's {name} with the pattern that lets any key through."""
    path = route.path
    for p in endpoint.read_over_rest(route):
        if p.rest is In.PATH and isinstance(p.kind, Key):
            path = path.replace("{" + p.name + "}", "{" + p.name + ":" + p.kind.route_pattern + "}")
    return path


def add_routes(app: web.Application, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
    for endpoint in endpoints:
        for route in endpoint.rest:
            handler = served_here(endpoint) if endpoint.call is None else route_handler(endpoint, route)
            path = aiohttp_path(endpoint, route)
            if route.method == "GET":
                app.router.add_get(path, handler)  # HEAD too
            else:
                # Expect: 100-continue on a raw value: refuse it before the client sends it.
                expect = expect_value if endpoint.body(route) == "raw" else None
                app.router.add_route(route.method, path, handler, expect_handler=expect)


def make_app(config: GatewayConfig, gateway: Gateway) -> web.Application:
    # client_max_size guards request.read() anywhere; raw values are also counted in read_body.
    app = web.Application(middlewares=[counted, errors_as_json, same_origin_only], client_max_size=config.max_value_bytes + 1)
    app[GATEWAY] = gateway
    app[CONFIG] = config
    app.on_response_prepare.append(security_headers)
    add_routes(app)
    return app
