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
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from torua.gateway.params import Boolean, In, Integer, JsonObject, Key, Param, Schema, Text, TextList, Value, expected_fields
from torua.kv_rules import MAX_LIMIT

# Shard numbers fit msgpack's integers with room to spare (a cluster has at most 4096).
MAX_SHARD_NUMBER = 1 << 31

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

    `accepted_when` names a boolean field of the result that makes the REST status 202.
    """

    kind: Literal["json", "empty", "value", "text"]
    description: str
    schema: str | Schema | None = None
    status: int = 200
    accepted_when: str | None = None
    accepted_description: str = ""
    content_type: str = "application/json"


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
            if len(places & {In.BODY, In.WHOLE_BODY, In.RAW_BODY}) > 1 or (In.CONTENT_TYPE in places and In.RAW_BODY not in places):
                raise ValueError(f"{self.name} {route.method} {route.path}: one kind of body (a Content-Type param goes with a raw one)")

    def read_over_rest(self, route: Route) -> tuple[Param, ...]:
        """The params a request on `route` carries (the others are fixed by the route)."""
        return tuple(p for p in self.params if p.name not in route.fixed)

    def body(self, route: Route) -> Literal["json", "whole", "raw", "none"]:
        """What a request on `route` must send as its body: a JSON object whose fields are
        params, a JSON object that is one param whole, raw bytes, or nothing."""
        places = {p.rest for p in self.read_over_rest(route)}
        if In.RAW_BODY in places:
            return "raw"
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


async def call(gateway: Any, endpoint: Endpoint, kwargs: Mapping[str, Any]) -> Any:
    """Run `endpoint`'s Gateway method with the arguments `bind` checked (it may be a plain function)."""
    assert endpoint.call is not None, f"{endpoint.name} is served by the front-end itself"
    result = getattr(gateway, endpoint.call)(**kwargs)
    return await result if inspect.isawaitable(result) else result


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

ENDPOINTS: tuple[Endpoint, ...] = KV + CLUSTER + GATEWAY
