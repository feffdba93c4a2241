"""Each endpoint is declared once (torua.gateway.endpoints) and everything else comes
from that declaration: its REST route(s), its NATS micro endpoint, its OpenAPI
operation, the Gateway method it calls with the inputs `bind` checked; and the
docs list it. (Both front-ends answering alike, on a real gateway:
tests/integration/test_gateway_front_ends.py.)"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from torua.gateway.endpoints import ENDPOINTS, EVERY_REQUEST, Endpoint, Reply, Route, json_reply
from torua.gateway.http import SERVED_HERE, add_routes
from torua.gateway.nats_api import HANDLERS
from torua.gateway.openapi import openapi_document
from torua.gateway.params import Boolean, In, Integer, Key, Param, Text, TextList, Value
from torua.gateway.schemas import SCHEMAS
from torua.gateway.service import Gateway
from torua.protocol.errors import HTTP_STATUS

ROOT = Path(__file__).resolve().parents[2]
ROUTES = [(e, r) for e in ENDPOINTS for r in e.rest]
# Served over REST only: a key's location and the gateway's own documents (no NATS subject today).
REST_ONLY = {"location", "health", "openapi", "metrics"}


def _served_routes() -> set[tuple[str, str]]:
    app = web.Application()
    add_routes(app)
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"}


def test_every_declared_endpoint_has_its_routes_its_nats_endpoint_and_its_openapi_operations():
    served, document = _served_routes(), openapi_document()["paths"]
    for endpoint, route in ROUTES:
        assert (route.method, route.path) in served, (endpoint.name, route.method, route.path)
        operation = document[route.path][route.method.lower()]
        assert operation["operationId"] == (route.name or endpoint.name)
        assert operation.get("x-nats-subject") == (f"torua.api.{endpoint.nats}" if endpoint.nats else None)
    for endpoint in ENDPOINTS:
        assert (endpoint.nats in HANDLERS) if endpoint.nats else endpoint.name in REST_ONLY, endpoint.name
    # ... and nothing is served or documented that is not declared
    assert served == {(r.method, r.path) for _, r in ROUTES}
    assert set(HANDLERS) == {e.nats for e in ENDPOINTS if e.nats}
    assert {(m.upper(), p) for p, item in document.items() for m in item} == served


def test_every_call_is_a_gateway_method_taking_the_params_by_name():
    for endpoint in ENDPOINTS:
        if endpoint.call is None:
            assert endpoint.name in SERVED_HERE, endpoint.name
            continue
        method = getattr(Gateway, endpoint.call)
        signature = inspect.signature(method)
        signature.bind(None, **{p.argument: p.default for p in endpoint.params})  # every param is an argument (by its name, or `arg`)
        required = {n for n, a in signature.parameters.items() if a.default is inspect.Parameter.empty and n != "self"}
        assert required <= {p.argument for p in endpoint.params}, (endpoint.name, required)


def test_the_openapi_document_is_valid_openapi_3_1():
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)  # the OpenAPI 3.1 schema, every $ref resolved, path parameters declared


def test_operation_ids_are_unique_and_every_reply_shape_exists():
    ids = [r.name or e.name for e, r in ROUTES]
    assert len(ids) == len(set(ids)), ids
    for endpoint in ENDPOINTS:
        if isinstance(endpoint.reply.schema, str):
            assert endpoint.reply.schema in SCHEMAS, endpoint.name


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_each_declaration_is_whole(endpoint: Endpoint):
    """(What a route must be is checked when an Endpoint is made: test_a_declaration_that_...)"""
    for code in endpoint.errors + tuple(c for r in endpoint.rest for c in r.errors or ()):
        assert code in HTTP_STATUS and code not in EVERY_REQUEST, (endpoint.name, code)
    assert sum(p.rest is In.WHOLE_BODY for p in endpoint.params) <= 1
    assert not any(p.required and p.default is not None for p in endpoint.params), endpoint.name
    assert all(isinstance(p.kind, Key) for p in endpoint.params if p.name == "key")
    assert endpoint.rest, "every endpoint has a REST route"


def _readme_routes() -> set[tuple[str, str]]:
    """(method, path) of every route in the README's REST API table, {params} as {}."""
    table = (ROOT / "README.md").read_text().split("## REST API", 1)[1].split("\n\n")[1]
    found = set()
    for line in table.splitlines():
        first = line.strip().strip("|").split("|")[0]
        for method, path in re.findall(r"`(GET|PUT|POST|DELETE) (/[^`\[?]*)", first):
            found.add((method, re.sub(r"\{[^}]*\}", "{}", path.strip())))
    return found


def test_the_readme_has_a_row_for_every_route():
    listed = _readme_routes()
    for endpoint, route in ROUTES:
        assert (route.method, re.sub(r"\{[^}]*\}", "{}", route.path)) in listed, f"README's REST API table lacks {route.method} {route.path}"


def _protocol_subjects() -> set[str]:
    """Every subject in docs/protocol.md's public NATS API table (``kv.get\\|put`` written once)."""
    section = (ROOT / "docs" / "protocol.md").read_text().split("## Public NATS API", 1)[1].split("\n## ", 1)[0]
    found = set()
    for cell in re.findall(r"^\| `torua\.api\.([^`]+)`", section, re.MULTILINE):
        first, *others = cell.split("\\|")
        found.add(first)
        found.update(first.rsplit(".", 1)[0] + "." + other for other in others)
    return found


def test_the_protocol_document_lists_every_nats_subject():
    assert _protocol_subjects() == {e.nats for e in ENDPOINTS if e.nats}


def test_a_json_body_schema_lists_its_fields():
    """The body a route takes is its params (one way to say it for REST, NATS and the docs)."""
    components = openapi_document()["components"]["schemas"]
    assign = components["AssignRequest"]
    assert assign["required"] == ["shard_id", "node_id"] and set(assign["properties"]) == {"shard_id", "node_id"}
    maintenance = components["MaintenanceRequest"]
    assert maintenance["required"] == ["nodes", "maintenance"] and maintenance["properties"]["drain"]["default"] is False


def test_a_param_with_its_own_name_over_nats():
    node = next(e for e in ENDPOINTS if e.name == "node")
    assert node.nats_fields() == {"node"} and node.params[0].name == "node_id"
    put = next(e for e in ENDPOINTS if e.name == "kv_put")
    assert put.nats_fields() == {"key", "value", "value_b64", "content_type"}
    assert put.nats_expected() == "key and value or value_b64, and optionally content_type"


NODE = Param("node_id", Text(min_length=1), required=True, rest=In.PATH)
REPLY = json_reply("Node", "the node")


@pytest.mark.parametrize(
    "params,route",
    [
        ((NODE,), Route("GET", "/nodes", "the path lacks {node_id}")),
        ((), Route("GET", "/nodes/{node_id}", "no such param")),
        ((Param("node_id", Text(), rest=In.QUERY),), Route("GET", "/nodes/{node_id}", "not a path param")),
        ((NODE, Param("on", Boolean(), rest=None)), Route("POST", "/nodes/{node_id}/drain", "on is neither read nor fixed")),
        ((NODE,), Route("POST", "/nodes/{node_id}/drain", "fixes a param it does not have", fixed={"on": True})),
        ((Param("nodes", TextList(), rest=In.QUERY),), Route("GET", "/x", "a list cannot come as text")),
        ((Param("a", Integer()), Param("v", Value(), rest=In.RAW_BODY)), Route("POST", "/x", "a JSON field and a raw body")),
        ((Param("t", Text(), rest=In.CONTENT_TYPE),), Route("POST", "/x", "a Content-Type without a raw body")),
        ((Param("a", Integer()), Param("b", Integer(), nats="a")), Route("POST", "/x", "two params, one NATS name")),
    ],
    ids=lambda v: v.summary if isinstance(v, Route) else None,
)
def test_a_declaration_that_does_not_hold_together_is_refused_when_made(params, route):
    with pytest.raises(ValueError):
        Endpoint("bad", "node", params, REPLY, (route,))


def test_a_declaration_that_holds_together():
    drain = Endpoint(
        "drain", "drain", (NODE, Param("on", Boolean(), default=True, rest=None, nats="drain")), REPLY,
        (Route("POST", "/nodes/{node_id}/drain", "drain", fixed={"on": True}), Route("DELETE", "/nodes/{node_id}/drain", "undo", fixed={"on": False})),
        nats="cluster.drain",
    )
    assert drain.nats_fields() == {"node_id", "drain"} and drain.body(drain.rest[0]) == "none"
    put = Endpoint("put", "kv_put", (Param("key", Key(), required=True, rest=In.PATH), Param("value", Value(), required=True, rest=In.RAW_BODY)),
                   Reply("empty", "stored", status=204), (Route("PUT", "/data/{key}", "store"),))
    assert put.body(put.rest[0]) == "raw"
