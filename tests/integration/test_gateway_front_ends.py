"""REST and the NATS API answer a request alike, because both check it with the
same declaration (torua.gateway.endpoints): the same refusal, code, status and
words, for the same wrong input; the same answer for a right one. And what a
real cluster answers has the shape /openapi.json gives.

Refusals: one real gateway on its own nats-server, with no coordinator and no
node: a request that gets past the checks is answered no_coordinator or
unavailable (503) by both, which shows it got past them on both."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import aiohttp
import nats
import pytest
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from yarl import URL

from tests.support.processes import free_port, start_nats, wait_until
from torua.cli.up import torua_command

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gateway(module_group) -> tuple[str, str]:
    """(REST base URL, NATS URL) of one gateway alone on its nats-server."""
    _, nats_url = start_nats(module_group)
    port = free_port()
    argv = torua_command() + ["gateway", "--port", str(port), "--metrics-port", "0", "--request-timeout", "3", "--nats-url", nats_url, "--log-level", "info"]
    proc = module_group.start("gateway-front-ends", argv)

    def answers() -> bool:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200

    wait_until(lambda: not proc.alive() or answers(), 20, "the gateway to answer")
    assert proc.alive(), proc.log()
    return f"http://127.0.0.1:{port}", nats_url


@pytest.fixture
async def clients(gateway):
    base, nats_url = gateway
    nc = await nats.connect(nats_url)
    try:
        async with aiohttp.ClientSession() as http:
            yield base, http, nc
    finally:
        await nc.close()


async def over_rest(http: aiohttp.ClientSession, base: str, method: str, target: str, body) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    resp = await http.request(method, URL(base + target, encoded=True), data=data, headers=JSON if body is not None else {})
    return resp.status, (await resp.json())["error"]


async def over_nats(nc, subject: str, body: dict) -> tuple[int, dict]:
    msg = await nc.request("torua.api." + subject, json.dumps(body).encode(), timeout=10, headers=JSON)
    assert "Nats-Service-Error-Code" in (msg.headers or {}), msg.data
    return int(msg.headers["Nats-Service-Error-Code"]), json.loads(msg.data)["error"]


# (REST method, target, JSON body or None; NATS subject, payload; the code both answer)
CASES = [
    ("POST", "/shards/assign", {"shard_id": "zero", "node_id": "n1"}, "cluster.assign", None, "bad_request"),
    ("POST", "/shards/assign", {"shard_id": True, "node_id": "n1"}, "cluster.assign", None, "bad_request"),
    ("POST", "/shards/assign", {"shard_id": 1}, "cluster.assign", None, "bad_request"),
    ("POST", "/shards/assign", {"shard_id": 1, "node_id": ""}, "cluster.assign", None, "bad_request"),
    ("POST", "/shards/assign", {"shard_id": 1, "node_id": "n1", "force": True}, "cluster.assign", None, "bad_request"),
    ("POST", "/shards/assign", {"shard_id": 1, "node_id": "n1"}, "cluster.assign", None, "unavailable"),
    ("POST", "/nodes/maintenance", {"nodes": [], "maintenance": True}, "cluster.maintenance", None, "bad_request"),
    ("POST", "/nodes/maintenance", {"nodes": ["n1"]}, "cluster.maintenance", None, "bad_request"),
    ("POST", "/nodes/maintenance", {"nodes": ["n1"], "maintenance": "yes"}, "cluster.maintenance", None, "bad_request"),
    ("POST", "/nodes/maintenance", {"nodes": ["n1"], "maintenance": True, "drain": 1}, "cluster.maintenance", None, "bad_request"),
    ("POST", "/nodes/maintenance", {"nodes": ["n1"], "maintenance": True, "extra": 1}, "cluster.maintenance", None, "bad_request"),
    ("POST", "/nodes/maintenance", {"nodes": ["n1"], "maintenance": True}, "cluster.maintenance", None, "no_coordinator"),
    ("POST", "/broadcast", {}, "cluster.broadcast", None, "bad_request"),
    ("POST", "/broadcast", {"kind": 3}, "cluster.broadcast", None, "bad_request"),
    ("POST", "/broadcast", {"kind": ""}, "cluster.broadcast", None, "bad_request"),
    ("POST", "/broadcast", {"kind": "ping", "body": [1]}, "cluster.broadcast", None, "bad_request"),
    ("POST", "/broadcast", {"kind": "config", "body": {}}, "cluster.broadcast", None, "bad_request"),
    ("POST", "/broadcast", {"kind": "ping", "extra": 1}, "cluster.broadcast", None, "bad_request"),
    ("PUT", "/cluster/config", {"max_moves": 3}, "cluster.config.set", {"max_moves": 3}, "no_coordinator"),
    ("GET", "/cluster/allocation/explain", None, "cluster.explain", {}, "bad_request"),
    ("GET", "/cluster/allocation/explain?shard=x", None, "cluster.explain", {"shard": "x"}, "bad_request"),
    ("GET", "/cluster/allocation/explain?shard=3", None, "cluster.explain", {"shard": 3}, "no_coordinator"),
    ("POST", "/cluster/rebalance?dry_run=maybe", None, "cluster.rebalance", {"dry_run": "maybe"}, "bad_request"),
    ("POST", "/cluster/rebalance?dry_run=true", None, "cluster.rebalance", {"dry_run": True}, "no_coordinator"),
    ("GET", "/nodes/n1", None, "cluster.node", {"node": "n1"}, "no_coordinator"),
    ("GET", "/cluster/info", None, "cluster.info", {}, "no_coordinator"),
    ("GET", "/data/k?consistency=weird", None, "kv.get", {"key": "k", "consistency": "weird"}, "bad_request"),
    ("GET", "/data/k?consistency=eventual", None, "kv.get", {"key": "k", "consistency": "eventual"}, "unavailable"),
    ("GET", "/data/a%00b", None, "kv.get", {"key": "a\u0000b"}, "bad_request"),
    ("DELETE", "/data/" + quote("k" * 1025), None, "kv.delete", {"key": "k" * 1025}, "bad_request"),
    ("GET", "/data?prefix=%00", None, "kv.list", {"prefix": "\u0000"}, "bad_request"),
    ("GET", "/data?limit=2", None, "kv.list", {"limit": 2}, "unavailable"),
    # graphs: with no coordinator there is no graph catalog either (503 once the checks pass)
    ("PUT", "/graphs/a%20b", {}, "graph.create", {"graph": "a b"}, "bad_request"),
    ("PUT", "/graphs/g", {"vector_dim": -1}, "graph.create", {"graph": "g", "vector_dim": -1}, "bad_request"),
    ("PUT", "/graphs/g", {"metric": "dot"}, "graph.create", {"graph": "g", "metric": "dot"}, "bad_request"),
    ("PUT", "/graphs/g", {"vector_dim": 3}, "graph.create", {"graph": "g", "vector_dim": 3}, "unavailable"),
    ("PUT", "/graphs/g/vertices/a", {"label": 3}, "graph.vertex.put", {"graph": "g", "id": "a", "label": 3}, "bad_request"),
    ("PUT", "/graphs/g/vertices/a", {"label": "L", "embedding": ["x"]}, "graph.vertex.put", {"graph": "g", "id": "a", "label": "L", "embedding": ["x"]}, "bad_request"),
    ("GET", "/graphs/g/vertices/a%00b", None, "graph.vertex.get", {"graph": "g", "id": "a\u0000b"}, "bad_request"),
    ("GET", "/graphs/g/vertices/a", None, "graph.vertex.get", {"graph": "g", "id": "a"}, "unavailable"),
    ("GET", "/graphs/g/vertices/a/edges?direction=up", None, "graph.edges", {"graph": "g", "id": "a", "direction": "up"}, "bad_request"),
    ("DELETE", "/graphs/g/edges?src=a&dst=b", None, "graph.edge.delete", {"graph": "g", "src": "a", "dst": "b"}, "bad_request"),
    ("PUT", "/graphs/g/edges", {"src": "a", "type": "t", "dst": "b", "weight": "heavy"}, "graph.edge.put", {"graph": "g", "src": "a", "type": "t", "dst": "b", "weight": "heavy"}, "bad_request"),
    ("POST", "/graphs/g/traverse", {"from": ["a"], "max_hops": 7}, "graph.traverse", {"graph": "g", "from": ["a"], "max_hops": 7}, "bad_request"),
    ("POST", "/graphs/g/traverse", {"from": "a"}, "graph.traverse", {"graph": "g", "from": "a"}, "bad_request"),
    ("POST", "/graphs/g/traverse", {"from": ["a"]}, "graph.traverse", {"graph": "g", "from": ["a"]}, "unavailable"),
    ("POST", "/graphs/g/shortest-path", {"from": "a"}, "graph.shortest_path", {"graph": "g", "from": "a"}, "bad_request"),
    ("POST", "/graphs/g/search/vector", {"vector": [1], "k": 1001}, "graph.search.vector", {"graph": "g", "vector": [1], "k": 1001}, "bad_request"),
    ("POST", "/graphs/g/search/text", {"query": ""}, "graph.search.text", {"graph": "g", "query": ""}, "bad_request"),
    ("POST", "/graphs/g/cypher", {"query": "MATCH (n) RETURN n", "params": [1]}, "graph.cypher", {"graph": "g", "query": "MATCH (n) RETURN n", "params": [1]}, "bad_request"),
    ("GET", "/graphs", None, "graph.list", {}, "unavailable"),
]


@pytest.mark.parametrize("method,target,body,subject,payload,code", CASES, ids=[f"{c[0]} {c[1]} {json.dumps(c[2])}"[:70] for c in CASES])
async def test_rest_and_nats_answer_a_request_alike(clients, method, target, body, subject, payload, code):
    base, http, nc = clients
    rest = await over_rest(http, base, method, target, body)
    via_nats = await over_nats(nc, subject, body if payload is None else payload)
    assert rest[1]["code"] == code, rest
    assert rest == via_nats


@pytest.mark.parametrize(
    "target,payload",
    [("/data?limit=0", {"limit": 0}), ("/data?limit=1001", {"limit": 1001}), ("/cluster/allocation/explain?shard=-1", {"shard": -1})],
)
async def test_a_number_out_of_range_is_refused_alike(clients, target, payload):
    """The same words, but for how the value came: text in a query ('0'), a number over NATS (0)."""
    base, http, nc = clients
    subject = "kv.list" if target.startswith("/data") else "cluster.explain"
    (status, rest), (nats_status, via_nats) = await over_rest(http, base, "GET", target, None), await over_nats(nc, subject, payload)
    assert status == nats_status == 400 and rest["code"] == via_nats["code"] == "bad_request"
    assert rest["message"].split(", not ")[0] == via_nats["message"].split(", not ")[0], (rest, via_nats)
    assert rest["fields"].keys() == via_nats["fields"].keys()


# ------------------------------------------- answers match the document's shapes

SPEC_URI = "urn:torua:openapi"
# (method, target, JSON body or None): one request for each JSON answer a cluster gives.
ANSWERS = [
    ("GET", "/shards", None),
    ("GET", "/nodes", None),
    ("GET", "/nodes/n1", None),
    ("GET", "/cluster/info", None),
    ("GET", "/cluster/health", None),
    ("GET", "/cluster/config", None),
    ("GET", "/cluster/allocation/explain?shard=0", None),
    ("POST", "/cluster/rebalance?dry_run=true", None),
    ("POST", "/broadcast", {"kind": "ping"}),
    ("POST", "/nodes/maintenance", {"nodes": ["n3"], "maintenance": False}),
    ("DELETE", "/nodes/n3/drain", None),
    ("DELETE", "/nodes/n3/evacuate", None),
    ("GET", "/data?limit=5", None),
    ("GET", "/keys/a%2Fb/location", None),
    ("GET", "/health", None),
    # graphs, in this order: each request's data is there for the next ones
    ("PUT", "/graphs/shapes", {"vector_dim": 2, "text_properties": ["text"]}),
    ("PUT", "/graphs/shapes/vertices/a", {"label": "L", "properties": {"text": "x"}, "embedding": [1, 2]}),
    ("PUT", "/graphs/shapes/vertices/b%2Fc", {"label": "L"}),
    ("PUT", "/graphs/shapes/edges", {"src": "a", "type": "t", "dst": "b/c", "properties": {"w": 1}}),
    ("GET", "/graphs/shapes/vertices/a?embedding=true", None),
    ("GET", "/graphs/shapes/vertices/a/edges?direction=both&limit=1", None),
    ("GET", "/graphs", None),
    ("GET", "/graphs/shapes", None),
    ("POST", "/graphs/shapes/traverse", {"from": ["a"], "edges": True}),
    ("POST", "/graphs/shapes/shortest-path", {"from": "a", "to": "b/c"}),
]


@pytest.mark.parametrize("method,target,body", ANSWERS, ids=[f"{m} {t}" for m, t, _ in ANSWERS])
def test_every_json_answer_has_the_shape_the_openapi_document_gives(shared_cluster, method, target, body):
    """The response shapes (torua.gateway.schemas) are written by hand: checked here
    against what a real cluster answers, as /openapi.json serves them."""
    status, spec = shared_cluster.json("GET", "/openapi.json")
    assert status == 200
    path = target.split("?", 1)[0]
    template = path if path in spec["paths"] else next(p for p in spec["paths"] if _matches(p, path))
    # a cluster just started may answer 503 for a moment (e.g. the graph catalog not read yet)
    status, answer = wait_until(lambda: (r := shared_cluster.json(method, target, body))[0] != 503 and r, 30, f"{method} {target} to answer")
    schema = spec["paths"][template][method.lower()]["responses"][str(status)]["content"]["application/json"]["schema"]
    # The document as a resource of its own, so that the shapes' #/components/... refs resolve in it.
    registry = Registry().with_resource(SPEC_URI, Resource(contents=spec, specification=DRAFT202012))
    OAS31Validator({"$ref": SPEC_URI + schema["$ref"]}, registry=registry).validate(answer)
    assert _undocumented(answer, schema, spec) == [], "fields the document does not describe"


def _matches(template: str, path: str) -> bool:
    return re.fullmatch(re.sub(r"\\\{[^}]*\\\}", r"[^/]+", re.escape(template)), path) is not None




def _undocumented(value, schema: dict, spec: dict, where: str = "") -> list[str]:
    """The fields of `value` that `schema` (an object's `properties`, wherever they are) does not name."""
    while "$ref" in schema:
        target = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    for choice in schema.get("oneOf", []):
        if value is not None and choice.get("type") != "null":
            return _undocumented(value, choice, spec, where)
    out: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for name, member in value.items():
            if name not in schema["properties"]:
                out.append(f"{where}.{name}")
            else:
                out += _undocumented(member, schema["properties"][name], spec, f"{where}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value[:3]):
            out += _undocumented(item, schema["items"], spec, f"{where}[{i}]")
    return out
