"""The OpenAPI 3.1 description of the REST API, served at ``/openapi.json``,
generated from the endpoint declarations (`torua.gateway.endpoints`): one
operation per route, its parameters and body from the params, its replies from
the reply and the response shapes in `torua.gateway.schemas`, its errors from
the codes the endpoint declares plus what any request may get.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from torua import __version__
from torua.gateway.endpoints import rule_of, ENDPOINTS, Endpoint, Route
from torua.gateway.params import In, Param
from torua.gateway.schemas import INT, SCHEMAS, STR, Schema, obj, ref
from torua.protocol import subjects
from torua.protocol.errors import HTTP_STATUS

ERROR_TEXT = {
    400: "bad input (key, JSON, parameter, cursor, a value out of range, a malformed HTTP request); nothing changed",
    401: "unauthorized: no API key, or one that is unknown, revoked or mistyped (Authorization: Bearer <key>)",
    403: "forbidden: the API key's role or tenant does not reach this; or cross_origin: a browser page from another origin may not change anything here",
    404: "no such key, node, shard, graph, vertex or route",
    405: "method not allowed on this path (Allow lists the ones that are)",
    408: "request_timeout: the request's headers or body did not arrive within the request deadline (--request-timeout); the connection is closed",
    409: "conflicts with the cluster's state (e.g. the shard is already moving, a graph exists with other settings)",
    413: "value larger than max_value_bytes, a graph property document over its limit, an import over max_import_bytes",
    414: "uri_too_long: the request line is longer than 8190 bytes",
    415: "unsupported_media_type: a JSON body must be sent with Content-Type: application/json (or application/*+json)",
    429: "too_many_requests: the API key made more requests than its rate allows here; retry after Retry-After seconds",
    431: "headers_too_large: a header is longer than 8190 bytes, or there are more than 128",
    500: "internal error (details only in the gateway log)",
    501: "not_implemented: a method this API does not use",
    503: "no node can serve it now, or no coordinator answers; retry after Retry-After seconds",
    504: "the request's deadline passed",
}

# Any request may be malformed, too slow, too long, or use a wrong method: all JSON errors.
EVERY_OPERATION = (400, 405, 408, 414, 431, 500)
CHANGING_METHODS = ("POST", "PUT", "DELETE")  # what a page from another origin may not do: 403

# Every response carries these, so a stored value is never sniffed or run as a page of the gateway's origin.
SECURITY_RESPONSE_HEADERS = {
    "X-Content-Type-Options": {"description": "always nosniff", "schema": {"const": "nosniff"}},
    "Content-Security-Policy": {"description": "always sandbox; default-src 'none'", "schema": STR},
}

JSON_BODY_NOTE = "Content-Type must be application/json (parameters such as charset allowed) or application/*+json, else 415."
NDJSON_BODY_NOTE = "Content-Type must be application/x-ndjson (or application/jsonl, or a JSON type), else 415."


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error_response(status: int) -> Schema:
    response = json_body(ref("Error"), ERROR_TEXT[status])
    response["headers"] = dict(SECURITY_RESPONSE_HEADERS)
    if status in (429, 503):
        response["headers"]["Retry-After"] = {"description": "seconds to wait before retrying", "schema": INT}
    return response


def _schema(schema: str | Schema | None) -> Schema:
    return ref(schema) if isinstance(schema, str) else dict(schema or {})


def _parameter(p: Param) -> Schema:
    assert p.rest in (In.PATH, In.QUERY), p
    out: Schema = {"name": p.name, "in": p.rest.value, "required": p.required, "schema": {**p.kind.schema(), **p.schema_extra}}
    if p.default is not None:
        out["schema"]["default"] = p.default
    if p.doc:
        out["description"] = p.doc
    return out


def request_schema_name(endpoint: Endpoint) -> str:
    """The component of a JSON body, e.g. ``AssignRequest`` for ``assign``."""
    return "".join(part.capitalize() for part in endpoint.name.split("_")) + "Request"


def _request_body(endpoint: Endpoint, route: Route) -> Schema | None:
    kind = endpoint.body(route)
    params = endpoint.read_over_rest(route)
    if kind == "raw":
        value = next(p for p in params if p.rest is In.RAW_BODY)
        said = [value.doc] + [f"its Content-Type is {p.doc}" for p in params if p.rest is In.CONTENT_TYPE]
        return {"required": value.required, "description": "; ".join(d for d in said if d), "content": {"*/*": {"schema": value.kind.schema()}}}
    if kind == "ndjson":
        lines = next(p for p in params if p.rest is In.NDJSON)
        return {
            "required": lines.required, "description": f"{lines.doc}. {NDJSON_BODY_NOTE}",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    if kind == "whole":
        whole = next(p for p in params if p.rest is In.WHOLE_BODY).schema()
        schema = {"$ref": whole["$ref"]} if "$ref" in whole else whole
    elif kind == "json":
        schema = ref(request_schema_name(endpoint))
        if not any(p.required for p in params if p.rest is In.BODY):  # every field optional: so is the body
            return {"required": False, "description": JSON_BODY_NOTE, "content": {"application/json": {"schema": schema}}}
    else:
        return None
    return {"required": True, "description": JSON_BODY_NOTE, "content": {"application/json": {"schema": schema}}}


def _request_schemas() -> dict[str, Schema]:
    """The component of each JSON body made of fields, from its params."""
    out: dict[str, Schema] = {}
    for endpoint in ENDPOINTS:
        for route in endpoint.rest:
            fields = [p for p in endpoint.read_over_rest(route) if p.rest is In.BODY]
            if fields:
                out[request_schema_name(endpoint)] = obj({p.name: p.schema() for p in fields}, required=[p.name for p in fields if p.required])
    return out


def _success(endpoint: Endpoint, route: Route) -> dict[str, Schema]:
    reply = endpoint.reply
    status = route.status or reply.status
    description = route.described or reply.description
    if reply.kind == "empty":
        out: dict[str, Schema] = {str(status): {"description": description}}
    elif reply.kind == "value":
        out = {str(status): {"description": description, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}}
    elif reply.kind == "text":
        out = {str(status): {"description": description, "content": {reply.content_type: {"schema": {"type": "string"}}}}}
    else:
        out = {str(status): json_body(_schema(reply.schema), description)}
    if reply.accepted_when:
        out = {"202": json_body(_schema(reply.schema), reply.accepted_description), **out}
    if reply.created_when:
        out = {"201": json_body(_schema(reply.schema), reply.created_description), **out}
    return out


def _errors(endpoint: Endpoint, route: Route, has_body: bool, takes_json: bool) -> dict[str, Schema]:
    """Each status the operation may answer with an error; where the endpoint declares
    codes for it, the description names them (a Reference Object may override it in 3.1)."""
    codes: dict[int, list[str]] = {}
    for code in route.errors if route.errors is not None else endpoint.errors:
        codes.setdefault(HTTP_STATUS[code], []).append(code)
    statuses = set(codes) | set(EVERY_OPERATION)
    if route.method in CHANGING_METHODS:
        statuses.add(403)  # from a browser page of another origin
    if rule_of(endpoint).role != "public":
        statuses |= {401, 403, 429}
    if has_body:
        statuses.add(413)
    if takes_json:
        statuses.add(415)
    out: dict[str, Schema] = {}
    for status in sorted(statuses):
        response: Schema = {"$ref": f"#/components/responses/E{status}"}
        if status in codes:
            response["description"] = f"{ERROR_TEXT[status]} (here: {', '.join(codes[status])})"
        out[str(status)] = response
    return out


def operation(endpoint: Endpoint, route: Route) -> Schema:
    """The OpenAPI operation of one route of `endpoint`."""
    op: Schema = {"operationId": route.name or endpoint.name, "summary": route.summary}
    parameters = [_parameter(p) for p in endpoint.read_over_rest(route) if p.rest in (In.PATH, In.QUERY)]
    if parameters:
        op["parameters"] = parameters
    body = _request_body(endpoint, route)
    if body is not None:
        op["requestBody"] = body
    responses = _success(endpoint, route)
    for response in responses.values():
        response["headers"] = dict(SECURITY_RESPONSE_HEADERS)
    takes_json = body is not None and bool({"application/json", "application/x-ndjson"} & set(body["content"]))
    op["responses"] = {**responses, **_errors(endpoint, route, body is not None, takes_json)}
    if endpoint.nats:
        op["x-nats-subject"] = f"{subjects.API}.{endpoint.nats}"  # the same operation on the NATS API
    rule = rule_of(endpoint)
    op["security"] = [] if rule.role == "public" else [{"apiKey": []}]
    op["x-torua-access"] = {"role": rule.role, "resource": rule.resource}  # torua.access
    return op


def openapi_path(route: Route) -> str:
    return route.path  # route paths are already OpenAPI templates ({name}); aiohttp's patterns are added by the front-end


@cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        for route in endpoint.rest:
            paths.setdefault(openapi_path(route), {})[route.method.lower()] = operation(endpoint, route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Torua REST API",
            "version": __version__,
            "description": "Sharded key-value and graph store over NATS. Errors are JSON {error: {code, message}}; "
            "a JSON body needs Content-Type: application/json; a request's headers and body must arrive within "
            "the request deadline (408); no browser page from another origin may change anything (403). "
            "The same operations are on NATS under torua.api.* (msgpack, or JSON with Content-Type: application/json): "
            "x-nats-subject names each one's subject. "
            "Every operation but /health and /openapi.json needs an API key (Authorization: Bearer <key>; on NATS the same header) "
            "unless the gateway runs --insecure; x-torua-access gives the role it needs (read < write < admin) and the resource "
            "a tenant key must reach: 401 without a valid key, 403 outside its rights.",
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **_request_schemas()},
            "responses": {f"E{s}": _error_response(s) for s in ERROR_TEXT},
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "an API key: torua_<id>_<secret> (torua auth create)"}},
        },
    }
