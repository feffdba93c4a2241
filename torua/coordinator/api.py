"""The coordinator's request/reply API (`torua.coordinator.<call>`), used by
gateways and the CLI. Handlers read the leader's state through
`torua.coordinator.ports.ApiLeader` and hand decisions to pure functions; every
refusal is an `Ack` with an error code. Calls that belong to another helper go
to it: hand-offs to the replica keeper, `rebalance` to the load mover, `config`
and `config.set` to the settings keeper.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

from nats.aio.client import Client as NATS

from torua import __version__
from torua.coordinator import shardmap
from torua.coordinator.health import missed_heartbeats
from torua.coordinator.ports import ApiLeader, PrimaryHandoffs, Rebalancer, SettingsCalls
from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.coordinator.capacity import disk_percent, evacuation_room
from torua.coordinator.explain import explain_shard
from torua.protocol.messages import (
    Ack,
    AllocationExplanation,
    AssignRequest,
    CoordinatorInfo,
    ExplainRequest,
    InSyncChange,
    MaintenanceRequest,
    MoveStatus,
    NodeRequest,
    NodesReply,
    NodeStatus,
    RebalanceReply,
    RebalanceRequest,
)
from torua.protocol.vocabulary import InSyncAction, NodeAction

log = logging.getLogger("torua.coordinator.api")


class CoordinatorApi:
    def __init__(self, leader: ApiLeader, replicas: PrimaryHandoffs, load: Rebalancer, settings_keeper: SettingsCalls) -> None:
        self.c = leader
        self.replicas = replicas
        self.load = load
        self.settings_keeper = settings_keeper

    async def subscribe(self, nc: NATS) -> list[Any]:
        calls: dict[str, Callable[[bytes], Awaitable[Any]]] = {
            "nodes": self.nodes,
            "info": self.info,
            "assign": self.assign,
            "map": self.shard_map,
            "in_sync": self.in_sync,
            "node": self.node,
            "maintenance": self.maintenance,
            "explain": self.explain,
            "config": self.settings_keeper.current,
            "config.set": self.settings_keeper.change,
            "rebalance": self.rebalance,
        }
        return [await nc.subscribe(subjects.coordinator(call), cb=self._serve(handler)) for call, handler in calls.items()]

    def _serve(self, handler: Callable[[bytes], Awaitable[Any]]):
        async def run(msg) -> None:
            if not self.c.may_act():
                # A deposed leader that woke up: the leader answers this request too
                # (these subjects have no queue group), so say nothing and change nothing.
                log.debug("not leading: ignoring %s", msg.subject)
                return
            try:
                reply = await handler(msg.data)
            except ToruaError as exc:
                reply = Ack(False, exc.code, exc.message, detail=exc.fields)
            except Exception as exc:
                log.exception("coordinator API %s failed", msg.subject)
                reply = Ack(False, "internal", str(exc))
            if msg.reply:
                await msg.respond(encode(reply))

        return run

    def node_statuses(self) -> list[NodeStatus]:
        c = self.c
        now = time.monotonic()
        out = []
        for n in sorted(c.nodes.values(), key=lambda n: n.id):
            shards = sorted(shardmap.roles_of(c.map, n.id)) if c.map else []
            primaries = sorted(shardmap.primaries_of(c.map, n.id)) if c.map else []
            beat = n.heartbeat
            out.append(
                NodeStatus(
                    id=n.id,
                    status=n.status,
                    draining=n.draining,
                    last_heartbeat=n.last_wall,
                    shards=shards,
                    primaries=primaries,
                    version=beat.version if beat else "",
                    host=beat.host if beat else n.host,
                    pid=beat.pid if beat else 0,
                    max_shards=beat.max_shards if beat else None,
                    started_at=beat.started_at if beat else None,
                    keys=sum(r.keys for r in beat.shards) if beat else 0,
                    bytes=sum(r.bytes for r in beat.shards) if beat else 0,
                    ops_rate=round(sum(r.ops_rate for r in beat.shards), 3) if beat else 0.0,
                    write_rate=round(sum(r.write_rate for r in beat.shards), 3) if beat else 0.0,
                    missed_heartbeats=missed_heartbeats(n.last_seen, now, c.config.heartbeat_interval),
                    protocol=n.protocol,
                    maintenance=n.maintenance,
                    evacuating=n.evacuating,
                    disk_total=beat.disk_total if beat else 0,
                    disk_used=beat.disk_used if beat else 0,
                    disk_free=beat.disk_free if beat else 0,
                    disk_percent=disk_percent(beat.disk_used, beat.disk_free) if beat else None,
                    disk_level=c.node_disk_level(n),
                    missing=sorted(n.missing()),
                    lease_held=round(max(0.0, c.leases.held_until(n.id) - now), 3),
                    data_dir=beat.data_dir if beat and beat.data_dir else n.data_dir,
                )
            )
        return out

    async def nodes(self, data: bytes) -> NodesReply:
        return NodesReply(nodes=self.node_statuses(), epoch=self.c.map.epoch if self.c.map else 0)

    async def shard_map(self, data: bytes) -> Any:
        if self.c.map is None:
            raise ToruaError("unavailable", "the cluster has not formed yet")
        return self.c.map

    async def info(self, data: bytes) -> CoordinatorInfo:
        c = self.c
        return CoordinatorInfo(
            coordinator_id=c.config.id,
            version=__version__,
            epoch=c.map.epoch if c.map else 0,
            num_shards=c.map.num_shards if c.map else c.config.shards,
            replication_factor=c.map.replication_factor if c.map else c.config.replicas,
            started_at=c.started_at,
            cluster_id=c.map.cluster_id if c.map else "",
            moves=[MoveStatus(m.shard_id, m.source, m.target, m.phase, m.started_at) for m in c.moves.values()],
            formed=c.map is not None,
            term=c.term,
            standbys=await c.standbys(),
            lease_seconds=c.lease_seconds(),
            failover_hold=round(c.failover_hold(), 3),
            handoffs=sorted(c.failing_over),
        )

    async def assign(self, data: bytes) -> Ack:
        c = self.c
        request = decode(AssignRequest, data)
        verdict = shardmap.check_manual_move(c.map, c.health(), set(c.moves), request.shard_id, request.node_id)
        if verdict == "already_there":
            return Ack(True, detail={"status": "already_there"})
        assert c.map is not None
        source = c.map.shards[request.shard_id].primary
        assert source is not None
        c.cancel_queued_moves(request.shard_id)
        c.start_move(request.shard_id, source, request.node_id, reason="manual")
        return Ack(True, detail={"status": "moving"})

    async def in_sync(self, data: bytes) -> Ack:
        """A primary takes a silent replica out of the in-sync set (or a caught-up one back in).

        The write that asked waits for this answer: only once the stored map no
        longer counts the replica may the primary acknowledge without it.
        """
        change = decode(InSyncChange, data)
        if self.c.map is None:
            raise ToruaError("unavailable", "the cluster has not formed yet")
        shardmap.change_in_sync(self.c.map, change.shard_id, change.shard_epoch, change.node_id, change.action)  # validate first
        await self.c.update_map(lambda m: shardmap.change_in_sync(m, change.shard_id, change.shard_epoch, change.node_id, change.action))
        log.info("shard %d: %s %s the in-sync set", change.shard_id, change.node_id, "left" if change.action == InSyncAction.REMOVE else "joined")
        return Ack(True)

    async def rebalance(self, data: bytes) -> RebalanceReply:
        """Spread hot shards now (torua.coordinator.load_moves); an empty request is a real run."""
        request = decode(RebalanceRequest, data) if data else RebalanceRequest()
        return await self.load.rebalance(request)

    async def node(self, data: bytes) -> Ack:
        """drain / undrain a node (its copies move away / may come back), or hand off
        its primaries now (a node about to stop on SIGTERM asks for this)."""
        request = decode(NodeRequest, data)
        c = self.c
        record = c.nodes.get(request.node_id)
        if record is None:
            raise ToruaError("unknown_node", f"node {request.node_id!r} is not part of the cluster")
        if request.action in (NodeAction.DRAIN, NodeAction.UNDRAIN):
            await c.set_draining(record, request.action == NodeAction.DRAIN)
            return Ack(True, detail={"status": "draining" if record.draining else record.status})
        if request.action == NodeAction.HANDOFF:
            # It is about to stop: placement gives it no primary back meanwhile.
            c.mark_stopping(record)
            moved = self.replicas.hand_off_primaries(request.node_id)
            return Ack(True, detail={"handing_off": str(moved)})
        if request.action == NodeAction.EVACUATE:
            if c.map is None:
                raise ToruaError("unavailable", "the cluster has not formed yet")
            if not record.evacuating:
                room = evacuation_room(record.id, shardmap.placement_of(c.map), c.node_views(), c.map.num_shards, c.map.replication_factor)
                if not room.ok:
                    raise ToruaError("conflict", f"cannot evacuate {record.id}: {room.message}; nothing changed")
                await c.set_capacity_flags([record], evacuating=True)
            return Ack(True, detail={"status": "evacuating"})
        if request.action == NodeAction.UNEVACUATE:
            await c.set_capacity_flags([record], evacuating=False)
            return Ack(True, detail={"status": record.status})
        raise ToruaError("bad_request", f"unknown node action {request.action!r}")

    async def maintenance(self, data: bytes) -> Ack:
        """Bulk maintenance, all or nothing: afterwards every named node has maintenance
        set as asked; `drain` also drains them; ending maintenance ends their drain too."""
        request = decode(MaintenanceRequest, data)
        c = self.c
        if not request.nodes:
            raise ToruaError("bad_request", "nodes must name at least one node")
        if request.drain and not request.maintenance:
            raise ToruaError("bad_request", "drain: true needs maintenance: true")
        unknown = sorted({n for n in request.nodes if n not in c.nodes})
        if unknown:
            raise ToruaError("unknown_node", f"not part of the cluster: {', '.join(unknown)}; nothing changed")
        records = [c.nodes[n] for n in dict.fromkeys(request.nodes)]
        flags = {"maintenance": request.maintenance}
        if request.drain or not request.maintenance:
            flags["draining"] = request.maintenance
        await c.set_capacity_flags(records, **flags)
        return Ack(True)

    async def explain(self, data: bytes) -> AllocationExplanation:
        """Why a shard's copies are where they are (torua.coordinator.explain)."""
        request = decode(ExplainRequest, data)
        c = self.c
        if c.map is None:
            raise ToruaError("unavailable", "the cluster has not formed yet")
        if not 0 <= request.shard_id < c.map.num_shards:
            raise ToruaError("bad_request", f"shard must be from 0 to {c.map.num_shards - 1}, not {request.shard_id}")
        m = c.moves.get(request.shard_id)
        move = MoveStatus(m.shard_id, m.source, m.target, m.phase, m.started_at) if m else None
        disk = {n.id: disk_percent(n.heartbeat.disk_used, n.heartbeat.disk_free) for n in c.nodes.values() if n.heartbeat}
        watermarks = (c.settings.disk_low_watermark, c.settings.disk_high_watermark)
        return explain_shard(c.map, request.shard_id, c.node_views(), move, disk, watermarks, c.copies_missing())
