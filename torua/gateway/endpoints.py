"""Every operation of the gateway's public APIs, declared once.

An `Endpoint` says which `Gateway` method does the work, its inputs (`Param`:
type, bounds, required or default, where REST reads each one), what it answers
(`Reply`), its REST route(s), its NATS subject under ``torua.api.`` and the error
codes it may answer beyond the ones every request may get (`bad_request`,
`internal`). From this table alone come the aiohttp routes and handlers
(`torua.gateway.http.make_app`), the `nats.micro` endpoints
(`torua.gateway.nats_api.NatsApi`) and the OpenAPI 3.1 document
(`torua.gateway.openapi`); both front-ends check inputs with the same `bind`.

Adding an endpoint: one `Endpoint` here, one `Gateway` method whose keyword
arguments are the params' names, a row in the README's API table (and in
docs/protocol.md's NATS table when it has a subject). Pure: no aiohttp, no nats.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping

from torua.gateway.params import (
    Boolean, In, Integer, JsonObject, Key, Ndjson, Number, Numbers, Param, Schema, Text, TextList, Value, VertexId, VertexIds, expected_fields,
)
from torua.access import RULES
from torua.api_keys import ApiKey, Rule, check_reach, visible
from torua.gateway.audit import ADMIN_OPERATIONS
from torua.graph import rules as graph_rules
from torua.rag.rules import EMBEDDER_NAMES, EXTRACTOR_NAMES, MAX_K as RAG_MAX_K, MAX_QUESTION_CHARS, MODES
from torua.protocol.errors import ToruaError
from torua.kv_rules import MAX_LIMIT

# Shard numbers fit msgpack's integers with room to spare (a cluster has at most 4096).
MAX_SHARD_NUMBER = 1 << 31

# JSON bodies (POST /shards/assign, ...) never need more than this; graph writes and
# reads carry properties, embeddings and lists of ids: `GRAPH_JSON_BODY`.
MAX_JSON_BODY = 64 << 10
GRAPH_JSON_BODY = 4 << 20

# Codes any request may get, so no endpoint lists them.
EVERY_REQUEST = ("bad_request", "internal")


@dataclass(frozen=True)
class Reply:
    """What an operation answers on success.

    - ``json``: a JSON document, `schema` a component of `torua.gateway.schemas` by name (or inline);
    - ``empty``: nothing (REST 204; NATS ``{"ok": true}``);
    - ``value``: a stored value (REST: its bytes with their Content-Type; NATS:
      ``{"key", "value"|"value_b64", "content_type"}``, `torua.gateway.nats_api.value_reply`);
    - ``text``: a text document (REST only, e.g. /metrics).

    `accepted_when` names a boolean field of the result that makes the REST status 202,
    `created_when` one that makes it 201 (a PUT that created what it names).
    """

    kind: Literal["json", "empty", "value", "text"]
    description: str
    schema: str | Schema | None = None
    status: int = 200
    accepted_when: str | None = None
    accepted_description: str = ""
    content_type: str = "application/json"
    created_when: str | None = None
    created_description: str = ""

    def status_of(self, result: Any, status: int) -> int:
        """The REST status of `result` on a route whose plain success status is `status`."""
        if self.accepted_when and result[self.accepted_when]:
            return 202
        if self.created_when and result[self.created_when]:
            return 201
        return status


def json_reply(schema: str | Schema, description: str, status: int = 200, **more: Any) -> Reply:
    return Reply("json", description, schema, status, **more)


@dataclass(frozen=True)
class Route:
    """One REST route of an endpoint. `fixed` gives params their values on this route
    (``POST .../drain`` is on=True, ``DELETE .../drain`` on=False); `status` and
    `described` override the reply's, `errors` the endpoint's error codes; `name` is its
    OpenAPI operationId (default: the endpoint's)."""

    method: str
    path: str
    summary: str
    name: str = ""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    status: int | None = None
    described: str = ""
    errors: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Endpoint:
    """One operation, checked when declared (a route whose path names a param that is
    not a path param, a param REST cannot read, two kinds of body... raise ValueError).

    >>> Endpoint("node", "node", (NODE_ID,), json_reply("Node", "the node"),
    ...          (Route("GET", "/nodes/{node_id}", "One node"),), nats="cluster.node").nats_fields()
    frozenset({'node'})
    """

    name: str
    call: str | None  # the Gateway method; None: served by the front-end itself (/openapi.json, /metrics)
    params: tuple[Param, ...]
    reply: Reply
    rest: tuple[Route, ...]
    nats: str | None = None  # the subject under torua.api., e.g. "kv.get"; None: REST only
    errors: tuple[str, ...] = ()  # error codes it may answer besides EVERY_REQUEST's
    max_json_body: int = MAX_JSON_BODY  # REST: the largest JSON body it reads (413 above)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names) or len({p.nats_name for p in self.params}) != len(names):
            raise ValueError(f"{self.name}: two params with one name")
        for route in self.rest:
            read = self.read_over_rest(route)
            if not set(route.fixed) <= set(names) or any(p.rest is None for p in read):
                raise ValueError(f"{self.name} {route.method} {route.path}: a param REST does not read needs a fixed value")
            if set(re.findall(r"\{(\w+)\}", route.path)) != {p.name for p in read if p.rest is In.PATH}:
                raise ValueError(f"{self.name} {route.method} {route.path}: the path's {{params}} are not its path params")
            if any(p.rest in (In.PATH, In.QUERY, In.CONTENT_TYPE) and not p.kind.from_text for p in read):
                raise ValueError(f"{self.name}: a path, query or header param must be of a kind read from text")
            places = {p.rest for p in read}
            if len(places & {In.BODY, In.WHOLE_BODY, In.RAW_BODY, In.NDJSON}) > 1 or (In.CONTENT_TYPE in places and In.RAW_BODY not in places):
                raise ValueError(f"{self.name} {route.method} {route.path}: one kind of body (a Content-Type param goes with a raw one)")

    def read_over_rest(self, route: Route) -> tuple[Param, ...]:
        """The params a request on `route` carries (the others are fixed by the route)."""
        return tuple(p for p in self.params if p.name not in route.fixed)

    def body(self, route: Route) -> Literal["json", "whole", "raw", "ndjson", "none"]:
        """What a request on `route` must send as its body: a JSON object whose fields are
        params, a JSON object that is one param whole, raw bytes, JSON lines, or nothing."""
        places = {p.rest for p in self.read_over_rest(route)}
        if In.RAW_BODY in places:
            return "raw"
        if In.NDJSON in places:
            return "ndjson"
        if In.WHOLE_BODY in places:
            return "whole"
        return "json" if In.BODY in places else "none"

    @property
    def whole(self) -> Param | None:
        """The param that is the whole body (NATS: the whole payload), if there is one."""
        return next((p for p in self.params if p.rest is In.WHOLE_BODY), None)

    def nats_fields(self) -> frozenset[str]:
        """The fields a NATS request may carry (a value may come as value or value_b64)."""
        names = {p.nats_name for p in self.params}
        names |= {f"{p.nats_name}_b64" for p in self.params if isinstance(p.kind, Value)}
        return frozenset(names)

    def nats_expected(self) -> str:
        def said(p: Param) -> str:
            return f"{p.nats_name} or {p.nats_name}_b64" if isinstance(p.kind, Value) else p.nats_name

        return expected_fields([said(p) for p in self.params if p.required], [said(p) for p in self.params if not p.required])

    def body_expected(self, route: Route) -> tuple[frozenset[str], str]:
        """The fields a JSON body on `route` may carry, and how an error says them."""
        fields = [p for p in self.read_over_rest(route) if p.rest is In.BODY]
        return frozenset(p.name for p in fields), expected_fields([p.name for p in fields if p.required], [p.name for p in fields if not p.required])


async def call(gateway: Any, endpoint: Endpoint, kwargs: Mapping[str, Any], who: str = "", key: ApiKey | None = None) -> Any:
    """Run `endpoint`'s Gateway method with the arguments `bind` checked (it may be a plain
    function), each under its param's `argument` name, if `key` (the request's API key,
    its role already checked; None: no key needed) reaches what they name; a tenant key
    sees only its own part of the answer. An admin operation (torua.gateway.audit) is
    recorded with `who` asked and how it ended."""
    assert endpoint.call is not None, f"{endpoint.name} is served by the front-end itself"
    rule = RULES[endpoint.name]
    renamed = {p.name: p.argument for p in endpoint.params}
    if key is not None:
        who = key.caller(who)
    if endpoint.name not in ADMIN_OPERATIONS:
        if key is not None:
            check_reach(rule, key, kwargs, endpoint.name)
        result = getattr(gateway, endpoint.call)(**{renamed.get(name, name): value for name, value in kwargs.items()})
        return visible(rule, key, await result if inspect.isawaitable(result) else result)
    outcome = "internal"
    try:
        if key is not None:
            check_reach(rule, key, kwargs, endpoint.name)
        result = getattr(gateway, endpoint.call)(**{renamed.get(name, name): value for name, value in kwargs.items()})
        result = await result if inspect.isawaitable(result) else result
        outcome = "ok"
        return result
    except ToruaError as exc:
        outcome = exc.code
        raise
    finally:
        gateway.audited(endpoint.name, kwargs, who, outcome)


# ------------------------------------------------------------------ inputs

KEY_DOC = (
    "everything after /data/ (or /keys/), percent-decoded strictly: 1-1024 bytes of UTF-8, no NUL; "
    "slashes allowed, raw or as %2F; every other character a key may hold percent-encoded (%0A for a newline, "
    "%23 for '#', %3F for '?'); the query string is not part of it"
)


def key(route_pattern: str = r"[\s\S]+") -> Param:
    # [\s\S]: any character, newline included (a key may hold one, sent as %0A): the
    # front-end reads the key from the raw path; the pattern only has to let it through.
    return Param("key", Key(route_pattern=route_pattern), required=True, rest=In.PATH, doc=KEY_DOC)


NODE_ID = Param("node_id", Text(min_length=1), required=True, rest=In.PATH, nats="node", doc="a node id, e.g. n1")

# ------------------------------------------------------------------ the table

KV: tuple[Endpoint, ...] = (
    Endpoint(
        "kv_list",
        "kv_list",
        (
            Param(
                "prefix", Text(), default="", rest=In.QUERY,
                doc="keys starting with this; it follows the key rules (UTF-8, no NUL, at most 1024 bytes) but may be empty",
            ),
            Param("limit", Integer(1, MAX_LIMIT), default=100, rest=In.QUERY),
            Param("cursor", Text(), rest=In.QUERY, doc="next_cursor of the previous page (opaque)"),
        ),
        json_reply("KeyPage", "a page of keys; sorted within a shard, shards in order"),
        (Route("GET", "/data", "List keys across shards, one page at a time"),),
        nats="kv.list",
        errors=("unavailable", "timeout"),
    ),
    Endpoint(
        "kv_get",
        "kv_get",
        (
            key(r"[\s\S]*"),  # "/data/" too: an empty key is a 400, not a missing route
            Param(
                "consistency", Text(choices=("strong", "eventual")), default="strong", rest=In.QUERY,
                doc="strong reads the primary and sees every acknowledged write; eventual may be answered by an in-sync replica, which can lag a little",
            ),
        ),
        Reply("value", "the stored bytes, with the Content-Type they were stored with (served inert: nosniff, a sandboxing CSP)"),
        (Route("GET", "/data/{key}", "Read a value"),),
        nats="kv.get",
        errors=("not_found", "unavailable", "timeout"),
    ),
    Endpoint(
        "kv_put",
        "kv_put",
        (
            key(r"[\s\S]*"),
            Param("value", Value(), required=True, rest=In.RAW_BODY, doc="the value: at most max_value_bytes"),
            Param(
                "content_type", Text(), rest=In.CONTENT_TYPE,
                doc="stored with the value and served with it: printable ASCII, at most 255 characters; default application/octet-stream",
            ),
        ),
        Reply("empty", "stored", status=204),
        (Route("PUT", "/data/{key}", "Store the raw body (at most max_value_bytes) with its Content-Type (default application/octet-stream)"),),
        nats="kv.put",
        errors=("value_too_large", "unavailable", "timeout"),
    ),
    Endpoint(
        "kv_delete",
        "kv_delete",
        (key(r"[\s\S]*"),),
        Reply("empty", "gone", status=204),
        (Route("DELETE", "/data/{key}", "Delete a key (idempotent: a missing key is fine)"),),
        nats="kv.delete",
        errors=("unavailable", "timeout"),
    ),
    Endpoint(
        "location",
        "location",
        (key(),),
        json_reply("Location", "the key's shard and its primary"),
        (Route("GET", "/keys/{key}/location", "Which shard and node hold a key"),),
        errors=("unavailable",),
    ),
)

CLUSTER: tuple[Endpoint, ...] = (
    Endpoint(
        "shards",
        "shards",
        (),
        json_reply("Shards", "every shard and its node"),
        (Route("GET", "/shards", "The shard map"),),
        nats="cluster.shards",
        errors=("unavailable",),
    ),
    Endpoint(
        "assign",
        "assign",
        (
            # Any integer the wire carries: one outside 0..num_shards-1 is unknown_shard (404), not a 400.
            Param("shard_id", Integer(), required=True, doc="0 to num_shards - 1 (404 unknown_shard otherwise)", schema_extra={"minimum": 0}),
            Param("node_id", Text(min_length=1), required=True),
        ),
        json_reply("AssignResult", "the move started, or the node already holds it", status=202),
        (Route("POST", "/shards/assign", "Move a shard, with its data, to a node"),),
        nats="cluster.assign",
        errors=("unknown_shard", "unknown_node", "conflict", "no_coordinator", "timeout"),
    ),
    Endpoint(
        "nodes",
        "nodes",
        (),
        json_reply("Nodes", "nodes"),
        (Route("GET", "/nodes", "Every node the coordinator knows"),),
        nats="cluster.nodes",
        errors=("no_coordinator",),
    ),
    Endpoint(
        "node",
        "node",
        (NODE_ID,),
        json_reply("Node", "the node"),
        (Route("GET", "/nodes/{node_id}", "One node"),),
        nats="cluster.node",
        errors=("unknown_node", "no_coordinator"),
    ),
    Endpoint(
        "drain",
        "drain",
        (NODE_ID, Param("on", Boolean(), default=True, rest=None, nats="drain", doc="false undoes a drain")),
        json_reply("Node", "the node"),
        (
            Route("POST", "/nodes/{node_id}/drain", "Move every copy off the node (status draining, then drained)", fixed={"on": True}, status=202, described="the node, now draining"),
            Route("DELETE", "/nodes/{node_id}/drain", "Undo a drain: the node may take copies again", name="undrain", fixed={"on": False}),
        ),
        nats="cluster.drain",
        errors=("unknown_node", "no_coordinator", "timeout"),
    ),
    Endpoint(
        "maintenance",
        "maintenance",
        (
            Param("nodes", TextList(min_items=1), required=True, what="a non-empty list of node ids"),
            Param("maintenance", Boolean(), required=True),
            Param("drain", Boolean(), default=False, doc="also move their copies off (needs maintenance: true)"),
        ),
        json_reply("MaintenanceResult", "the named nodes"),
        (Route("POST", "/nodes/maintenance", "Put several nodes in maintenance (no new copies; drain: true also moves theirs off) or take them out; all or none"),),
        nats="cluster.maintenance",
        errors=("unknown_node", "no_coordinator", "timeout"),
    ),
    Endpoint(
        "evacuate",
        "evacuate",
        (NODE_ID, Param("on", Boolean(), default=True, rest=None, nats="evacuate", doc="false undoes an evacuation")),
        json_reply("Node", "the node"),
        (
            Route(
                "POST", "/nodes/{node_id}/evacuate",
                "Move every copy off the node now (status evacuating, then evacuated); 409 if the other nodes have no room",
                fixed={"on": True}, status=202, described="the node, now evacuating",
            ),
            Route(
                "DELETE", "/nodes/{node_id}/evacuate", "Undo an evacuation: the node may take copies again", name="unevacuate",
                fixed={"on": False}, errors=("unknown_node", "no_coordinator", "timeout"),
            ),
        ),
        nats="cluster.evacuate",
        errors=("unknown_node", "conflict", "no_coordinator", "timeout"),
    ),
    Endpoint(
        "explain",
        "explain",
        (Param("shard", Integer(0, MAX_SHARD_NUMBER - 1), required=True, rest=In.QUERY, what="a shard number (0, 1, ...)"),),
        json_reply("AllocationExplanation", "the explanation"),
        (Route("GET", "/cluster/allocation/explain", "Why a shard's copies are where they are, and why other nodes hold none"),),
        nats="cluster.explain",
        errors=("no_coordinator",),
    ),
    Endpoint(
        "cluster_info",
        "cluster_info",
        (),
        json_reply("ClusterInfo", "info"),
        (Route("GET", "/cluster/info", "Cluster id, leading coordinator and standbys, versions, counts, moves in flight"),),
        nats="cluster.info",
        errors=("no_coordinator",),
    ),
    Endpoint(
        "cluster_health",
        "cluster_health",
        (),
        json_reply("ClusterHealth", "health"),
        (Route("GET", "/cluster/health", "green / yellow / red, with counts"),),
        nats="cluster.health",
        errors=("no_coordinator",),
    ),
    Endpoint(
        "cluster_config",
        "cluster_config",
        (),
        json_reply("ClusterConfig", "settings"),
        (Route("GET", "/cluster/config", "The cluster settings, their revision, and what each one means"),),
        nats="cluster.config",
        errors=("no_coordinator",),
    ),
    Endpoint(
        "set_cluster_config",
        "set_cluster_config",
        # The coordinator checks the settings, naming each bad one in `fields`.
        (Param("changes", JsonObject(), required=True, rest=In.WHOLE_BODY, schema_extra={"$ref": "#/components/schemas/SettingsChange"}),),
        json_reply("ClusterConfigChanged", "the new settings and which nodes applied them"),
        (Route("PUT", "/cluster/config", "Change cluster settings, all or nothing: persisted, applied by the coordinator, sent to every node"),),
        nats="cluster.config.set",
        errors=("conflict", "no_coordinator", "timeout"),
    ),
    Endpoint(
        "rebalance",
        "rebalance",
        (Param("dry_run", Boolean(), default=False, rest=In.QUERY, doc="only say what it would do"),),
        json_reply(
            "Rebalance", "nothing started (balanced, busy, settling or a dry run), and why",
            accepted_when="started", accepted_description="moves started",
        ),
        (Route("POST", "/cluster/rebalance", "Spread hot shards now: move or swap shards off the busiest node, keeping shard counts balanced"),),
        nats="cluster.rebalance",
        errors=("no_coordinator", "timeout"),
    ),
    Endpoint(
        "broadcast",
        "broadcast",
        (
            Param("kind", Text(min_length=1), required=True, schema_extra={"examples": ["ping"]}),
            Param("body", JsonObject(), doc="what the kind needs; default {}"),
        ),
        json_reply("BroadcastResult", "every answer, and the healthy nodes that did not answer"),
        (Route("POST", "/broadcast", "Send a message (kind ping, ...) to every node and gather their answers"),),
        nats="cluster.broadcast",
        errors=("unavailable",),
    ),
)

GATEWAY: tuple[Endpoint, ...] = (
    Endpoint(
        "health",
        "gateway_health",
        (),
        json_reply("GatewayHealth", "gateway status"),
        (Route("GET", "/health", "This gateway (answers without asking the cluster)"),),
    ),
    Endpoint("openapi", None, (), json_reply({"type": "object"}, "OpenAPI 3.1"), (Route("GET", "/openapi.json", "This document"),)),
    Endpoint(
        "metrics",
        None,
        (),
        Reply("text", "metrics", content_type="text/plain"),
        (Route("GET", "/metrics", "Prometheus metrics of this gateway (text exposition format)"),),
    ),
)

# ------------------------------------------------------------------ API keys

KEY_ID = Param("key_id", Text(pattern=r"[0-9a-f]{16}"), required=True, rest=In.PATH, nats="id", what="a key id: 16 hex digits", doc="the key's id (16 hex digits)")

AUTH: tuple[Endpoint, ...] = (
    Endpoint(
        "auth_create",
        "auth_create",
        (
            Param("name", Text(min_length=1, max_length=64), required=True, doc="who or what holds it, for people and the audit trail"),
            Param("role", Text(choices=("read", "write", "admin")), required=True, doc="read < write < admin"),
            Param("graphs", TextList(), doc="a tenant key: the graphs it may reach (with prefixes; neither given: the whole cluster)"),
            Param("prefixes", TextList(), doc="a tenant key: the key prefixes it may reach"),
            Param("rate", Number(), doc="requests a second it may make at each gateway and node (a burst of as many; 429 beyond); absent: no limit"),
            Param("max_bytes", Integer(1, 1 << 30), doc="the largest request it may send: a REST body, a NATS payload (413 above); absent: the gateway's own limits"),
        ),
        json_reply("NewApiKey", "the key: its token is shown here once, and only its SHA-256 is kept", status=201),
        (Route("POST", "/auth/keys", "Make an API key"),),
        nats="auth.keys.create",
        errors=("conflict", "unavailable"),
    ),
    Endpoint(
        "auth_list",
        "auth_list",
        (),
        json_reply("ApiKeys", "every key, revoked ones too (never a token or a hash)"),
        (Route("GET", "/auth/keys", "The API keys"),),
        nats="auth.keys.list",
        errors=("unavailable",),
    ),
    Endpoint(
        "auth_revoke",
        "auth_revoke",
        (KEY_ID,),
        json_reply("ApiKey", "the key, revoked: every gateway refuses it from now on"),
        (Route("DELETE", "/auth/keys/{key_id}", "Revoke an API key"),),
        nats="auth.keys.revoke",
        errors=("not_found", "unavailable"),
    ),
)

# ------------------------------------------------------------------ graphs

GRAPH_NAME = Param(
    "graph", Text(pattern=graph_rules.GRAPH_NAME.pattern), required=True, rest=In.PATH,
    what="a graph name: 1 to 64 letters, digits, '-' or '_'", doc="the graph's name: 1 to 64 letters, digits, '-' or '_'",
)
VERTEX_DOC = (
    "the vertex id, everything after /vertices/ (a key's rules: 1-1024 bytes of UTF-8, no NUL), percent-decoded strictly "
    "like a key; an id ending in /edges is sent with its slashes as %2F"
)


def vertex_id(name: str = "id", rest: In | None = In.PATH, doc: str = VERTEX_DOC, **more: Any) -> Param:
    return Param(name, VertexId(name=name), required=True, rest=rest, doc=doc, **more)


DIRECTION = Param("direction", Text(choices=("out", "in", "both")), default="out", doc="edges leaving the vertex, entering it, or both")
TYPES = Param("types", TextList(), doc="edge types to follow; absent or empty: every type")
HOPS = Param(
    "max_hops", Integer(graph_rules.MIN_HOPS, graph_rules.MAX_HOPS), default=graph_rules.DEFAULT_HOPS,
    doc=f"at most this many hops from the start ({graph_rules.MIN_HOPS} to {graph_rules.MAX_HOPS})",
)
PROPERTIES = Param("properties", JsonObject(), doc=f"a JSON object of at most {graph_rules.MAX_PROPERTIES_BYTES} bytes (413 above)")
K = Param("k", Integer(1, graph_rules.MAX_K), default=10, doc="how many hits, best first")
LABEL_FILTER = Param("label", Text(max_length=graph_rules.MAX_LABEL_CHARS), doc="only vertices with this label")
HIT_PROPERTIES = Param("properties", Boolean(), default=True, doc="false: hits without their properties (id, label and score only: less to read and send)")
GRAPH_ERRORS = ("not_found", "unavailable", "timeout")

GRAPH: tuple[Endpoint, ...] = (
    Endpoint(
        "graph_list",
        "graph_list",
        (),
        json_reply("GraphList", "every graph of the cluster, by name"),
        (Route("GET", "/graphs", "The graphs of the cluster and their settings"),),
        nats="graph.list",
        max_json_body=GRAPH_JSON_BODY,
        errors=("unavailable",),
    ),
    Endpoint(
        "graph_create",
        "graph_create",
        (
            GRAPH_NAME,
            Param("vector_dim", Integer(0, graph_rules.MAX_VECTOR_DIM), default=0, doc="floats in each vertex's embedding; 0: no vectors"),
            Param("metric", Text(choices=("cosine", "l2")), default="cosine", doc="how vector search compares embeddings"),
            Param(
                "text_properties", TextList(), default=[],
                doc=f"vertex properties (text) the full-text search covers, at most {graph_rules.MAX_TEXT_PROPERTIES}",
            ),
        ),
        json_reply(
            "Graph", "it exists already, with the same settings", created_when="created", created_description="the graph, created",
        ),
        (Route("PUT", "/graphs/{graph}", "Create a graph (every setting optional); the same settings again: 200; other settings: 409"),),
        nats="graph.create",
        max_json_body=GRAPH_JSON_BODY,
        errors=("conflict", "unavailable"),
    ),
    Endpoint(
        "graph_get",
        "graph_get",
        (GRAPH_NAME,),
        json_reply("GraphDetail", "the graph's settings and counts over every shard"),
        (Route("GET", "/graphs/{graph}", "A graph's settings, and its vertices and edges counted over every shard"),),
        nats="graph.get",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "graph_delete",
        "graph_delete",
        (GRAPH_NAME,),
        Reply("empty", "gone (also when there was no such graph)", status=204),
        (Route("DELETE", "/graphs/{graph}", "Delete a graph with all its data (idempotent)"),),
        nats="graph.delete",
        max_json_body=GRAPH_JSON_BODY,
        errors=("unavailable",),
    ),
    # Before the vertex routes: .../vertices/a/edges is vertex a's edges (a vertex "a/edges" is a%2Fedges).
    Endpoint(
        "graph_edges",
        "graph_edges",
        (
            GRAPH_NAME,
            vertex_id(),
            replace(DIRECTION, rest=In.QUERY),
            Param("type", Text(min_length=1, max_length=graph_rules.MAX_LABEL_CHARS), rest=In.QUERY, doc="only edges of this type"),
            Param("limit", Integer(1, graph_rules.MAX_EDGES_PAGE), default=100, rest=In.QUERY),
            Param("cursor", Text(), rest=In.QUERY, doc="next_cursor of the previous page (opaque)"),
        ),
        json_reply("EdgePage", "a page of the vertex's edges"),
        (Route("GET", "/graphs/{graph}/vertices/{id}/edges", "A vertex's edges, a page at a time"),),
        nats="graph.edges",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "vertex_put",
        "vertex_put",
        (
            GRAPH_NAME,
            vertex_id(),
            Param("label", Text(max_length=graph_rules.MAX_LABEL_CHARS), default="", doc=f"printable, at most {graph_rules.MAX_LABEL_CHARS} characters"),
            PROPERTIES,
            Param("embedding", Numbers(), doc="vector_dim numbers, when the graph has vectors"),
        ),
        json_reply("VertexWritten", "replaced (its edges stay)", created_when="created", created_description="created"),
        (Route("PUT", "/graphs/{graph}/vertices/{id}", "Create or replace a vertex (its edges stay)"),),
        nats="graph.vertex.put",
        max_json_body=GRAPH_JSON_BODY,
        errors=("not_found", "value_too_large", "unavailable", "timeout"),
    ),
    Endpoint(
        "vertex_get",
        "vertex_get",
        (GRAPH_NAME, vertex_id(), Param("embedding", Boolean(), default=False, rest=In.QUERY, doc="include the embedding")),
        json_reply("Vertex", "the vertex"),
        (Route("GET", "/graphs/{graph}/vertices/{id}", "Read a vertex"),),
        nats="graph.vertex.get",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "vertex_delete",
        "vertex_delete",
        (GRAPH_NAME, vertex_id()),
        Reply("empty", "gone, with its edges (also when there was no such vertex)", status=204),
        (Route("DELETE", "/graphs/{graph}/vertices/{id}", "Delete a vertex and its edges (idempotent)"),),
        nats="graph.vertex.delete",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "edge_put",
        "edge_put",
        (
            GRAPH_NAME,
            vertex_id("src", In.BODY, "the vertex the edge leaves"),
            Param("type", Text(min_length=1, max_length=graph_rules.MAX_LABEL_CHARS), required=True, doc=f"printable, 1 to {graph_rules.MAX_LABEL_CHARS} characters"),
            vertex_id("dst", In.BODY, "the vertex the edge enters"),
            PROPERTIES,
            Param("weight", Number(), default=1.0),
        ),
        json_reply("EdgeWritten", "replaced", created_when="created", created_description="created"),
        (Route("PUT", "/graphs/{graph}/edges", "Create or replace the edge (src, type, dst); both vertices must exist (404 naming the missing one)"),),
        nats="graph.edge.put",
        max_json_body=GRAPH_JSON_BODY,
        errors=("not_found", "value_too_large", "unavailable", "timeout"),
    ),
    Endpoint(
        "edge_delete",
        "edge_delete",
        (
            GRAPH_NAME,
            vertex_id("src", In.QUERY, "the vertex the edge leaves"),
            Param("type", Text(min_length=1, max_length=graph_rules.MAX_LABEL_CHARS), required=True, rest=In.QUERY),
            vertex_id("dst", In.QUERY, "the vertex the edge enters"),
        ),
        Reply("empty", "gone (also when there was no such edge)", status=204),
        (Route("DELETE", "/graphs/{graph}/edges", "Delete the edge (src, type, dst) (idempotent)"),),
        nats="graph.edge.delete",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "graph_import",
        "graph_import",
        (
            GRAPH_NAME,
            Param(
                "ndjson", Ndjson(), required=True, rest=In.NDJSON,
                doc='one {"vertex": {"id", "label"?, "properties"?, "embedding"?}} or {"edge": {"src", "type", "dst", "properties"?, '
                '"weight"?}} per line; at most max_import_bytes (REST: the body, Content-Type application/x-ndjson)',
            ),
        ),
        json_reply("ImportResult", "what was applied; the lines that were not, and why"),
        (Route("POST", "/graphs/{graph}/import", "Import vertices and edges (NDJSON): every vertex line before the edge lines; idempotent"),),
        nats="graph.import",
        max_json_body=GRAPH_JSON_BODY,
        errors=("not_found", "value_too_large", "unavailable", "timeout"),
    ),
    Endpoint(
        "graph_traverse",
        "graph_traverse",
        (
            GRAPH_NAME,
            Param("from", VertexIds(graph_rules.MAX_SEEDS), required=True, arg="seeds", doc="the vertices to start from (hops 0)"),
            DIRECTION,
            TYPES,
            HOPS,
            Param("limit", Integer(1, graph_rules.MAX_TRAVERSE_LIMIT), default=graph_rules.DEFAULT_TRAVERSE_LIMIT, doc="at most this many vertices, seeds included"),
            Param("edges", Boolean(), default=False, doc="also answer the edges walked"),
        ),
        json_reply("Traversal", "the vertices reached, nearest first, each with its hops"),
        (Route("POST", "/graphs/{graph}/traverse", "Breadth-first from some vertices, hop by hop over every shard, bounded by max_hops, limit and the deadline"),),
        nats="graph.traverse",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "graph_shortest_path",
        "graph_shortest_path",
        (
            GRAPH_NAME,
            vertex_id("from", In.BODY, "where the path starts", arg="source"),
            vertex_id("to", In.BODY, "where the path ends", arg="target"),
            DIRECTION,
            TYPES,
            HOPS,
        ),
        json_reply("Path", "a shortest path (by hops): its vertex ids and its edges in order"),
        (Route("POST", "/graphs/{graph}/shortest-path", "A shortest path between two vertices, at most max_hops (404 when there is none)"),),
        nats="graph.shortest_path",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "graph_vector_search",
        "graph_vector_search",
        (GRAPH_NAME, Param("vector", Numbers(), required=True, doc="vector_dim numbers"), K, LABEL_FILTER, HIT_PROPERTIES),
        json_reply("Hits", "the k nearest vertices over every shard, best first"),
        (Route("POST", "/graphs/{graph}/search/vector", "Nearest vertices by embedding (score: cosine similarity, or -distance for l2)"),),
        nats="graph.search.vector",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "graph_text_search",
        "graph_text_search",
        (GRAPH_NAME, Param("query", Text(min_length=1, max_length=graph_rules.MAX_QUERY_CHARS), required=True), K, LABEL_FILTER, HIT_PROPERTIES),
        json_reply("Hits", "the k best vertices over every shard, best first"),
        (Route("POST", "/graphs/{graph}/search/text", "Full-text search over the graph's text_properties (BM25 with statistics of every shard)"),),
        nats="graph.search.text",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
    Endpoint(
        "graph_cypher",
        "graph_cypher",
        (
            GRAPH_NAME,
            Param("query", Text(min_length=1, max_length=graph_rules.MAX_QUERY_CHARS), required=True, doc="one read-only Cypher statement"),
            Param("params", JsonObject(), doc="the query's $parameters"),
        ),
        json_reply("CypherResult", "the rows of every shard, each with its shard"),
        (Route("POST", "/graphs/{graph}/cypher", "Run a read-only Cypher query on every shard's part of the graph (a write is refused: 400)"),),
        nats="graph.cypher",
        max_json_body=GRAPH_JSON_BODY,
        errors=GRAPH_ERRORS,
    ),
)


RAG_ERRORS = ("not_found", "unavailable", "timeout")
RAG: tuple[Endpoint, ...] = (
    Endpoint(
        "rag_create",
        "rag_create",
        (
            GRAPH_NAME,
            Param("chunk_tokens", Integer(16, 254), doc="tokens of the embedder's tokenizer per chunk (default 200)"),
            Param("overlap_tokens", Integer(0, 127), doc="tokens of whole sentences a chunk repeats from the one before (default 40; at most half a chunk)"),
            Param("embedder", Text(choices=EMBEDDER_NAMES), doc="the embedder (a corpus is queried with the one it was built with)"),
            Param("extractor", Text(choices=EXTRACTOR_NAMES), doc="entities and relations from text (llm: the llm_model at llm_url)"),
            Param("dim", Integer(1, 4096), doc="the embedder's dimension (given by the model for the offline one; needed for openai)"),
            Param("llm_url", Text(min_length=1, max_length=500), doc="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 (its key: the workers' TORUA_LLM_API_KEY)"),
            Param("llm_model", Text(min_length=1, max_length=500), doc="its chat model: the llm extractor, answers, community summaries"),
            Param("embedding_model", Text(min_length=1, max_length=500), doc="its embeddings model (embedder openai)"),
        ),
        json_reply("Corpus", "it exists already, with the same settings", created_when="created", created_description="the corpus, created"),
        (Route("PUT", "/rag/{graph}", "Create a GraphRAG corpus (a graph with the corpus schema); the same settings again: 200; other settings: 409"),),
        nats="rag.create",
        max_json_body=GRAPH_JSON_BODY,
        errors=("conflict", "unavailable", "timeout"),
    ),
    Endpoint(
        "rag_get",
        "rag_get",
        (GRAPH_NAME,),
        json_reply("CorpusDetail", "the corpus's settings and its graph's counts"),
        (Route("GET", "/rag/{graph}", "A corpus's settings and counts"),),
        nats="rag.get",
        max_json_body=GRAPH_JSON_BODY,
        errors=RAG_ERRORS,
    ),
    Endpoint(
        "rag_documents",
        "rag_documents",
        (
            GRAPH_NAME,
            Param(
                "ndjson", Ndjson(), required=True, rest=In.NDJSON,
                doc='one document {"id"?, "text", "metadata"?} per line (or one JSON object); an id defaults to the hash of the text; '
                "at most max_import_bytes in all",
            ),
        ),
        Reply("json", "queued", "JobAccepted", status=200, accepted_when="accepted", accepted_description="queued: the workers ingest them"),
        (Route("POST", "/rag/{graph}/documents", "Queue documents for ingestion (a job; the same id again replaces that document)"),),
        nats="rag.documents",
        max_json_body=GRAPH_JSON_BODY,
        errors=("not_found", "value_too_large", "unavailable", "timeout"),
    ),
    Endpoint(
        "rag_job",
        "rag_job",
        (GRAPH_NAME, Param("job", Text(pattern=r"[0-9A-Za-z]{1,64}"), required=True, rest=In.PATH, what="a job id", doc="what POST .../documents answered")),
        json_reply("Job", "the job's progress"),
        (Route("GET", "/rag/{graph}/jobs/{job}", "An ingestion job's progress: documents done and failed"),),
        nats="rag.job",
        max_json_body=GRAPH_JSON_BODY,
        errors=RAG_ERRORS,
    ),
    Endpoint(
        "rag_delete_document",
        "rag_delete_document",
        (GRAPH_NAME, vertex_id("id", In.PATH, "the document's id")),
        Reply("empty", "gone with its chunks and its share of every entity and relation (also when there was no such document)", status=204),
        (Route("DELETE", "/rag/{graph}/documents/{id}", "Delete a document: its chunks, and its share of every entity and relation (no re-index)"),),
        nats="rag.delete_document",
        max_json_body=GRAPH_JSON_BODY,
        errors=RAG_ERRORS,
    ),
    Endpoint(
        "rag_query",
        "rag_query",
        (
            GRAPH_NAME,
            Param("question", Text(min_length=1, max_length=MAX_QUESTION_CHARS), required=True),
            Param(
                "mode", Text(choices=MODES), default="naive",
                doc="naive: vector search; local: from the question's entities out; global: the nearest community summaries (after POST .../communities); "
                "hybrid: vector, BM25 and local fused, and a second hop",
            ),
            Param("k", Integer(1, RAG_MAX_K), default=10, doc="chunks answered, best first"),
            Param("answer", Boolean(), default=False, doc="also the corpus's chat model's answer from the chunks, citing their ids (needs llm_url and llm_model)"),
            Param("metadata", JsonObject(), doc="only chunks of documents whose metadata holds each of these keys with these values"),
        ),
        json_reply("RagAnswer", "the evidence, best first"),
        (Route("POST", "/rag/{graph}/query", "Ask a corpus: its chunks (with provenance), entities and relations, ranked"),),
        nats="rag.query",
        max_json_body=GRAPH_JSON_BODY,
        errors=(*RAG_ERRORS, "conflict"),
    ),
    Endpoint(
        "rag_communities",
        "rag_communities",
        (GRAPH_NAME,),
        Reply("json", "queued", "JobAccepted", status=200, accepted_when="accepted", accepted_description="queued: a worker runs it"),
        (Route("POST", "/rag/{graph}/communities", "Find the corpus's communities again (Louvain over its entity graph, extractive summaries): a job"),),
        nats="rag.communities",
        max_json_body=GRAPH_JSON_BODY,
        errors=RAG_ERRORS,
    ),
)

ENDPOINTS: tuple[Endpoint, ...] = KV + CLUSTER + GRAPH + RAG + GATEWAY + AUTH

# Every endpoint has its access rule (torua.access): one without fails here, at import.
_unruled = sorted({e.name for e in ENDPOINTS} ^ set(RULES))
if _unruled:
    raise ValueError(f"endpoints without an access rule, or rules without an endpoint: {_unruled}")


def rule_of(endpoint: Endpoint) -> Rule:
    return RULES[endpoint.name]
