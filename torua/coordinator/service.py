"""The coordinator: membership, health, placement, the shard map and moves.

A thin asyncio driver around pure decisions (`health`, `placement`, `shardmap`,
`moves`). Every `tick` it: updates node health from heartbeats; forms the map
once enough nodes are there; brings shard states up to date; plans moves after a
membership change; and re-sends each node its assignment when the node's
heartbeat shows it serves something else. Effects happen in this order:
persist the map (JetStream KV), tell the nodes, announce the map.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import replace
from typing import Any, Awaitable, Callable, Coroutine

from nats.aio.client import Client as NATS

from torua.broadcast import Gathered, gather
from torua.bus import close_connection, connect
from torua.config import CoordinatorConfig
from torua.coordinator import copy_reports, shardmap
from torua.coordinator.api import CoordinatorApi
from torua.coordinator.health import cut_off, node_health
from torua.coordinator.moves import Move
from torua.coordinator.capacity import disk_level
from torua.coordinator.placement import DISK_OK, NodeView, moves_between, plan_placement
from torua.coordinator.load_moves import LoadMoves
from torua.coordinator.metrics import ClusterSnapshot
from torua.coordinator.records import NodeRecord
from torua.coordinator.replicas import ReplicaKeeper
from torua.coordinator.senders import heartbeat_refusal
from torua.cluster_settings import CONFIG_FLAGS, ClusterSettings, from_config as settings_from_config
from torua.coordinator.settings import SettingsKeeper
from torua.coordinator.state_store import ClusterState, MapWrittenUnseen
from torua.replication.lease import LeaseSettings, lease_time
from torua.replication.lease_ledger import LeaseLedger
from torua.protocol import subjects
from torua.protocol.codec import Refused, decode, encode, encode_refusal, from_dict, unpack
from torua.protocol.errors import ToruaError
from torua.protocol.versions import refusal_reason
from torua.protocol.vocabulary import CopyRole, MapRole, MovePhase, NodeHealth, ShardState
from torua.stopping import bounded
from torua.protocol.messages import (
    AssignmentAck,
    Heartbeat,
    LeaseGrant,
    ShardCommand,
    ShardCommandReply,
    ShardMap,
    ShardReport,
)

log = logging.getLogger("torua.coordinator")

REFUSAL_LOG_EVERY = 30.0  # seconds between two log lines about one node's refused heartbeats
REPLAN_AFTER_ABORT_S = 2.0  # placement looks again this long after a move was aborted (its cause may be passing)


class Coordinator:
    def __init__(self, config: CoordinatorConfig, connect: Callable[..., Awaitable[Any]] = connect) -> None:
        self.config = config
        # The run-time settings (GET|PUT /cluster/config); the ones CoordinatorConfig
        # also has are copied into self.config whenever they change.
        self.settings = settings_from_config(config)
        self._connect = connect  # torua.bus.connect; the in-memory harness passes its own
        self.nc: NATS | None = None
        self._own_connection = True
        self._subs: list[Any] = []
        # Set by the election (torua.coordinator.election) when this coordinator leads:
        # its term, whether its lease still holds, and who stands by.
        self.term = 0
        self.may_act: Callable[[], bool] = lambda: True
        self.standbys: Callable[[], Awaitable[list[str]]] = _no_standbys
        self.state: ClusterState | None = None
        self.map: ShardMap | None = None
        self.nodes: dict[str, NodeRecord] = {}
        self.bound_heartbeats: set[str] = set()  # nodes seen heartbeating on their own subject (torua.coordinator.senders)
        self.moves: dict[int, Move] = {}
        self.resuming: dict[int, tuple[str, str, float]] = {}  # shard -> (source, target, give up at); _resume_moves
        self.pending: list[tuple[int, str, str]] = []
        self.needs_rebalance = False  # count-based placement (one copy per shard) plans again at the next tick
        self.started_at = time.time()
        self._first_node_at: float | None = None
        # After a restart, nodes are `unknown` until they beat again; judging shards
        # before then would mark every one of them unavailable for a moment.
        self._settle_until = 0.0
        self._replan_after = 0.0  # placement plans no moves before this (monotonic): just after an aborted one
        # every lease grant sent and what heartbeats say nodes hold: how long a failover
        # or hand-off must wait for an old primary's lease to run out
        self.leases = LeaseLedger()
        self._cut_off = False  # every node silent at once: judge none (health.cut_off)
        self._refusals_logged: dict[tuple[str, str], float] = {}  # (node, reason) -> when last logged
        # The helpers, each given the narrow part of this driver it needs (torua.coordinator.ports).
        self.replicas = ReplicaKeeper(self)  # failover, hand-offs, stepping replicated shards
        self.load = LoadMoves(self, self.replicas)  # hot shards: POST /cluster/rebalance and auto_rebalance
        self.settings_keeper = SettingsKeeper(self)  # loads, changes and spreads self.settings
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._map_lock = asyncio.Lock()
        self._node_write_lock = asyncio.Lock()

    # ----------------------------------------------------------- lifecycle

    async def start(self, nc: NATS | None = None) -> None:
        """Take charge: load the cluster's state from JetStream and start serving.
        Given `nc` (the election's connection), it is shared and left open on stop."""
        if nc is None:
            self.nc = await self._connect(self.config.nats_url, f"torua-coordinator-{self.config.id}", self.config.connect_timeout, auth=self.config.nats_auth())
        else:
            self.nc, self._own_connection = nc, False
        self.state = await ClusterState.open(self.nc, self.config.kv_replicas)
        await self.settings_keeper.load()  # stored settings win over the flags
        self.map = await self.state.load_map()
        for record in (await self.state.load_nodes()).values():
            self.nodes[record["id"]] = NodeRecord(
                record["id"], record.get("first_seen", time.time()), bool(record.get("draining")),
                maintenance=bool(record.get("maintenance")), evacuating=bool(record.get("evacuating")),
                host=str(record.get("host") or ""), data_dir=str(record.get("data_dir") or ""),
            )
        if self.map is not None:
            log.info("resuming shard map at epoch %d (%d shards, %d known nodes)", self.map.epoch, self.map.num_shards, len(self.nodes))
            if self.term:
                # A new epoch stamped with this leader's term: a deposed leader's next
                # map write fails its compare-and-set from now on.
                await self.update_map(lambda m: replace(m, leader=self.config.id, term=self.term) if m is not None else m)
            self.resuming = self._moves_in_the_map()
            # A replication factor other than the map's is brought in by the tick
            # (SettingsKeeper.keep_map_factor), once the resumed moves are done.
            now = time.monotonic()
            self._settle_until = now + self.config.heartbeat_interval * self.config.unhealthy_after
            # Leases an earlier leader granted: at most one lease as timed now, or longer
            # if a change shortened the timing lately (SettingsKeeper.leases_held_until).
            self.leases = LeaseLedger(floor=max(now + self.lease_seconds(), self.settings_keeper.leases_held_until()))
        self._subs.append(await self.nc.subscribe(subjects.HEARTBEATS, cb=self._on_heartbeat))
        self._subs.append(await self.nc.subscribe(subjects.HEARTBEAT, cb=self._on_heartbeat))  # nodes of older releases
        self._subs.extend(await CoordinatorApi(self, self.replicas, self.load, self.settings_keeper).subscribe(self.nc))
        self.spawn(self._tick_loop())
        log.info("coordinator %s leading%s on %s", self.config.id, f" at term {self.term}" if self.term else "", self.config.nats_url)

    async def stop(self) -> None:
        self._stopping.set()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is gone already
                pass
        self._subs.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:  # bounded: a task stuck on a dead connection must not hold the stop up
            await bounded(asyncio.gather(*self._tasks, return_exceptions=True), 3, "cancelling the coordinator's tasks")
        if self._own_connection and self.nc is not None:
            await close_connection(self.nc)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---------------------------------------------------------- membership

    async def _on_heartbeat(self, msg) -> None:
        if not self.may_act():
            return  # a deposed leader: the leader answers this heartbeat
        raw: Any = None
        try:
            raw = unpack(msg.data)
            beat = from_dict(Heartbeat, raw)
        except ToruaError as exc:
            await self._refuse_heartbeat(msg, raw, exc)
            return
        if not subjects.valid_node_id(beat.node_id):
            log.warning("ignoring heartbeat from invalid node id %r", beat.node_id)
            return
        refusal = heartbeat_refusal(msg.subject, beat.node_id, self.bound_heartbeats)
        if refusal is not None:
            log.warning("ignoring a heartbeat on %s: %s", msg.subject, refusal)
            return
        if msg.subject != subjects.HEARTBEAT:
            self.bound_heartbeats.add(beat.node_id)
        record = self.nodes.get(beat.node_id)
        save = record is None
        if record is None:
            record = NodeRecord(beat.node_id, time.time())
            self.nodes[beat.node_id] = record
            log.info("node %s registered (%s pid %d)", beat.node_id, beat.host, beat.pid)
            self.needs_rebalance = True
        if beat.data_dir and (beat.host, beat.data_dir) != (record.host, record.data_dir):
            record.host, record.data_dir = beat.host, beat.data_dir  # where it runs now
            save = True
        if save:
            self.spawn(self._save_node(record))
        if self._first_node_at is None:
            self._first_node_at = time.monotonic()
        now = time.monotonic()
        record.last_seen = now
        record.last_wall = time.time()
        record.heartbeat = beat
        self._note_disk_level(record)
        record.protocol = raw["v"]
        self._note_copies(record, beat)
        self.leases.reported(beat.node_id, beat.started_at, beat.seq, beat.grant_seq, {r.shard_id: r.lease_left for r in beat.shards}, now)
        if record.status != NodeHealth.HEALTHY:
            self._update_health()
        if msg.reply:
            grant = self.lease_grant(beat.node_id)
            # recorded before it is sent: from now on the node may hold it
            self.leases.granted(beat.node_id, beat.started_at, beat.seq, (s for s, _ in grant.shards), now + grant.lease_seconds)
            try:
                await msg.respond(encode(self.settings_keeper.with_settings(grant, beat)))
            except Exception as exc:
                log.debug("could not answer %s's heartbeat: %s", beat.node_id, exc)

    def _note_copies(self, record: NodeRecord, beat: Heartbeat) -> None:
        """Compare what the node says it serves with what the map counts on it for."""
        if self.map is None:
            return
        before = record.missing()
        expected = copy_reports.expected_copies(self.map, record.id)
        reported = {r.shard_id: (r.role, r.complete) for r in beat.shards}
        current = beat.epoch >= self.map.epoch  # it has taken the map in force: its report says what it could do
        record.missing_streaks = copy_reports.missing_streaks(expected, reported, record.missing_streaks, current)
        newly = record.missing() - before
        if newly:
            log.warning(
                "node %s does not have shard(s) %s the map counts on it for (%s); they are not in sync",
                record.id, sorted(newly), ", ".join(f"{s}: {expected.get(s)}" for s in sorted(newly)),
            )
            self.replicas.reconcile_soon()

    def copies_missing(self) -> dict[str, set[int]]:
        """node -> shards the map counts on it for that it says it does not have."""
        return {n.id: n.missing() for n in self.nodes.values() if n.missing()}

    def failover_hold(self) -> float:
        """How much longer than noticing a silent node a failover would wait now,
        because of leases nodes may still hold (0 in a steady cluster)."""
        now = time.monotonic()
        noticed = self.config.heartbeat_interval * self.config.unhealthy_after
        return max([0.0] + [left - noticed for left in self.leases.left(now).values()])

    async def _refuse_heartbeat(self, msg, raw: Any, exc: ToruaError) -> None:
        """Answer a heartbeat this coordinator cannot take with a refusal every
        protocol version reads, so the node logs why; the node is not registered,
        stays out of placement and is judged unhealthy if it was known."""
        fields = raw if isinstance(raw, dict) else {}
        node_id = fields.get("node_id") if isinstance(fields.get("node_id"), str) else ""
        me = f"coordinator {self.config.id}"
        if exc.code == "unsupported_version":
            reason = refusal_reason(fields.get("v"), me, f"node {node_id}" if node_id else "the node")
            software = fields.get("version") if isinstance(fields.get("version"), str) else "?"
            what = f"refusing heartbeat of node {node_id or '?'} (torua {software}): {reason}"
        else:
            reason = exc.message
            what = f"refusing malformed heartbeat{' of node ' + node_id if node_id else ''}: {reason}"
        # The node retries every interval: say it once per node and reason every 30 s.
        # Ids and reasons come from the sender, so the memory of them is pruned.
        key, now = (node_id if subjects.valid_node_id(node_id) else "?", reason[:200]), time.monotonic()
        if now - self._refusals_logged.get(key, -math.inf) >= REFUSAL_LOG_EVERY:
            self._refusals_logged = {k: t for k, t in self._refusals_logged.items() if now - t < REFUSAL_LOG_EVERY}
            self._refusals_logged[key] = now
            log.warning("%s", what)
        if msg.reply:
            try:
                await msg.respond(encode_refusal(exc.code, reason, by=me))
            except Exception as err:
                log.debug("could not answer a refused heartbeat: %s", err)

    def lease_seconds(self) -> float:
        """How long a grant lasts from when the node sent its heartbeat: it runs out
        at least one interval before this coordinator could fail the node over."""
        if self.config.unhealthy_after < 2:
            return 0.0  # only allowed with one copy per shard, where no lease is needed
        return lease_time(LeaseSettings(self.config.heartbeat_interval, self.config.unhealthy_after))

    def lease_grant(self, node_id: str) -> LeaseGrant:
        if self.map is None:
            return LeaseGrant(0, self.lease_seconds(), term=self.term)
        failing_over = self.replicas.failing_over
        shards = [
            (e.shard_id, e.shard_epoch)
            for e in self.map.shards
            if e.primary == node_id and e.shard_id not in failing_over
        ]
        return LeaseGrant(self.map.epoch, self.lease_seconds(), shards, term=self.term)

    async def _save_node(self, record: NodeRecord, strict: bool = False) -> None:
        """Store a node's record. One write at a time, each of the record as it is
        then, so two changes to one node (drain and maintenance, say) never store
        an older view last. `strict` (an operator's change): raise if it was not stored."""
        async with self._node_write_lock:
            try:
                assert self.state is not None
                await self.state.save_node(record.persisted())
            except Exception as exc:
                if strict:
                    raise ToruaError("unavailable", f"could not store node {record.id}'s record ({exc or type(exc).__name__}); try again") from None
                log.warning("could not persist node %s: %s", record.id, exc)

    def health(self) -> dict[str, NodeHealth]:
        return {n.id: n.status for n in self.nodes.values()}

    def snapshot(self) -> ClusterSnapshot:
        """The cluster as this leader sees it, as plain data (its /metrics)."""
        return ClusterSnapshot(self.map, self.health(), len(self.moves))

    # ------------------------------- what the helpers ask for (coordinator.ports)

    @property
    def failing_over(self) -> frozenset[int]:
        """Shards whose primary is being changed now (the replica keeper's)."""
        return self.replicas.failing_over

    def healthy_nodes(self) -> set[str]:
        return {n.id for n in self.nodes.values() if n.status == NodeHealth.HEALTHY}

    def healthy_reports(self) -> dict[str, list[ShardReport]]:
        """node -> the shard reports of its last heartbeat, for healthy nodes."""
        return {n.id: n.heartbeat.shards for n in self.nodes.values() if n.status == NodeHealth.HEALTHY and n.heartbeat is not None}

    def moves_in_flight(self) -> int:
        """Moves running, queued, or left in flight by a previous leader."""
        return len(self.moves) + len(self.pending) + len(self.resuming)

    def replan_soon(self) -> None:
        """Placement looks again at the next tick: count-based placement plans moves
        (one copy per shard), the replica keeper steps replicated shards."""
        self.needs_rebalance = True
        self.replicas.reconcile_soon()

    def replan_pending(self) -> bool:
        return self.needs_rebalance

    def queue_move(self, shard_id: int, source: str, target: str) -> None:
        """Move a copy once a move slot is free (at most max_moves run at once)."""
        self.pending.append((shard_id, source, target))

    def cancel_queued_moves(self, shard_id: int) -> None:
        self.pending = [p for p in self.pending if p[0] != shard_id]

    def mark_stopping(self, record: NodeRecord) -> None:
        """The node asked for a hand-off before it stops: placement gives it no
        primary back until a new process of it (another started_at) beats."""
        record.stopping_of = record.heartbeat.started_at if record.heartbeat else None

    def use_settings(self, settings: ClusterSettings) -> None:
        """Put `settings` in force here, and the flags the config shares with them
        (the tick reads those from the config)."""
        self.settings = settings
        self.config = replace(self.config, **{flag: getattr(settings, name) for name, flag in CONFIG_FLAGS.items()})

    async def broadcast(self, kind: str, body: dict[str, Any], expected: set[str]) -> Gathered:
        """One message to every node on torua.cluster.broadcast, and their answers."""
        return await gather(self.nc, kind, body, expected)

    def _update_health(self) -> bool:
        now = time.monotonic()
        changed = False
        if cut_off((r.last_seen for r in self.nodes.values()), now, self.config.heartbeat_interval, self.config.unhealthy_after):
            if not self._cut_off:
                log.warning("no heartbeat from any node for %d intervals: this coordinator is likely cut off; not judging nodes until one arrives", self.config.unhealthy_after)
            self._cut_off = True
            return False
        self._cut_off = False
        settled = self.map is not None and 0 < self._settle_until <= now
        for record in self.nodes.values():
            status = node_health(record.last_seen, now, self.config.heartbeat_interval, self.config.unhealthy_after)
            if status == NodeHealth.UNKNOWN and settled:
                status = NodeHealth.UNHEALTHY  # silent since this coordinator started, longer than any lease it may hold
            if status != record.status:
                log.info("node %s: %s -> %s", record.id, record.status, status)
                record.unhealthy_since = now if status == NodeHealth.UNHEALTHY else None
                if status == NodeHealth.HEALTHY:
                    self.needs_rebalance = True
                record.status = status
                changed = True
        return changed

    # ------------------------------------------------------------- the loop

    async def _tick_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception as exc:
                if not self.may_act():
                    log.info("tick stopped: %s", exc)  # the lead is lost; the election stops this brain
                else:
                    log.exception("coordinator tick failed; trying again")
            await asyncio.sleep(min(0.25, self.config.heartbeat_interval / 2))

    async def tick(self) -> None:
        if not self.may_act():
            return  # the lead is lost; the election stops this brain
        self._update_health()
        if self.map is None:
            await self._maybe_form()
            return
        if time.monotonic() < self._settle_until:
            return
        self.leases.expire(time.monotonic())
        self.replicas.fail_over()
        await self.replicas.drop_missing_from_in_sync()
        health = self.health()
        not_served = {s for n in self.nodes.values() for s in n.missing() if self.map.shards[s].primary == n.id}
        await self.update_map(lambda m: shardmap.with_states(m, health, not_served))
        await self.settings_keeper.keep_map_factor()
        self._resume_moves()
        if self.replicas.replicated():
            await self.replicas.reconcile()
        elif self.needs_rebalance and not self.moves and not self.pending and not self.resuming and time.monotonic() >= self._replan_after:
            self.needs_rebalance = False
            self._plan_moves()
        self._start_moves()
        self._send_assignments()
        self.load.tick()

    async def _maybe_form(self) -> None:
        healthy = [n for n in self.nodes.values() if n.status == NodeHealth.HEALTHY]
        if not healthy:
            return
        waited = time.monotonic() - (self._first_node_at or time.monotonic())
        if len(healthy) < self.config.expect_nodes and waited < self.config.formation_timeout:
            return
        cluster_id = uuid.uuid4().hex[:12]
        empty = shardmap.empty_map(self.config.shards, self.config.replicas, cluster_id)
        target = plan_placement({}, self.node_views(), self.config.shards, self.config.replicas)
        formed = shardmap.assign_unplaced(empty, target, self.health())
        log.info("forming cluster %s: %d shards over %s", cluster_id, self.config.shards, sorted(n.id for n in healthy))
        self.needs_rebalance = False
        await self.update_map(lambda m: formed if m is None else m)

    def node_views(self) -> list[NodeView]:
        now = time.monotonic()
        return [
            NodeView(
                id=n.id,
                status=n.status,
                draining=n.draining or n.evacuating,
                gone=n.unhealthy_since is not None and now - n.unhealthy_since >= self.config.node_left_delay,
                max_shards=(n.heartbeat.max_shards if n.heartbeat else None) or None,
                maintenance=n.maintenance,
                disk=self.node_disk_level(n),
                # the process that asked for a hand-off is stopping; a restarted one is not
                stopping=n.stopping_of is not None and n.heartbeat is not None and n.heartbeat.started_at == n.stopping_of,
            )
            for n in self.nodes.values()
        ]

    def node_disk_level(self, record: NodeRecord) -> str:
        """The node's disk against the watermarks in force now (they change at run time)."""
        beat = record.heartbeat
        if beat is None:
            return DISK_OK
        return disk_level(beat.disk_used, beat.disk_free, self.settings.disk_low_watermark, self.settings.disk_high_watermark, record.disk_level)

    def _note_disk_level(self, record: NodeRecord) -> None:
        level = self.node_disk_level(record)
        if level != record.disk_level:
            log.info("node %s disk: %s -> %s", record.id, record.disk_level, level)
            record.disk_level = level
            self.replan_soon()

    async def update_map(self, change: Callable[[ShardMap | None], ShardMap | None], announce: bool = True) -> bool:
        """Apply `change` to the current map at a new epoch: persist, then announce.

        Read, change and write happen under one lock so concurrent moves never
        overwrite each other; a failed write leaves the old map in force.
        """
        assert self.state is not None and self.nc is not None
        adopted = False
        async with self._map_lock:
            for attempt in range(2):
                self.check_leading()
                changed = change(self.map)
                if changed is None or changed is self.map:
                    break
                stamped = replace(changed, epoch=(self.map.epoch if self.map else 0) + 1, leader=self.config.id, term=self.term)
                new_map = shardmap.with_shard_epochs(self.map, stamped)
                try:
                    await self.state.save_map(new_map)
                except MapWrittenUnseen as unseen:
                    # An earlier write of this lead landed though its answer was lost:
                    # that map is in force (and never announced); change it instead.
                    if attempt:
                        raise
                    log.warning("shard map epoch %d, written by this coordinator, had not been seen; going on from it", unseen.stored.epoch)
                    self.map, adopted = unseen.stored, True
                    continue
                self.map, adopted = new_map, True
                log.info("shard map epoch %d", new_map.epoch, extra={"epoch": new_map.epoch})
                break
        if adopted and announce:
            await self.announce()
        return adopted

    async def announce(self) -> None:
        assert self.nc is not None
        if self.map is not None and self.may_act():
            await self.nc.publish(subjects.MAP_ANNOUNCE, encode(self.map))

    async def set_draining(self, record: NodeRecord, draining: bool) -> None:
        if record.draining != draining:
            record.draining = draining
            log.info("node %s %s", record.id, "draining: its copies move away" if draining else "no longer draining")
            self.replan_soon()  # in force now; stored next (an error says so)
            await self._save_node(record, strict=True)

    async def set_capacity_flags(self, records: list[NodeRecord], **flags: bool) -> None:
        """Set maintenance / evacuating / draining on every record at once, persist, re-plan."""
        changed = [r for r in records if any(getattr(r, k) != v for k, v in flags.items())]
        for record in changed:
            for k, v in flags.items():
                setattr(record, k, v)
            log.info("node %s: %s", record.id, ", ".join(f"{k}={v}" for k, v in flags.items()))
        if changed:
            self.replan_soon()  # in force now; stored next (an error says so)
        for record in changed:
            await self._save_node(record, strict=True)

    # ---------------------------------------------------------------- moves

    def _plan_moves(self) -> None:
        assert self.map is not None
        current = shardmap.placement_of(self.map)
        target = plan_placement(current, self.node_views(), self.map.num_shards, self.map.replication_factor)
        for move in moves_between(current, target):
            if move.source is None:
                continue  # a shard with no copy anywhere is born by assign_unplaced, not moved
            self.pending.append((move.shard_id, move.source, move.target))
        if self.pending:
            log.info("rebalance planned %d moves", len(self.pending))
        unplaced = [s for s, copies in target.items() if copies and current.get(s) == ()]
        if unplaced:
            health = self.health()
            self.spawn(self.update_map(lambda m: shardmap.assign_unplaced(m, target, health)))

    def _start_moves(self) -> None:
        while self.pending and len(self.moves) < self.config.max_moves:
            shard_id, source, target = self.pending.pop(0)
            health = self.health()
            if shard_id in self.moves or health.get(source) != NodeHealth.HEALTHY or health.get(target) != NodeHealth.HEALTHY:
                self.needs_rebalance = shard_id not in self.moves  # plan again once the state settles
                continue  # data can only come from a live copy
            self.start_move(shard_id, source, target, reason="rebalance")

    def start_move(self, shard_id: int, source: str, target: str, reason: str) -> Move:
        move = Move(shard_id, source, target, time.time(), reason=reason)
        self.moves[shard_id] = move
        self.spawn(self._run_move(move))
        return move

    def check_leading(self) -> None:
        """Every effect (map write, node command) first checks that the lead still holds."""
        if not self.may_act():
            raise ToruaError("unavailable", f"coordinator {self.config.id} no longer leads")

    async def command(self, node_id: str, call: str, command: ShardCommand, timeout: float | None = None) -> ShardCommandReply:
        assert self.nc is not None
        self.check_leading()
        command = replace(command, term=self.term)
        msg = await self.nc.request(subjects.node(node_id, call), encode(command), timeout=timeout or self.config.move_timeout)
        reply = decode(ShardCommandReply, msg.data)
        if not reply.ok:
            raise ToruaError(reply.error_code or "internal", f"{call} on {node_id}: {reply.error_message}")
        return reply

    async def _run_move(self, move: Move) -> None:
        shard = move.shard_id
        log.info("move shard %d %s -> %s (%s)", shard, move.source, move.target, move.reason, extra={"shard": shard, "epoch": self.map.epoch if self.map else None})
        try:
            await self.update_map(lambda m: shardmap.set_entry(m, shard, target=move.target, state=ShardState.MOVING))
            assert self.map is not None
            epoch = self.map.epoch
            await self.command(move.target, "shard.copy", ShardCommand(shard, epoch, source=move.source))
            move.advance("ok")
            frozen = await self.command(move.source, "shard.freeze", ShardCommand(shard, epoch))
            move.until_seq = frozen.last_seq
            move.advance("ok")
            await self.command(move.target, "shard.catch_up", ShardCommand(shard, epoch, source=move.source, until_seq=move.until_seq))
            move.advance("ok")
            health = self.health()
            await self.update_map(
                lambda m: shardmap.with_states(
                    shardmap.set_entry(m, shard, primary=move.target, in_sync=[move.target], target=None, created=True), health
                ),
                announce=False,
            )
            move.advance("ok")
        except Exception as exc:
            log.warning("move of shard %d to %s failed in %s: %s; aborting", shard, move.target, move.phase, exc, extra={"shard": shard})
            move.phase = MovePhase.ABORTING
            await self._abort(move)
            return
        finally:
            if move.phase != MovePhase.DROPPING:
                self.moves.pop(shard, None)
        # The target serves first, then everyone learns the map, then the source lets go.
        await self._assign(move.target)
        await self.announce()
        await self._assign(move.source)
        try:
            await self.command(move.source, "shard.drop", ShardCommand(shard, self.map.epoch))
            move.advance("ok")
        except Exception as exc:
            move.advance("failed")
            log.warning("source %s kept a retired copy of shard %d: %s", move.source, shard, exc)
        self.moves.pop(shard, None)
        log.info("moved shard %d to %s at epoch %d", shard, move.target, self.map.epoch, extra={"shard": shard, "epoch": self.map.epoch})

    async def _abort(self, move: Move) -> None:
        await self._undo_steps(move, "abort")
        try:
            health = self.health()
            await self.update_map(lambda m: shardmap.with_states(shardmap.set_entry(m, move.shard_id, target=None), health))
        except Exception as exc:
            log.warning("abort: could not publish map: %s", exc)
        self.moves.pop(move.shard_id, None)
        # What placement wanted still stands: plan again shortly (the cause, a copy not yet
        # serving after a coordinator's restart, a node busy, may be gone by then). Before,
        # nothing planned again until a node came or went: a cluster stayed unbalanced.
        self._replan_after = time.monotonic() + REPLAN_AFTER_ABORT_S
        self.replan_soon()

    def _moves_in_the_map(self) -> dict[int, tuple[str, str, float]]:
        """Moves a previous leader left in flight: the map names their source (the
        primary) and target, which is all a move needs to run again."""
        assert self.map is not None
        give_up = time.monotonic() + self.config.move_timeout
        return {e.shard_id: (e.primary, e.target, give_up) for e in self.map.shards if e.target and e.primary}

    def _resume_moves(self) -> None:
        """Run each move a previous leader left in flight again, from the start, once
        both its nodes are healthy; abort it (the source still has the data) if they
        are not within `move_timeout`."""
        health = self.health()
        now = time.monotonic()
        for shard_id, (source, target, give_up) in list(self.resuming.items()):
            if shard_id in self.moves:
                continue
            if health.get(source) == NodeHealth.HEALTHY and health.get(target) == NodeHealth.HEALTHY:
                if len(self.moves) >= self.config.max_moves:
                    return
                move = Move(shard_id, source, target, time.time(), reason="resumed")
                log.info("resuming the move of shard %d %s -> %s", shard_id, source, target, extra={"shard": shard_id})
                self.moves[shard_id] = move
                self.spawn(self._resume(move))
            elif now >= give_up:
                move = Move(shard_id, source, target, time.time(), phase=MovePhase.ABORTING, reason="resumed")
                log.info("aborting the move of shard %d to %s: %s is not healthy", shard_id, target, source if health.get(source) != NodeHealth.HEALTHY else target)
                self.moves[shard_id] = move
                self.spawn(self._abort(move))
            else:
                continue
            del self.resuming[shard_id]

    async def _resume(self, move: Move) -> None:
        # Where the previous leader stopped is not known for sure: start clean, then run every phase.
        await self._undo_steps(move, "resume")
        await self._run_move(move)

    async def _undo_steps(self, move: Move, why: str) -> None:
        """Let the source take writes again and drop the target's partial copy (each may already be so)."""
        for node_id, call in ((move.source, "shard.unfreeze"), (move.target, "shard.drop")):
            try:
                await self.command(node_id, call, ShardCommand(move.shard_id, self.map.epoch if self.map else 0))
            except Exception as exc:
                log.warning("%s: %s on %s failed: %s", why, call, node_id, exc)

    # ---------------------------------------------------------- assignments

    def _send_assignments(self) -> None:
        assert self.map is not None
        now = time.monotonic()
        for record in self.nodes.values():
            if record.status != NodeHealth.HEALTHY or record.heartbeat is None or record.assigning:
                continue
            serving = {
                r.shard_id: MapRole.PRIMARY if r.role == CopyRole.FROZEN else r.role
                for r in record.heartbeat.shards
                if r.role in (CopyRole.PRIMARY, CopyRole.FROZEN, CopyRole.REPLICA)
            }
            expected = shardmap.roles_of(self.map, record.id)
            stale = record.heartbeat.epoch < self.map.epoch
            if (serving != expected or stale) and now - record.last_assign >= self.config.heartbeat_interval:
                record.last_assign = now
                self.spawn(self._assign(record.id))
            self._collect_garbage(record)

    def _collect_garbage(self, record: NodeRecord) -> None:
        """Drop retired or abandoned copies on a node once the shard is safely served elsewhere."""
        assert self.map is not None and record.heartbeat is not None
        for report in record.heartbeat.shards:
            if report.role not in (CopyRole.RETIRED, CopyRole.COPYING) or report.shard_id in self.moves:
                continue
            entry = self.map.shards[report.shard_id] if report.shard_id < len(self.map.shards) else None
            if entry is None or entry.primary in (None, record.id) or entry.state != ShardState.ACTIVE:
                continue
            if report.role == CopyRole.RETIRED and self.health().get(entry.primary) != NodeHealth.HEALTHY:
                continue
            if report.shard_id not in record.dropping:
                record.dropping.add(report.shard_id)
                self.spawn(self._drop_quietly(record, report.shard_id))

    async def _drop_quietly(self, record: NodeRecord, shard_id: int) -> None:
        try:
            await self.command(record.id, "shard.drop", ShardCommand(shard_id, self.map.epoch if self.map else 0))
            log.info("dropped stale copy of shard %d on %s", shard_id, record.id)
        except Exception as exc:
            log.debug("drop of shard %d on %s: %s", shard_id, record.id, exc)
        finally:
            record.dropping.discard(shard_id)

    async def _assign(self, node_id: str) -> None:
        assert self.map is not None and self.nc is not None
        record = self.nodes.get(node_id)
        if record is None:
            return
        record.assigning = True
        assignment = replace(shardmap.assignment_for(self.map, node_id), term=self.term)
        try:
            self.check_leading()
            msg = await self.nc.request(subjects.node(node_id, "assign"), encode(assignment), timeout=max(2.0, self.config.heartbeat_interval * 2))
            data = msg.data
            try:
                ack = decode(AssignmentAck, data)
            except Refused as exc:  # e.g. the node speaks an incompatible protocol version
                log.warning("%s refuses the assignment: %s", exc.by or f"node {node_id}", exc.message)
                return
            except ToruaError:
                reply = decode(ShardCommandReply, data)
                log.warning("node %s refused assignment: %s %s", node_id, reply.error_code, reply.error_message)
                return
            await self._record_ack(ack)
        except Exception as exc:
            log.debug("assignment to %s not acknowledged: %s", node_id, exc)
        finally:
            record.assigning = False

    async def _record_ack(self, ack: AssignmentAck) -> None:
        assert self.map is not None
        if ack.missing:
            log.error("node %s has no data for assigned shards %s: they stay unavailable until it does", ack.node_id, ack.missing)
        fresh = [s for s in ack.serving if not self.map.shards[s].created and self.map.shards[s].primary == ack.node_id]
        if fresh:

            def mark_created(m: ShardMap | None) -> ShardMap | None:
                for shard_id in fresh:
                    m = shardmap.set_entry(m, shard_id, created=True)
                return m

            await self.update_map(mark_created)


async def _no_standbys() -> list[str]:
    return []

