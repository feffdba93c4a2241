"""Prometheus metrics: what each process exposes on `/metrics`, and the small
server that exposes it on ``--metrics-port``.

Each process has its own `CollectorRegistry` (never prometheus-client's global
one), so several gateways or nodes in one test process do not clash. State that
already exists (shards held, the map, node health) is read when Prometheus
scrapes, by the collectors below; only what nothing else counts (requests and
their latency) is counted as it happens.

Every name starts with ``torua_``; the README's "Metrics and logs" section lists them.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from torua import __version__
from torua.gateway.connection import GatewayRunner  # the gateway's HTTP hardening: JSON parser errors, head deadline
from torua.listen import listen
from torua.stopping import bounded

if TYPE_CHECKING:
    from torua.coordinator.election import CoordinatorProcess
    from torua.gateway.service import Gateway
    from torua.node.service import Node

log = logging.getLogger("torua.metrics")

# Every value is shown, zeros included, so a series never vanishes when it drops to 0.
NODE_ROLES = ("primary", "replica", "frozen", "copying", "retired")
NODE_HEALTH = ("healthy", "unhealthy", "unknown")
SHARD_STATES = ("active", "moving", "unassigned", "unavailable")

# Request latency, in seconds: a local point read is well under a millisecond,
# a durable replicated write a few, a deadline (504) 5 s by default.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LiveCollector:
    """A prometheus-client collector whose families a function builds at scrape time."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return list(self._families())


def gauge(name: str, documentation: str, labels: dict[str, str] | None = None, values: Iterable[tuple[dict[str, str], float]] = ()) -> GaugeMetricFamily:
    """A gauge family: `labels` are on every sample, `values` are (more labels, value) pairs.

    >>> [s.value for s in gauge("torua_x", "x", {"node": "n1"}, [({"role": "primary"}, 3)]).samples]
    [3]
    """
    common = labels or {}
    values = list(values)
    names = list(common) + (list(values[0][0]) if values else [])
    family = GaugeMetricFamily(name, documentation, labels=names)
    for extra, value in values:
        family.add_metric([*common.values(), *extra.values()], value)
    return family


def build_info(role: str) -> GaugeMetricFamily:
    return gauge("torua_build_info", "1, labelled with the Torua version this process runs", values=[({"role": role, "version": __version__}, 1)])


# ------------------------------------------------------------------- gateway


def http_op(method: str, canonical: str | None) -> str:
    """The `op` label of a REST request: get/put/delete/list for data, else the route
    template, e.g. ``PUT /data/{key}`` -> ``put``, ``GET /nodes/{node_id}`` ->
    ``/nodes/{node_id}``; ``other`` for a path with no route (so a scan of random
    paths adds no series)."""
    if canonical is None:
        return "other"
    if canonical == "/data/{key}":
        return {"GET": "get", "HEAD": "get", "PUT": "put", "DELETE": "delete"}.get(method, "other")
    if canonical == "/data":
        return "list" if method in ("GET", "HEAD") else "other"
    return canonical


class GatewayMetrics:
    """Requests through the REST and NATS APIs, counted as they finish; the map epoch, live."""

    def __init__(self, gateway: "Gateway") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_requests = Counter(
            "torua_gateway_http_requests", "REST requests answered, by operation and HTTP status", ["op", "status"], registry=self.registry
        )
        self.http_seconds = Histogram(
            "torua_gateway_http_request_duration_seconds", "REST request latency, by operation and HTTP status",
            ["op", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.nats_requests = Counter(
            "torua_gateway_nats_requests", "NATS API requests answered, by operation and outcome (ok or the error code)",
            ["op", "outcome"], registry=self.registry,
        )
        self.nats_seconds = Histogram(
            "torua_gateway_nats_request_duration_seconds", "NATS API request latency, by operation", ["op"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )

        def live() -> Iterable[Metric]:
            current = gateway.maps.current
            yield build_info("gateway")
            yield gauge("torua_gateway_map_epoch", "epoch of the shard map this gateway routes by (0 = none yet)", values=[({}, current.epoch if current else 0)])

        self.registry.register(LiveCollector(live))

    def observe_http(self, op: str, status: int, seconds: float) -> None:
        self.http_requests.labels(op, str(status)).inc()
        self.http_seconds.labels(op, str(status)).observe(seconds)

    def observe_nats(self, op: str, outcome: str, seconds: float) -> None:
        self.nats_requests.labels(op, outcome).inc()
        self.nats_seconds.labels(op).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# ---------------------------------------------------------------------- node


def node_families(node: "Node") -> Iterable[Metric]:
    """What a node holds, read from its holdings when scraped."""
    me = {"node": node.config.id}
    roles: Tally[str] = Tally()
    keys = nbytes = 0
    lag: list[tuple[dict[str, str], float]] = []
    for h in list(node.holdings.values()):
        if h.store is None or h.role == "absent":
            continue
        roles[h.role] += 1
        try:
            stats = h.store.stats()
        except Exception:  # closing under a move or drop right now: counted next scrape
            continue
        keys += stats.keys
        nbytes += stats.bytes
        if h.role in ("primary", "frozen"):
            # A replica's ack is the seq it asked to fetch after: everything up to it is applied.
            for replica in h.replicas:
                if replica != node.config.id:
                    lag.append(({"shard": str(h.shard_id), "replica": replica}, max(0, stats.last_seq - max(0, h.acked.get(replica, 0)))))
    yield build_info("node")
    yield gauge("torua_node_map_epoch", "newest shard map epoch this node was assigned at", me, [({}, node.epoch)])
    yield gauge("torua_node_shards", "shard copies held, by role", me, [({"role": r}, roles[r]) for r in NODE_ROLES])
    yield gauge("torua_node_keys", "keys in every shard copy this node holds", me, [({}, keys)])
    yield gauge("torua_node_bytes", "bytes of values in every shard copy this node holds", me, [({}, nbytes)])
    yield gauge(
        "torua_node_replica_lag_ops",
        "operations a replica has yet to fetch, as its primary (this node) sees it, by shard and replica",
        me, lag,
    )
    served = CounterMetricFamily("torua_node_kv_requests", "KV requests served, by operation and outcome (ok or the error code)", labels=["node", "op", "outcome"])
    for (op, outcome), count in sorted(node.kv_served.items()):
        served.add_metric([node.config.id, op, outcome], count)
    yield served


# --------------------------------------------------------------- coordinator


def coordinator_families(process: "CoordinatorProcess") -> Iterable[Metric]:
    """Whether this coordinator leads, and, while it does, the cluster as its brain sees it."""
    me = {"coordinator": process.config.id}
    brain = process.brain
    leading = brain is not None and process.may_act()
    term = process.lease.term if process.lease is not None else 0
    yield build_info("coordinator")
    yield gauge("torua_coordinator_leader", "1 while this coordinator leads, 0 while it stands by", me, [({}, 1 if leading else 0)])
    yield gauge("torua_coordinator_term", "term of this coordinator's lead (0 while it stands by)", me, [({}, term if leading else 0)])
    if not leading:
        return  # only the leader knows the cluster; a standby's view would be stale
    health = Tally(r.status for r in brain.nodes.values())
    statuses = list(NODE_HEALTH) + sorted(set(health) - set(NODE_HEALTH))
    yield gauge("torua_coordinator_nodes", "nodes known, by health", me, [({"status": s}, health[s]) for s in statuses])
    yield gauge("torua_coordinator_moves_in_progress", "shard moves running now", me, [({}, len(brain.moves))])
    shard_map = brain.map
    if shard_map is None:
        return  # the cluster has not formed yet
    states = Tally(e.state for e in shard_map.shards)
    copies: Tally[tuple[str, str]] = Tally()
    out_of_sync = 0
    for e in shard_map.shards:
        if e.primary:
            copies[(e.primary, "primary")] += 1
        for replica in e.replicas:
            copies[(replica, "replica")] += 1
            out_of_sync += replica not in e.in_sync
    yield gauge("torua_coordinator_map_epoch", "epoch of the current shard map", me, [({}, shard_map.epoch)])
    yield gauge("torua_coordinator_shards", "shards, by state", me, [({"state": s}, states[s]) for s in SHARD_STATES + tuple(sorted(set(states) - set(SHARD_STATES)))])
    yield gauge("torua_coordinator_replicas_out_of_sync", "replica copies the map does not count as in sync", me, [({}, out_of_sync)])
    nodes = sorted(set(brain.nodes) | {n for n, _ in copies})
    yield gauge(
        "torua_coordinator_shard_copies", "shard copies the map gives each node, by role", me,
        [({"node": n, "role": role}, copies[(n, role)]) for n in nodes for role in ("primary", "replica")],
    )


# -------------------------------------------------------------------- server


def registry_of(*collectors: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def metrics_app(registry: CollectorRegistry) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


# A scrape's request head must arrive within this (a slow client cannot hold the port's connections).
METRICS_REQUEST_TIMEOUT = 5.0


@asynccontextmanager
async def metrics_server(registry: CollectorRegistry, host: str, port: int) -> AsyncIterator[None]:
    """Serve ``http://host:port/metrics`` for the duration; nothing when `port` is 0."""
    if not port:
        yield
        return
    runner = GatewayRunner(metrics_app(registry), request_timeout=METRICS_REQUEST_TIMEOUT, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await listen(runner, host, port, "metrics", "--metrics-port")
        log.info("metrics on http://%s:%d/metrics", host, port)
        yield
    finally:
        await bounded(runner.cleanup(), 3, "stopping the metrics server")
