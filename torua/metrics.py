"""Prometheus metrics: the machinery every process shares, and the small server
that exposes a process's metrics on ``--metrics-port``.

Each process has its own `CollectorRegistry` (never prometheus-client's global
one), so several gateways or nodes in one test process do not clash, and
registers its own collectors: a node's are `torua.node.metrics`, a coordinator's
`torua.coordinator.metrics`, each built from a read-only snapshot its driver
gives (`Node.snapshot()`, `CoordinatorProcess.snapshot()`) when Prometheus
scrapes; the gateway's request counters are `GatewayMetrics` below, given a
function for its map epoch. State that already exists (shards held, the map,
node health) is read at scrape time; only what nothing else counts (requests and
their latency) is counted as it happens.

Every name starts with ``torua_``; the README's "Metrics and logs" section lists them.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from torua import __version__
from torua.gateway.connection import GatewayRunner  # the gateway's HTTP hardening: JSON parser errors, head deadline
from torua.listen import listen
from torua.stopping import bounded

log = logging.getLogger("torua.metrics")

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
    """Requests through the REST and NATS APIs, counted as they finish; the map
    epoch (`map_epoch()`, 0 = no map yet), read when scraped."""

    def __init__(self, map_epoch: Callable[[], int]) -> None:
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
        self.admin_calls = Counter(
            "torua_gateway_admin_calls", "admin calls (torua.gateway.audit), by operation and outcome (ok or the error code)",
            ["op", "outcome"], registry=self.registry,
        )
        self.nats_seconds = Histogram(
            "torua_gateway_nats_request_duration_seconds", "NATS API request latency, by operation", ["op"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )

        def live() -> Iterable[Metric]:
            yield build_info("gateway")
            yield gauge("torua_gateway_map_epoch", "epoch of the shard map this gateway routes by (0 = none yet)", values=[({}, map_epoch())])

        self.registry.register(LiveCollector(live))

    def observe_http(self, op: str, status: int, seconds: float) -> None:
        self.http_requests.labels(op, str(status)).inc()
        self.http_seconds.labels(op, str(status)).observe(seconds)

    def observe_nats(self, op: str, outcome: str, seconds: float) -> None:
        self.nats_requests.labels(op, outcome).inc()
        self.nats_seconds.labels(op).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# -------------------------------------------------------------------- worker


class WorkerMetrics:
    """A GraphRAG worker's /metrics: documents and chunks it ingested, how long a
    document took, the queries it answered, and the ingestion queue's depth (read from
    JetStream every few seconds by the worker: documents waiting, and taken but not
    acknowledged yet)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.documents = Counter("torua_worker_documents", "documents this worker ingested (done) or gave up on (failed)", ["outcome"], registry=self.registry)
        self.chunks = Counter("torua_worker_chunks", "chunks of the documents it ingested: embedded and extracted (new), kept as they were, removed", ["kind"], registry=self.registry)
        self.seconds = Histogram(
            "torua_worker_document_seconds", "seconds from taking a document to acknowledging it", registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
        )
        self.queries = Counter("torua_worker_queries", "GraphRAG calls this worker answered, by call and outcome", ["op", "outcome"], registry=self.registry)
        self.pending = Gauge("torua_worker_queue_pending", "documents waiting in the ingestion queue (TORUA_RAG), as last read", registry=self.registry)
        self.in_progress = Gauge("torua_worker_queue_in_progress", "documents taken by a worker and not acknowledged yet, as last read", registry=self.registry)
        self.registry.register(LiveCollector(lambda: [build_info("worker")]))


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
