"""The gateway: one set of operations behind two thin front-ends, REST in
`torua.gateway.http` and NATS in `torua.gateway.nats_api`, both generated from
the declarations in `torua.gateway.endpoints`, which also check each operation's
inputs (types, bounds, required fields) before it is called, alike for both. It
keeps no state of its own but a cached shard map.

Every operation raises `ToruaError` for anything a caller did wrong or the cluster
cannot do now (a key that breaks the key rules, a shard the cluster does not
have); the front-ends turn it into their error shape. The graph operations are
in `torua.gateway.graphs`, mixed in; the gateway also keeps a cached copy of the
graph catalog (`torua.graph.catalog_store`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from aiohttp import web
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError, MaxPayloadError, NoRespondersError, TimeoutError as NatsTimeout

from torua import __version__
from torua.broadcast import BROADCAST_TIMEOUT, check_kind, gather
from torua.bus import close_connection, connect
from torua.cluster_health import cluster_health, node_state
from torua.cluster_settings import describe as describe_settings
from torua.config import GatewayConfig
from torua.gateway.connection import GatewayRunner
from torua.gateway.rag import RagEndpoints
from torua.gateway.graphs import GraphEndpoints
from torua.graph.catalog_store import GraphCatalog
from torua.kv_rules import DEFAULT_CONTENT_TYPE  # noqa: F401 (imported from here)
from torua.kv_rules import servable_content_type, shard_for_key, validate_content_type, validate_key, validate_prefix, validate_put
from torua.api_keys import NEEDS_KEY, ApiKey, Scope, bearer_token, check_role
from torua.access import RULES
from torua.gateway.audit import ADMIN_OPERATIONS, AuditTrail
from torua.key_ring import KeyRing, key_token
from torua.listen import listen, server_tls
from torua.listing import list_keys
from torua.metrics import GatewayMetrics, metrics_server
from torua.protocol import subjects
from torua.protocol.codec import encode, from_dict, unpack
from torua.protocol.errors import ToruaError
from torua.protocol.messages import (
    Ack,
    AllocationExplanation,
    AssignRequest,
    BroadcastReply,
    ClusterConfig,
    CoordinatorInfo,
    ExplainRequest,
    KvReply,
    KvRequest,
    MaintenanceRequest,
    NodeRequest,
    NodesReply,
    NodeStatus,
    RebalanceReply,
    RebalanceRequest,
    SettingsChange,
    ShardMap,
)
from torua.routing import RETRY_AFTER_SECONDS, MapCache, ShardRouter
from torua.stopping import StopRequest, Stopped, bounded, cancel_and_wait, unless_stopped

log = logging.getLogger("torua.gateway")

T = TypeVar("T")

# The coordinator answers from memory; longer than this means it is gone or stuck.
COORDINATOR_TIMEOUT = 3.0
# Coordinator calls that change the cluster: without an answer their outcome is unknown.
CHANGING_CALLS = frozenset({"assign", "node", "maintenance", "rebalance", "config.set"})


def iso_time(ts: float | None) -> str | None:
    """Unix seconds as ISO-8601 UTC, e.g. ``2026-11-25T23:10:00+00:00``; None stays None."""
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


def node_view(n: NodeStatus) -> dict[str, Any]:
    """A node as `/nodes` shows it: `shards` is a count, `shard_ids` the list.

    `status` is `cluster_health.node_state` (the health, or what the operator asked
    of a healthy node: evacuating/evacuated, draining/drained, maintenance);
    `health` is always the health.
    """
    return {
        "id": n.id,
        "status": node_state(n),
        "health": n.status,
        "shards": len(n.shards),
        "shard_ids": n.shards,
        "primaries": n.primaries,
        "last_heartbeat": iso_time(n.last_heartbeat),
        "missed_heartbeats": n.missed_heartbeats,
        "draining": n.draining,
        "version": n.version,
        "protocol": n.protocol,
        "host": n.host,
        "data_dir": n.data_dir,
        "pid": n.pid,
        "max_shards": n.max_shards,
        "uptime_seconds": round(time.time() - n.started_at, 3) if n.started_at else None,
        "keys": n.keys,
        "bytes": n.bytes,
        "ops_rate": n.ops_rate,
        "write_rate": n.write_rate,
        "maintenance": n.maintenance,
        "evacuating": n.evacuating,
        # copies the map counts on here that the node's heartbeats say it does not have
        "missing_shards": n.missing,
        # seconds until every primary lease this node may hold has run out
        "lease_held_seconds": n.lease_held,
        "capacity": {
            "max_shards": n.max_shards,
            "shards": len(n.shards),
            "free_slots": None if n.max_shards is None else max(0, n.max_shards - len(n.shards)),
            "disk_total_bytes": n.disk_total,
            "disk_used_bytes": n.disk_used,
            "disk_free_bytes": n.disk_free,
            "disk_percent": n.disk_percent,
            "disk_level": n.disk_level,
        },
    }


def explanation_view(e: AllocationExplanation) -> dict[str, Any]:
    """`GET /cluster/allocation/explain` as JSON: the message, with the move's start as ISO time."""
    out = dataclasses.asdict(e)
    if out["move"] is not None:
        out["move"]["started_at"] = iso_time(out["move"]["started_at"])
    return out


def shards_view(m: ShardMap) -> dict[str, Any]:
    return {
        "num_shards": m.num_shards,
        "epoch": m.epoch,
        "replication_factor": m.replication_factor,
        "shards": [
            {"shard_id": e.shard_id, "primary": e.primary, "replicas": e.replicas, "in_sync": e.in_sync, "state": e.state, "target": e.target}
            for e in m.shards
        ],
    }


# One rule for the gateway, the client and the nodes (torua.kv_rules); these names stay for existing imports.
check_content_type = validate_content_type


class Gateway(GraphEndpoints, RagEndpoints):
    """Every operation of the public APIs; the graph ones are `GraphEndpoints`'."""

    def __init__(self, nc: NATS, config: GatewayConfig) -> None:
        self.nc = nc
        self.config = config
        self.maps = MapCache(nc)
        self.router = ShardRouter(nc, self.maps)
        self.graphs = GraphCatalog(nc)
        self.started_at = time.time()
        self.metrics = GatewayMetrics(self.maps.epoch)
        self.audit = AuditTrail(config.audit_log)
        # API keys (torua.api_keys); None: --insecure, every request may do anything
        self.keys: KeyRing | None = None if config.insecure else KeyRing(nc)
        self._file_keys: list[asyncio.Task[None]] = []  # storing the keys of --admin-key-file and --worker-key-file

    def audited(self, op: str, arguments: Mapping[str, Any], who: str, outcome: str) -> None:
        """An admin call has ended (torua.gateway.audit): its line in the trail, and counted."""
        self.audit.record(op, arguments, who, outcome)
        self.metrics.admin_calls.labels(op, outcome).inc()

    async def start(self) -> None:
        await self.maps.start()
        await self.graphs.start()
        if self.keys is None:
            log.warning("--insecure: REST and the NATS API take requests without an API key; anyone who reaches them may do anything")
            return
        await self.keys.start()
        for path, name, role in ((self.config.admin_key_file, "admin", "admin"), (self.config.worker_key_file, "workers", "write")):
            if path:
                token = key_token(Path(path), name, role)  # made now if missing
                self._file_keys.append(asyncio.ensure_future(self._store_file_key(token, path, name, role)))

    async def _store_file_key(self, token: str, path: str, name: str, role: str) -> None:
        """Put the key of `path` in the store with `role`, once the coordinator has made it."""
        assert self.keys is not None
        while True:
            try:
                if await self.keys.ensure(token, name, time.time(), role):
                    log.info("%s API key of %s stored", role, path)
                return
            except ToruaError as exc:
                log.debug("the key of %s is not stored yet: %s", path, exc.message)
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        for task in self._file_keys:
            await cancel_and_wait(task, 3.0, "storing a key of a file")
        if self.keys is not None:
            await self.keys.stop()
        await self.graphs.stop()
        await self.maps.stop()

    # ------------------------------------------------------------- API keys

    async def authenticate(self, authorization: str | None, operation: str, who: str = "") -> ApiKey | None:
        """The key a request for `operation` carries in its ``Authorization`` header:
        `unauthorized` without a valid one, `forbidden` when its role is too low for the
        operation (its tenant is checked on the params: torua.gateway.endpoints.call).
        None for a public operation, or any when keys are off (--insecure). A refused
        admin operation is in the audit trail, with `who` the front-end knows."""
        rule = RULES[operation]
        if self.keys is None or rule.role == "public":
            return None
        key = None
        try:
            token = bearer_token(authorization)
            if token is None:
                raise ToruaError("unauthorized", NEEDS_KEY)
            key = await self.keys.authenticate(token)
            check_role(rule, key, operation)
        except ToruaError as exc:
            if operation in ADMIN_OPERATIONS:
                self.audited(operation, {}, who if key is None else key.caller(who), exc.code)
            raise
        return key

    def _key_ring(self) -> KeyRing:
        if self.keys is None:
            raise ToruaError("conflict", "this gateway runs --insecure: it takes no API keys, so it makes none")
        return self.keys

    async def auth_create(
        self, name: str, role: str, graphs: list[str] | None = None, prefixes: list[str] | None = None,
        rate: float | None = None, max_bytes: int | None = None,
    ) -> dict[str, Any]:
        """A new key; its token is in this answer only."""
        scope = None if graphs is None and prefixes is None else Scope(tuple(graphs or ()), tuple(prefixes or ()))
        token, key = await self._key_ring().create(name, role, scope, time.time(), rate, max_bytes)
        return {**key.view(), "token": token}

    async def auth_list(self) -> dict[str, Any]:
        return {"keys": [k.view() for k in await self._key_ring().all()]}

    async def auth_revoke(self, key_id: str) -> dict[str, Any]:
        return (await self._key_ring().revoke(key_id, time.time())).view()

    # ------------------------------------------------------------------ KV

    async def _map(self) -> ShardMap:
        if self.maps.current is None:
            await self.maps.refresh()
        return self.router.shard_map()  # `unavailable` (503) while the cluster has none

    async def _kv(self, key: str, build: Callable[[int, int], KvRequest], eventual: bool = False) -> KvReply:
        validate_key(key)
        shard = shard_for_key(key, (await self._map()).num_shards)
        try:
            reply = await self.router.call(shard, lambda epoch: build(shard, epoch), self.config.request_timeout, eventual)
        except MaxPayloadError:
            raise ToruaError("value_too_large", "the request is larger than the NATS server's max_payload") from None
        except NatsError as exc:  # connection closed or reconnecting: the router could not even ask
            raise ToruaError("unavailable", f"NATS: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        if not reply.ok:
            # Non-retryable node errors (bad_request, ...) reach the user as they are; a node's bug does not.
            code = reply.error_code or "internal"
            raise ToruaError(code, peer_message(code, reply.error_message, f"shard {shard}'s node") or "the node refused the request")
        return reply

    async def kv_get(self, key: str, consistency: str = "strong") -> tuple[bytes, str]:
        """(value, content type); `not_found` when the key does not exist.

        consistency "strong" (default) reads the primary and sees every acknowledged
        write; "eventual" may read an in-sync replica, which can lag a little."""
        eventual = consistency == "eventual"
        reply = await self._kv(key, lambda shard, epoch: KvRequest("get", shard, epoch, key=key, eventual=eventual), eventual)
        if not reply.found:
            raise ToruaError("not_found", f"key {key!r} does not exist")
        return reply.value or b"", servable_content_type(reply.content_type)  # also from a node of an older release

    async def kv_put(self, key: str, value: bytes, content_type: str | None = None) -> None:
        key, value, ct = validate_put(key, value, content_type, self.config.max_value_bytes)
        await self._kv(key, lambda shard, epoch: KvRequest("put", shard, epoch, key=key, value=value, content_type=ct))

    async def kv_delete(self, key: str) -> None:
        """Idempotent: deleting a key that is not there succeeds."""
        await self._kv(key, lambda shard, epoch: KvRequest("delete", shard, epoch, key=key))

    async def kv_list(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """One page: ``{"keys", "next_cursor"}``. Keys are sorted within a shard, shards in order."""
        validate_prefix(prefix)  # a key's rules, but it may be empty
        await self._map()
        try:
            keys, next_cursor = await list_keys(self.router, prefix, limit, cursor or None, self.config.request_timeout)
        except NatsError as exc:
            raise ToruaError("unavailable", f"NATS: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        return {"keys": keys, "next_cursor": next_cursor}

    async def location(self, key: str) -> dict[str, Any]:
        """Which shard and node hold `key` at the current epoch."""
        validate_key(key)
        m = await self._map()
        entry = m.entry(shard_for_key(key, m.num_shards))
        return {"key": key, "shard_id": entry.shard_id, "primary": entry.primary, "epoch": m.epoch, "state": entry.state}

    async def shards(self) -> dict[str, Any]:
        await self.maps.refresh()  # the stored map, also when its announcement is not read yet
        return shards_view(await self._map())

    # ------------------------------------------------------------- cluster

    async def _ask(self, call: str, reply_type: type[T], payload: bytes = b"", timeout: float | None = None) -> T:
        """One coordinator call; its refusals (an `Ack` with ok=False) come back as `ToruaError`.
        A call that changes something and gets no answer in time may have been done: 504."""
        try:
            msg = await self.nc.request(subjects.coordinator(call), payload, timeout=timeout or min(COORDINATOR_TIMEOUT, self.config.request_timeout))
        except NatsTimeout:
            if call in CHANGING_CALLS:
                raise ToruaError("timeout", f"the coordinator did not answer {call} in time: it may or may not be done; read it back to check") from None
            raise ToruaError("no_coordinator", "the coordinator is not answering", retry_after=RETRY_AFTER_SECONDS) from None
        except NoRespondersError:
            raise ToruaError("no_coordinator", "the coordinator is not answering", retry_after=RETRY_AFTER_SECONDS) from None
        except NatsError as exc:
            raise ToruaError("no_coordinator", f"cannot reach the coordinator: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        try:
            data = unpack(msg.data)
            refused = isinstance(data, dict) and data.get("ok") is False
            reply: Any = from_dict(Ack if refused else reply_type, data)
        except ToruaError as exc:
            # Our decoding failed: the coordinator's fault (or version skew), not the user's.
            log.warning("coordinator sent a malformed %s reply: %s", call, exc.message)
            raise ToruaError("internal", f"the coordinator sent a malformed {call} reply") from None
        if refused:
            raise _refusal(reply)
        return reply

    async def node_statuses(self) -> list[NodeStatus]:
        return (await self._ask("nodes", NodesReply)).nodes

    async def nodes(self) -> dict[str, Any]:
        return {"nodes": [node_view(n) for n in await self.node_statuses()]}

    async def node(self, node_id: str) -> dict[str, Any]:
        for n in await self.node_statuses():
            if n.id == node_id:
                return node_view(n)
        raise ToruaError("unknown_node", f"node {node_id!r} is not part of the cluster")

    async def cluster_health(self) -> dict[str, Any]:
        nodes = await self.node_statuses()
        if self.maps.current is None:
            await self.maps.refresh()
        return cluster_health(self.maps.current, nodes)

    async def cluster_info(self) -> dict[str, Any]:
        info = await self._ask("info", CoordinatorInfo)
        nodes = await self.node_statuses()
        health = cluster_health(self.maps.current, nodes)
        return {
            "cluster_id": info.cluster_id,
            "formed": info.formed,
            "coordinator": info.coordinator_id,
            # the leading coordinator (it answered this) and its term; the others stand by
            "leader": info.coordinator_id,
            "term": info.term,
            "standbys": list(info.standbys),
            "version": __version__,
            # every version running, so a rolling upgrade shows where it is
            "versions": sorted({n.version for n in nodes if n.version} | {info.version, __version__}),
            "epoch": max(info.epoch, self.maps.current.epoch if self.maps.current else 0),
            "num_shards": info.num_shards,
            "replication_factor": info.replication_factor,
            "nodes_total": health["nodes_total"],
            "nodes_healthy": health["nodes_healthy"],
            "shards_total": health["shards_total"],
            "shards_assigned": health["shards_total"] - health["shards_unassigned"],
            "health": health["status"],
            "moves": [
                {"shard_id": m.shard_id, "source": m.source, "target": m.target, "phase": m.phase, "started_at": iso_time(m.started_at)}
                for m in info.moves
            ],
            "uptime_seconds": round(time.time() - info.started_at, 3),
            # how long a heartbeat reply lets a primary serve, and how much longer than
            # noticing a silent node (unhealthy_after heartbeats) a failover would wait now
            # for leases nodes may still hold (per node: GET /nodes lease_held_seconds)
            "failover": {"lease_seconds": info.lease_seconds, "hold_seconds": info.failover_hold},
            # shards whose primary is being changed now (failovers, planned hand-offs)
            "handoffs": list(info.handoffs),
        }

    async def assign(self, shard_id: int, node_id: str) -> dict[str, Any]:
        """Ask the coordinator to move `shard_id` to `node_id`; status ``moving`` or ``already_there``."""
        num_shards = (await self._map()).num_shards  # fixed when the cluster was created
        if not 0 <= shard_id < num_shards:
            raise ToruaError("unknown_shard", f"shard_id {shard_id} does not exist: shards are 0 to {num_shards - 1}")
        ack = await self._ask("assign", Ack, encode(AssignRequest(shard_id, node_id)))
        # The new map is also announced; reading it now lets a /shards right after see it.
        await self.maps.refresh()
        return {"shard_id": shard_id, "node_id": node_id, "status": ack.detail.get("status", "moving")}

    async def drain(self, node_id: str, on: bool) -> dict[str, Any]:
        """Start (or undo) moving every copy off `node_id`."""
        await self._ask("node", Ack, encode(NodeRequest(node_id, "drain" if on else "undrain")))
        return await self.node(node_id)

    async def evacuate(self, node_id: str, on: bool) -> dict[str, Any]:
        """Move every copy off `node_id` now, if the other nodes have room (else `conflict`); or undo."""
        await self._ask("node", Ack, encode(NodeRequest(node_id, "evacuate" if on else "unevacuate")))
        return await self.node(node_id)

    async def maintenance(self, nodes: list[str], maintenance: bool, drain: bool = False) -> dict[str, Any]:
        """Put several nodes in maintenance (no new copies; `drain` also moves theirs off), or
        take them out; all or nothing. Returns the named nodes as `/nodes` shows them."""
        await self._ask("maintenance", Ack, encode(MaintenanceRequest(list(nodes), maintenance, drain)))
        named = set(nodes)
        return {"maintenance": maintenance, "drain": drain, "nodes": [node_view(n) for n in await self.node_statuses() if n.id in named]}

    async def explain(self, shard: int) -> dict[str, Any]:
        """Why shard `shard`'s copies are where they are (torua.coordinator.explain)."""
        return explanation_view(await self._ask("explain", AllocationExplanation, encode(ExplainRequest(shard))))

    async def rebalance(self, dry_run: bool = False) -> dict[str, Any]:
        """Spread hot shards now (the coordinator decides, torua.coordinator.load_balance):
        the actions it started, or none and why, with the per-node load it saw."""
        reply = await self._ask("rebalance", RebalanceReply, encode(RebalanceRequest(dry_run)))
        return rebalance_view(reply, dry_run)

    async def cluster_config(self) -> dict[str, Any]:
        """The cluster settings in force, their revision, and what each one means."""
        config = await self._ask("config", ClusterConfig)
        return {"settings": config.settings, "revision": config.revision, "describe": describe_settings()}

    async def set_cluster_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some settings, all or nothing (the coordinator validates, persists,
        applies, then tells the nodes); which healthy nodes applied them, which did not answer."""
        payload = encode(SettingsChange(changes))  # a value msgpack cannot carry is a bad_request naming it
        # The coordinator waits up to BROADCAST_TIMEOUT for the nodes' acks.
        config = await self._ask("config.set", ClusterConfig, payload, timeout=COORDINATOR_TIMEOUT + BROADCAST_TIMEOUT)
        return {"settings": config.settings, "revision": config.revision, "applied_by": config.applied_by, "missing": config.missing}

    async def broadcast(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send `kind` to every node and gather the answers, until every node the
        coordinator knows as healthy answered (or it cannot say: the whole deadline)."""
        kind = check_kind(kind)  # printable, at most MAX_KIND_CHARS
        if kind == "config":
            raise ToruaError("bad_request", "settings reach the nodes through PUT /cluster/config, which persists them first")
        body = {} if body is None else body
        try:
            expected: set[str] | None = {n.id for n in await self.node_statuses() if n.status == "healthy"}
        except ToruaError as exc:
            if exc.code != "no_coordinator":
                raise
            expected = None
        try:
            gathered = await gather(self.nc, kind, body, expected, min(BROADCAST_TIMEOUT, self.config.request_timeout))
        except NatsError as exc:
            raise ToruaError("unavailable", f"NATS: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        return {
            "kind": kind,
            "replies": [broadcast_reply_view(r) for r in gathered.replies],
            "missing": gathered.missing,
            # the healthy nodes waited for; null when no coordinator said which they are
            "expected": sorted(expected) if expected is not None else None,
        }

    def gateway_health(self) -> dict[str, Any]:
        """This gateway only (no cluster calls), so it answers even when the cluster does not."""
        nats = "connected" if self.nc.is_connected else "reconnecting" if self.nc.is_reconnecting else "closed" if self.nc.is_closed else "disconnected"
        return {
            "status": "ok" if nats == "connected" else "degraded",
            "nats": nats,
            "map_epoch": self.maps.current.epoch if self.maps.current else None,
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }


def rebalance_view(r: RebalanceReply, dry_run: bool) -> dict[str, Any]:
    return {
        "actions": [
            {"kind": "move" if a.swap_with is None else "swap", "how": a.how, "shard_id": a.shard_id, "source": a.source, "target": a.target, "swap_with": a.swap_with}
            for a in r.actions
        ],
        "reason": r.reason,
        "started": r.started,
        "dry_run": dry_run,
        "loads": r.loads,
        "mean": r.mean,
        "threshold": r.threshold,
        "expected_loads": r.expected,
        "shard_rates": {str(s): rate for s, rate in sorted(r.shard_rates.items())},
    }


def broadcast_reply_view(r: BroadcastReply) -> dict[str, Any]:
    out: dict[str, Any] = {"node_id": r.node_id, "ok": r.ok, "kind": r.kind, "detail": r.detail}
    if not r.ok:
        code = r.error_code or "internal"
        out["error"] = {"code": code, "message": peer_message(code, r.error_message, f"node {r.node_id}")}
    return out


def peer_message(code: str, message: str | None, peer: str) -> str | None:
    """What a user may read of a peer's refusal: all of it, except for a bug's
    (``internal``: an exception's text, paths and all), which only the logs get."""
    if code != "internal":
        return message
    log.warning("%s failed: %s", peer, message)
    return f"internal error on {peer}; see its log"


def _refusal(ack: Ack) -> ToruaError:
    code = ack.error_code or "internal"
    retry = RETRY_AFTER_SECONDS if code in ("unavailable", "no_coordinator") else None
    message = peer_message(code, ack.error_message, "the coordinator") or f"the coordinator refused: {code}"
    return ToruaError(code, message, retry_after=retry, fields=ack.detail if code != "internal" else None)


async def run_gateway(config: GatewayConfig, stop: StopRequest) -> None:
    """Serve the REST and NATS APIs until `stop` (SIGINT/SIGTERM, installed by the
    caller before the first connect), then stop cleanly, each step bounded."""
    # Imported here: both front-ends import this module for `Gateway`.
    from torua.gateway.http import make_app
    from torua.gateway.nats_api import NatsApi

    try:
        nc = await unless_stopped(connect(config.nats_url, "torua-gateway", config.connect_timeout, auth=config.nats_auth()), stop.event)
    except Stopped:
        log.info("gateway stopping before it connected")
        return
    gateway = Gateway(nc, config)
    api = NatsApi(gateway)
    runner: web.AppRunner | None = None
    try:
        await unless_stopped(gateway.start(), stop.event)
        await unless_stopped(api.start(), stop.event)
        log.info("NATS API on %s.> (service torua %s, queue group %s) via %s", subjects.API, __version__, subjects.API_QUEUE, config.nats_url)
        if config.port:
            # Each request's head must arrive within the request deadline (its body too: read_body);
            # requests in flight get their own deadline (and a second) to finish at a stop.
            runner = GatewayRunner(
                make_app(config, gateway), request_timeout=config.request_timeout, access_log=None, handle_signals=False,
                shutdown_timeout=config.request_timeout + 1,
            )
            await runner.setup()
            await listen(runner, config.host, config.port, "REST API", "--port", server_tls(config.tls_cert, config.tls_key))
            base = f"{config.scheme}://{config.host}:{config.port}"
            log.info("REST API on %s (OpenAPI at %s/openapi.json)", base, base)
        async with metrics_server(gateway.metrics.registry, config.metrics_host, config.metrics_port):
            await stop.wait()
    except Stopped:
        pass
    finally:
        log.info("gateway stopping")
        if runner is not None:
            # stops taking HTTP requests, lets those in flight finish
            await bounded(runner.cleanup(), config.request_timeout + 2, "stopping the REST API")
        await bounded(api.stop(), config.request_timeout + 2, "stopping the NATS API")
        await bounded(gateway.stop(), 3, "stopping the gateway")
        await close_connection(nc)
        log.info("gateway stopped")
