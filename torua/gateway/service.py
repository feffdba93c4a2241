"""The gateway: one set of operations behind two front-ends (REST in `http.py`,
NATS in `nats_api.py`). It keeps no state of its own but a cached shard map.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import signal
import time
from typing import Any

from aiohttp import web
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from torua import __version__
from torua.bus import connect
from torua.cluster_health import cluster_health
from torua.config import GatewayConfig
from torua.keys import shard_for_key, validate_key
from torua.listing import list_keys
from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import TouraError
from torua.protocol.messages import Ack, AssignRequest, CoordinatorInfo, KvReply, KvRequest, NodesReply, NodeStatus
from torua.routing import RETRY_AFTER_SECONDS, MapCache, ShardRouter

log = logging.getLogger("torua.gateway")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


def node_json(n: NodeStatus) -> dict[str, Any]:
    return {
        "id": n.id,
        "status": n.status,
        "shards": len(n.shards),
        "shard_ids": n.shards,
        "primaries": n.primaries,
        "last_heartbeat": _iso(n.last_heartbeat),
        "missed_heartbeats": n.missed_heartbeats,
        "draining": n.draining,
        "version": n.version,
        "host": n.host,
        "pid": n.pid,
        "max_shards": n.max_shards,
        "uptime_seconds": round(time.time() - n.started_at, 3) if n.started_at else None,
        "keys": n.keys,
        "bytes": n.bytes,
    }


class Gateway:
    def __init__(self, nc: NATS, config: GatewayConfig) -> None:
        self.nc = nc
        self.config = config
        self.maps = MapCache(nc)
        self.router = ShardRouter(nc, self.maps)
        self.started_at = time.time()

    # ------------------------------------------------------------------ KV

    def _shard(self, key: str) -> int:
        return shard_for_key(key, self.router.shard_map().num_shards)

    async def _kv(self, key: str, build) -> KvReply:
        validate_key(key)
        if self.maps.current is None:
            await self.maps.refresh()
        shard = self._shard(key)
        reply = await self.router.call(shard, lambda epoch: build(shard, epoch), self.config.request_timeout)
        if not reply.ok:
            raise TouraError(reply.error_code or "internal", reply.error_message)
        return reply

    async def kv_get(self, key: str) -> tuple[bytes, str]:
        reply = await self._kv(key, lambda shard, epoch: KvRequest("get", shard, epoch, key=key))
        if not reply.found:
            raise TouraError("not_found", f"key {key!r} does not exist")
        return reply.value or b"", reply.content_type or "application/octet-stream"

    async def kv_put(self, key: str, value: bytes, content_type: str) -> None:
        if len(value) > self.config.max_value_bytes:
            raise TouraError("value_too_large", f"value is {len(value)} bytes; the limit is {self.config.max_value_bytes}")
        await self._kv(key, lambda shard, epoch: KvRequest("put", shard, epoch, key=key, value=value, content_type=content_type))

    async def kv_delete(self, key: str) -> None:
        await self._kv(key, lambda shard, epoch: KvRequest("delete", shard, epoch, key=key))

    async def kv_list(self, prefix: str, limit: int, cursor: str | None) -> dict[str, Any]:
        if self.maps.current is None:
            await self.maps.refresh()
        keys, next_cursor = await list_keys(self.router, prefix, limit, cursor, self.config.request_timeout)
        return {"keys": keys, "next_cursor": next_cursor}

    async def location(self, key: str) -> dict[str, Any]:
        validate_key(key)
        shard_map = self.router.shard_map()
        entry = shard_map.entry(shard_for_key(key, shard_map.num_shards))
        return {"key": key, "shard_id": entry.shard_id, "primary": entry.primary, "epoch": shard_map.epoch, "state": entry.state}

    # ------------------------------------------------------------- cluster

    async def _coordinator(self, call: str, payload: bytes = b"") -> bytes:
        try:
            msg = await self.nc.request(subjects.coordinator(call), payload, timeout=min(3.0, self.config.request_timeout))
        except (NoRespondersError, NatsTimeout):
            raise TouraError("no_coordinator", "the coordinator is not answering", retry_after=RETRY_AFTER_SECONDS) from None
        return msg.data

    async def node_statuses(self) -> list[NodeStatus]:
        return decode(NodesReply, await self._coordinator("nodes")).nodes

    async def nodes(self) -> dict[str, Any]:
        return {"nodes": [node_json(n) for n in await self.node_statuses()]}

    async def node(self, node_id: str) -> dict[str, Any]:
        for n in await self.node_statuses():
            if n.id == node_id:
                return node_json(n)
        raise TouraError("unknown_node", f"node {node_id!r} is not part of the cluster")

    def shards(self) -> dict[str, Any]:
        m = self.router.shard_map()
        return {
            "num_shards": m.num_shards,
            "epoch": m.epoch,
            "replication_factor": m.replication_factor,
            "shards": [
                {
                    "shard_id": e.shard_id,
                    "primary": e.primary,
                    "replicas": e.replicas,
                    "in_sync": e.in_sync,
                    "state": e.state,
                    "target": e.target,
                }
                for e in m.shards
            ],
        }

    async def health(self) -> dict[str, Any]:
        nodes = await self.node_statuses()
        if self.maps.current is None:
            await self.maps.refresh()
        return cluster_health(self.maps.current, nodes)

    async def cluster_info(self) -> dict[str, Any]:
        info = decode(CoordinatorInfo, await self._coordinator("info"))
        nodes = await self.node_statuses()
        health = cluster_health(self.maps.current, nodes)
        return {
            "cluster_id": info.cluster_id,
            "formed": info.formed,
            "coordinator": info.coordinator_id,
            "version": __version__,
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
                {"shard_id": m.shard_id, "source": m.source, "target": m.target, "phase": m.phase, "started_at": _iso(m.started_at)}
                for m in info.moves
            ],
            "uptime_seconds": round(time.time() - info.started_at, 3),
        }

    async def assign(self, shard_id: Any, node_id: Any) -> dict[str, Any]:
        if not isinstance(shard_id, int) or isinstance(shard_id, bool) or not isinstance(node_id, str):
            raise TouraError("bad_request", 'body must be {"shard_id": <integer>, "node_id": <string>}')
        ack = decode(Ack, await self._coordinator("assign", encode(AssignRequest(shard_id, node_id))))
        if not ack.ok:
            raise TouraError(ack.error_code or "internal", ack.error_message)
        await self.maps.refresh()
        return {"shard_id": shard_id, "node_id": node_id, "status": ack.detail.get("status", "moving")}

    def gateway_health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.nc.is_connected else "degraded",
            "nats": "connected" if self.nc.is_connected else "disconnected",
            "map_epoch": self.maps.current.epoch if self.maps.current else None,
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }


async def run_gateway(config: GatewayConfig) -> None:
    from torua.gateway.http import make_app
    from torua.gateway.nats_api import start_nats_api

    nc = await connect(config.nats_url, "torua-gateway", config.connect_timeout)
    gateway = Gateway(nc, config)
    await gateway.maps.start()
    service = await start_nats_api(gateway)
    runner = None
    if config.port:
        runner = web.AppRunner(make_app(gateway), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, config.host, config.port).start()
        log.info("gateway: HTTP on http://%s:%d, NATS API on %s", config.host, config.port, subjects.API + ".>")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("gateway stopping")
    if runner is not None:
        await runner.cleanup()
    await service.stop()
    await gateway.maps.stop()
    try:
        await asyncio.wait_for(nc.drain(), 5)
    except Exception:
        await nc.close()
