"""The storage node: holds shard copies on local disk and serves them over NATS.

A node opens only what the coordinator assigns it (`torua.node.<id>.assign`),
creates a shard empty only when the assignment says the shard is being born,
and answers `moved` for any shard it does not serve. Moves are driven by the
coordinator through `shard.copy`, `shard.freeze`, `shard.catch_up`,
`shard.unfreeze` and `shard.drop`; the copy itself is pulled from the source
node's `shard.snapshot` and `shard.log` (see `torua.node.copy`).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import math
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import psutil
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError

from torua import __version__, dir_lock
from torua.access import admit_app
from torua.api_keys import check_size
from torua.bus import close_connection, connect
from torua.key_ring import KeyRing
from torua.config import NodeConfig
from torua.kv_rules import payload_room, servable_content_type
from torua.arrow_only import keep_pandas_out
from torua.graph.vector_cache import single_threaded_blas
from torua.leadership import accept_term
from torua.metrics import LiveCollector, metrics_server, registry_of
from torua.node.broadcast import apply_settings, on_broadcast
from torua.graph.index import GraphIndex, limits_from_config
from torua.graph.rows import GraphRows, IndexRows
from torua.malloc_arenas import arenas_in_use
from torua.node.control import ShardControl
from torua.node.graph import GraphService
from torua.node.kv_checks import MAX_LIST_LIMIT, operation_for
from torua.node.metrics import CopySnapshot, NodeSnapshot, node_families
from torua.node.rates import RateMeter
from torua.node.replies import reply
from torua.node.replication import Replication, notify
from torua.node.roles import IllegalTransition
from torua.node.shard_files import ShardFiles
from torua.node.tasks import Tasks
from torua.replication.fencing import CopyState, may_serve
from torua.replication.lease import renewed
from torua.protocol import subjects
from torua.protocol.codec import Refused, decode, encode, encode_refusal, from_dict, unpack
from torua.protocol.versions import refusal_reason
from torua.protocol.errors import ToruaError
from torua.protocol.messages import (
    Assignment,
    Heartbeat,
    KvReply,
    LeaseGrant,
    NodeRequest,
    Ack,
    KvRequest,
    ShardCommand,
    ShardCommandReply,
    ShardReport,
)
from torua.storage.engine import EngineFactory
from torua.storage.operations import Operation
from torua.storage.shard_store import ShardClosed, ShardStats, ShardStore
from torua.stopping import StopRequest, Stopped, bounded, unless_stopped

log = logging.getLogger("torua.node")



@dataclass
class Holding:
    """One shard copy on this node."""

    shard_id: int
    role: str
    store: ShardStore | None
    inflight: int = 0
    # another node is copying from this one until then (monotonic): keep its log whole
    copy_source_until: float = 0.0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # replication (see torua.node.replication)
    shard_epoch: int = 0
    primary: str | None = None
    replicas: list[str] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    promotions: list[tuple[int, int]] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)
    new_data: asyncio.Event = field(default_factory=asyncio.Event)
    acks_changed: asyncio.Event = field(default_factory=asyncio.Event)
    shrinking: dict[str, Any] = field(default_factory=dict)
    # replicas this primary is asking the coordinator to put back in sync: their
    # acks count (a write waits for them) from before the request goes out
    joining: dict[str, Any] = field(default_factory=dict)
    follower: Any = None
    # a primary of a replicated shard serves only until then (monotonic); see LeaseGrant
    lease_until: float = 0.0
    # False while a replica recreated empty (or copied again) has not caught up with its
    # primary: not in sync, never promoted (an INCOMPLETE file in the shard dir says so)
    complete: bool = True
    # (map epoch, monotonic time, the shard's primary then) when this copy last told a
    # failover its position (`shard.position`, or a hand-off's freeze): it keeps itself
    # whole until a newer map names another primary (rejoin.may_recopy)
    position_told: tuple[int, float, str | None] | None = None
    # the counts of the last heartbeat that could read them (a store being closed cannot)
    last_stats: ShardStats | None = None
    # KV operations this copy served lately, all and writes (heartbeat ops_rate / write_rate)
    ops: RateMeter = field(default_factory=RateMeter)
    writes: RateMeter = field(default_factory=RateMeter)
    metered_leading: bool = False

    def __post_init__(self) -> None:
        self.idle.set()

    def meters(self) -> tuple[RateMeter, RateMeter]:
        """The rate meters (all ops, writes), started over whenever this copy starts or
        stops leading: after a hand-off the old primary's past traffic must not be
        counted on top of the new primary's (torua.coordinator.load_moves sums copies)."""
        leading = self.role in ("primary", "frozen")
        if leading != self.metered_leading:
            self.metered_leading = leading
            self.ops, self.writes = RateMeter(), RateMeter()
        return self.ops, self.writes


class Node:
    def __init__(
        self, config: NodeConfig, connect: Callable[..., Awaitable[Any]] = connect, engines: Sequence[EngineFactory] = ()
    ) -> None:
        self.config = config
        self._connect = connect  # torua.bus.connect; the in-memory harness passes its own
        self.nc: NATS | None = None
        self.holdings: dict[int, Holding] = {}
        self.epoch = 0
        self.num_shards = 0  # the cluster's, from the coordinator's assignments; 0 until told
        self.term = 0  # the highest coordinator term seen; lower ones are refused
        self.started_at = time.time()
        # every shard copy opened with the key-value engine, the graph's rows and index, and `engines` (torua.storage.engine)
        graph = (GraphRows, GraphIndex.factory(IndexRows(), limits_from_config(config)))
        self.files = ShardFiles(config.data_dir / "shards", durable=config.commit == "durable", engines=(*graph, *engines))
        self.tasks = Tasks()
        self._heartbeat_now = asyncio.Event()
        self._refused: tuple[str, float] = ("", -math.inf)  # last refusal of a heartbeat logged, and when
        self._subs: list[Any] = []
        self.replication = Replication(self, self.files, self.tasks)
        self.control = ShardControl(self, self.files, self.tasks)
        self._lease_seconds = 0.0
        self._beat_seq = 0  # heartbeats sent by this process (Heartbeat.seq)
        self._grant_seq = 0  # the newest heartbeat whose LeaseGrant was taken: older ones are dropped
        self._assigned = asyncio.Event()
        self.settings_revision = 0  # of the cluster settings in force here; 0 = the flags (torua.node.broadcast)
        self.kv_served: collections.Counter[tuple[str, str]] = collections.Counter()  # (op, ok | error code), for /metrics
        self._dir_lock: dir_lock.DirLock | None = None  # this process's hold on config.data_dir
        self.graph = GraphService(self)  # torua.node.<id>.graph
        self.keys: KeyRing | None = None  # API keys for torua.Client's one-hop requests; None: --insecure

    # ----------------------------------------------------------- lifecycle

    @property
    def shards_dir(self) -> Path:
        return self.files.root

    def shard_dir(self, shard_id: int) -> Path:
        return self.files.directory(shard_id)

    def _claim_data_dir(self) -> None:
        """A data dir serves one process (torua.dir_lock, held until this one ends:
        `DirTaken` if another runs on it) and belongs to one node id: refuse to
        serve another node's shards. Checked before anything is written."""
        if self._dir_lock is None:
            self._dir_lock = dir_lock.claim(self.config.data_dir, f"torua node --id {self.config.id}")
        marker = self.config.data_dir / "node.json"
        if marker.exists():
            try:
                owner = json.loads(marker.read_text()).get("node_id")
            except (ValueError, AttributeError) as exc:
                self.release_data_dir()
                raise SystemExit(f"torua node: {marker} is unreadable ({exc}); it should say which node owns {self.config.data_dir}, e.g. {{\"node_id\": \"{self.config.id}\"}}") from None
            if owner != self.config.id:
                self.release_data_dir()
                raise SystemExit(f"torua node: {self.config.data_dir} belongs to node {owner!r}, not {self.config.id!r}")
        else:
            marker.write_text(json.dumps({"node_id": self.config.id}))
        self.shards_dir.mkdir(parents=True, exist_ok=True)

    def release_data_dir(self) -> None:
        """Let another process take the data dir (stop does it; the kernel does it when
        the process dies; the in-memory harness calls it for a simulated crash)."""
        if self._dir_lock is not None:
            self._dir_lock.release()
            self._dir_lock = None

    async def start(self) -> None:
        self._claim_data_dir()
        self.nc = await self._connect(self.config.nats_url, f"torua-node-{self.config.id}", self.config.connect_timeout, auth=self.config.nats_auth())
        if problem := payload_room(self.config.max_value_bytes, getattr(self.nc, "max_payload", 0)):
            log.warning("values up to --max-value-bytes cannot reach this node: %s", problem)
        node = self.config.id
        if not self.config.insecure:
            self.keys = KeyRing(self.nc)
            await self.keys.start()
        handlers: dict[str, Callable[[Any], Awaitable[None]]] = {
            "kv": self._on_kv,
            "graph": self.graph.on_message,
            # torua.Client's one-hop requests: each with its API key (torua.access.APP_OPERATIONS)
            "app.kv": functools.partial(self._on_kv, app=True),
            "app.graph": functools.partial(self.graph.on_message, app=True),
            "assign": self._control(Assignment, self.control.assign),
            "shard.copy": self._control(ShardCommand, self.control.copy),
            "shard.catch_up": self._control(ShardCommand, self.control.catch_up),
            "shard.freeze": self._control(ShardCommand, self.control.freeze),
            "shard.unfreeze": self._control(ShardCommand, self.control.unfreeze),
            "shard.drop": self._control(ShardCommand, self.control.drop),
            "shard.position": self._control(ShardCommand, self.control.position),
            "shard.snapshot": self._guarded(self.control.on_snapshot),
            "shard.log": self._guarded(self.control.on_log),
        }
        for call, handler in handlers.items():
            self._subs.append(await self.nc.subscribe(subjects.node(node, call), cb=handler))
        self._subs.append(await self.nc.subscribe(subjects.BROADCAST, cb=self._guarded(self._on_broadcast)))
        self.tasks.spawn(self._heartbeat_loop())
        self.tasks.spawn(self._log_retention_loop())
        await self.graph.edges.start(self.nc)  # finds other shards' primaries; repairs edges across shards
        log.info("node %s serving on %s, data in %s (%s)", node, self.config.nats_url, self.config.data_dir, arenas_in_use())

    async def run(self, stop: StopRequest) -> None:
        """Serve until `stop` (SIGINT/SIGTERM, installed by the caller before anything
        else), then stop; a stop while the first NATS connection is still retried
        ends the wait at once."""
        try:
            await unless_stopped(self.start(), stop.event)
        except Stopped:
            log.info("node %s stopping before it served", self.config.id)
        else:
            await stop.wait()
        await self.stop()

    async def hand_off(self) -> None:
        """Before a planned stop: have the coordinator promote in-sync replicas for this
        node's replicated primaries, and wait (bounded) until none is left here, so
        the stop fails no request."""
        if not self._replicated_primaries() or self.nc is None or not self.nc.is_connected:
            return
        try:
            msg = await self.nc.request(subjects.coordinator("node"), encode(NodeRequest(self.config.id, "handoff")), timeout=2.0)
            ack = decode(Ack, msg.data)
        except Exception as exc:
            log.warning("hand-off not possible (%s); stopping anyway", exc)
            return
        if not ack.ok:
            log.warning("hand-off refused: %s %s", ack.error_code, ack.error_message)
            return
        deadline = time.monotonic() + self.config.shutdown_timeout
        while self._replicated_primaries() and time.monotonic() < deadline:
            changed = self._assigned
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        left = self._replicated_primaries()
        log.info("hand-off %s", f"incomplete: still primary of {left}" if left else "done")

    def _replicated_primaries(self) -> list[int]:
        return [h.shard_id for h in self.holdings.values() if h.role in ("primary", "frozen") and h.replicas]

    async def stop(self) -> None:
        """Hand primaries over, take no new requests, let the ones in flight finish, then
        close. Every step is bounded (torua.stopping.bounded), so a dead or paused NATS
        never holds the stop up."""
        log.info("node %s stopping", self.config.id)
        await bounded(self.hand_off(), self.config.shutdown_timeout + 3, "handing primaries over")
        self.tasks.stopping.set()
        self._heartbeat_now.set()  # wake the heartbeat loop so it ends now
        await bounded(self._unsubscribe(), 2, "unsubscribing")
        await bounded(self.graph.edges.stop(), 2, "stopping the graph's map cache")
        if self.keys is not None:
            await self.keys.stop()
        in_flight = [t for t in self.tasks if not t.done()]
        if in_flight:
            await asyncio.wait(in_flight, timeout=5)
        for task in self.tasks:
            task.cancel()
        if len(self.tasks):
            await bounded(asyncio.gather(*self.tasks, return_exceptions=True), 2, "cancelling the node's tasks")
        if self.nc is not None:
            await close_connection(self.nc)
        closed = True
        for holding in self.holdings.values():
            if holding.store is not None:
                closed &= await bounded(holding.store.close(), 10, f"closing shard {holding.shard_id}")
        if closed:  # else a store may still write: the directory stays held until the process ends
            self.release_data_dir()
        log.info("node %s stopped", self.config.id)

    async def _unsubscribe(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # connection already gone
                pass

    # ----------------------------------------------------------- heartbeat

    def heartbeat(self) -> Heartbeat:
        """The next heartbeat (numbered), with what each copy is and the lease it has left."""
        reports = []
        now = time.monotonic()
        for h in sorted(self.holdings.values(), key=lambda h: h.shard_id):
            if h.store is None:
                continue
            try:
                stats = h.store.stats()
                h.last_stats = stats
            except ShardClosed:
                # closing under a re-copy, a hand-off or a drop right now: the copy is still
                # this node's in that role (a beat without it would count it missing, and a
                # lost beat would let the leases lapse); its last counts stand in
                stats = h.last_stats or ShardStats(shard_id=h.shard_id, keys=0, bytes=0, last_seq=0)
            ops, writes = h.meters()
            lease_left = max(0.0, h.lease_until - now) if h.role in ("primary", "frozen") else 0.0
            reports.append(
                ShardReport(
                    h.shard_id, h.role, stats.last_seq, stats.keys, stats.bytes, round(ops.rate(now), 3), round(writes.rate(now), 3),
                    lease_left=lease_left, complete=h.complete,
                )
            )
        self._beat_seq += 1
        return Heartbeat(
            node_id=self.config.id,
            version=__version__,
            epoch=self.epoch,
            started_at=self.started_at,
            sent_at=time.time(),
            max_shards=self.config.max_shards or None,
            host=socket.gethostname(),
            pid=os.getpid(),
            shards=reports,
            settings_revision=self.settings_revision,
            seq=self._beat_seq,
            grant_seq=self._grant_seq,
            data_dir=str(self.config.data_dir.absolute()),
            **self._disk_usage(),
        )

    def _disk_usage(self) -> dict[str, int]:
        """The data dir's filesystem, for the coordinator's disk watermarks (0s if unknown)."""
        try:
            usage = psutil.disk_usage(str(self.config.data_dir))
        except OSError:
            return {}
        return {"disk_total": usage.total, "disk_used": usage.used, "disk_free": usage.free}

    async def _heartbeat_loop(self) -> None:
        assert self.nc is not None
        while not self.tasks.stopping.is_set():
            self.tasks.spawn(self._beat())
            self._heartbeat_now.clear()
            try:
                await asyncio.wait_for(self._heartbeat_now.wait(), self.config.heartbeat_interval)
            except asyncio.TimeoutError:
                pass

    async def _beat(self) -> None:
        """One heartbeat; its reply renews the leases of this node's primaries."""
        assert self.nc is not None
        sent_at = time.monotonic()
        beat = self.heartbeat()
        try:
            wait = max(0.5, 2 * self.config.heartbeat_interval)
            try:
                msg = await self.nc.request(subjects.heartbeat(self.config.id), encode(beat), timeout=wait)
            except NoRespondersError:  # a leader of an older release listens on the shared subject only
                msg = await self.nc.request(subjects.HEARTBEAT, encode(beat), timeout=wait)
            grant = decode(LeaseGrant, msg.data)
        except Refused as exc:
            # e.g. an incompatible protocol version: say so (not every beat), renew
            # no lease, and keep asking: once the coordinators are upgraded they
            # take this node without a restart.
            now = time.monotonic()
            last_message, last_logged = self._refused
            if exc.message != last_message or now - last_logged >= 30:
                log.warning("%s refuses this node: %s", exc.by or "the coordinator", exc.message)
                self._refused = (exc.message, now)
            return
        except NoRespondersError:
            # No coordinator runs at all, so nobody can fail this node over: keep serving.
            if beat.seq > self._grant_seq:
                self._grant_seq = beat.seq
                self._renew(sent_at, self._lease_seconds, None)
            return
        except Exception as exc:  # timeout, disconnected, garbage: no renewal this time
            log.debug("heartbeat not answered: %s", exc)
            return
        if not self.follow_term(grant.term):
            log.warning("ignoring a lease grant of coordinator term %d (newest seen %d)", grant.term, self.term)
            return
        if beat.seq <= self._grant_seq:
            return  # the reply to an older heartbeat, overtaken: the newest grant wins
        self._grant_seq = beat.seq
        self._lease_seconds = grant.lease_seconds
        self._renew(sent_at, grant.lease_seconds, dict(grant.shards))
        if grant.settings is not None:  # this node missed a settings change, or started after it
            try:
                apply_settings(self, grant.settings)
            except ToruaError as exc:
                log.warning("settings in the lease grant refused: %s", exc.message)

    def _renew(self, sent_at: float, seconds: float, granted: dict[int, int] | None) -> None:
        """Set the leases `granted` names (all of them when no coordinator exists) from the
        newest grant taken; a shorter grant shortens them (torua.replication.lease)."""
        primaries = {h.shard_id: h for h in self.holdings.values() if h.role in ("primary", "frozen")}
        own = {s: h.shard_epoch for s, h in primaries.items()}
        current = {s: h.lease_until for s, h in primaries.items()}
        for shard_id, until in renewed(current, sent_at, own if granted is None else granted, own, seconds).items():
            primaries[shard_id].lease_until = until

    # ------------------------------------------------------- log retention

    async def _log_retention_loop(self) -> None:
        """Keep each shard's log to about `log_retain_ops` so the disk stays bounded."""
        while not self.tasks.stopping.is_set():
            try:
                await self.trim_logs()
            except Exception:
                log.exception("log retention failed; trying again later")
            try:
                await asyncio.wait_for(self.tasks.stopping.wait(), max(1.0, self.config.heartbeat_interval * 10))
            except asyncio.TimeoutError:
                pass

    async def trim_logs(self) -> None:
        retain = self.config.log_retain_ops
        now = time.monotonic()
        for holding in list(self.holdings.values()):
            store = holding.store
            if store is None or store.closed or holding.role not in ("primary", "frozen") or now < holding.copy_source_until:
                continue
            # Trim only once the log is twice the limit, so each trim removes a batch.
            if store.last_seq() - store.base_seq() > 2 * retain:
                await store.truncate_log(store.last_seq() - retain)

    # ------------------------------------------------------------ KV serving

    async def admit_app(self, kind: str, op: str, values: dict[str, Any], token: str, msg: Any) -> None:
        """A one-hop request of torua.Client may go on: its API key (the request's
        `api_key`) is valid and reaches what it asks (`torua.access.admit_app`)."""
        key = await self.keys.authenticate(token) if self.keys is not None and token else None
        admit_app(kind, op, key, values, keys_on=self.keys is not None)
        check_size(key, len(msg.data))

    async def _on_kv(self, msg, app: bool = False) -> None:
        """Reads answer inline (one SQLite point read); writes run as tasks so they group-commit.
        With `app`, torua.Client's request: its API key is checked first."""
        try:
            request = decode(KvRequest, msg.data)
            if app:
                await self.admit_app("kv", request.op, {"key": request.key, "prefix": request.prefix}, request.api_key, msg)
        except ToruaError as exc:
            (log.info if exc.code in ("unauthorized", "forbidden") else log.warning)("refused KV request on %s: %s", msg.subject, exc.message)
            await reply(msg, KvReply(ok=False, epoch=self.epoch, error_code=exc.code, error_message=exc.message))
            return
        except Exception:
            log.exception("unreadable KV request on %s", msg.subject)
            return
        if request.op in ("put", "delete"):
            self.tasks.spawn(self._answer_kv(msg, request))
        else:
            await self._answer_kv(msg, request)

    async def _answer_kv(self, msg, request: KvRequest) -> None:
        try:
            answer = await self.kv(request)
        except ToruaError as exc:
            answer = KvReply(ok=False, epoch=self.epoch, error_code=exc.code, error_message=exc.message)
        except ShardClosed as exc:  # the copy was closed under the request: ask the map again
            answer = KvReply(ok=False, epoch=self.epoch, error_code="moved", error_message=f"node {self.config.id} no longer serves shard {request.shard_id} ({exc})")
        except Exception as exc:
            log.exception("KV %s on shard %s failed", request.op, request.shard_id)
            answer = KvReply(ok=False, epoch=self.epoch, error_code="internal", error_message=str(exc))
        op = request.op if request.op in ("get", "put", "delete", "list") else "other"
        self.kv_served[(op, "ok" if answer.ok else answer.error_code or "internal")] += 1
        await reply(msg, answer)

    async def kv(self, request: KvRequest) -> KvReply:
        # The request is held to the rules the gateway and the client apply (and to the
        # cluster's shard count) before anything else: refused wherever it lands.
        op = operation_for(request, self.num_shards, self.config.max_value_bytes)
        if op is not None:
            seq = await self.write(request.shard_id, [op], request.op)
            return KvReply(ok=True, epoch=self.epoch, seq=seq)
        store = self.admit(request.shard_id, request.op, writes=False, eventual=request.eventual)
        if request.op == "get":
            found = store.get(request.key)
            if found is None:
                return KvReply(ok=True, epoch=self.epoch, found=False)
            return KvReply(ok=True, epoch=self.epoch, found=True, value=found[0], content_type=servable_content_type(found[1]))
        keys = store.list_keys(request.prefix, request.after, min(request.limit, MAX_LIST_LIMIT))
        return KvReply(ok=True, epoch=self.epoch, keys=keys)

    # ------------------------------------------------- every kind of request

    def admit(self, shard_id: int, what: str, writes: bool, eventual: bool = False, meter: bool = True) -> ShardStore:
        """The fence every request to a shard copy passes (`torua.replication.fencing.may_serve`:
        `moved` or `stale_epoch` as a `ToruaError`, `what` naming the request in the
        message), counted in the copy's rate meters (unless `meter` is False: a write
        checked before `write`, which counts it); the copy's store to serve it from.
        A read with `eventual` may be served by an in-sync replica."""
        holding = self.holdings.get(shard_id)
        state = None
        # a store being closed (a re-copy, a hand-off, a drop) serves nothing: `moved`
        if holding is not None and holding.store is not None and not holding.store.closed and holding.role != "absent":
            # A shard without replicas cannot fail over, so its primary needs no lease.
            lease = holding.lease_until if holding.replicas else math.inf
            state = CopyState(holding.role, holding.shard_epoch, lease)
        verdict = may_serve(state, "put" if writes else "get", 0, time.monotonic(), allow_replica_reads=eventual)
        if verdict == "moved":
            role = holding.role if holding else "absent"
            raise ToruaError("moved", f"node {self.config.id} does not serve {what} on shard {shard_id} ({role})")
        if verdict == "stale_epoch":
            # A replicated shard's primary without a lease may have been replaced: stay silent.
            raise ToruaError("stale_epoch", f"node {self.config.id} holds no lease for shard {shard_id} right now")
        assert holding is not None and holding.store is not None
        if not meter:
            return holding.store
        now = time.monotonic()
        ops, writes_meter = holding.meters()
        ops.record(now)
        if writes:
            writes_meter.record(now)
        return holding.store

    async def write(self, shard_id: int, operations: Sequence[Operation], what: str) -> int:
        """The write path every kind of request shares: fence and meter (`admit`), log and
        apply `operations` in order (one seq each, in one transaction), wake the
        replicas' fetches, and return the last seq once every in-sync replica has it.
        A frozen copy (a move's last step) waits for the writes in flight here."""
        if not operations:
            raise ValueError("a write needs at least one operation")
        store = self.admit(shard_id, what, writes=True)
        holding = self.holdings[shard_id]
        holding.inflight += 1
        holding.idle.clear()
        try:
            if len(operations) == 1:
                seq = await store.apply(operations[0])
            else:
                seq = (await store.apply_all(operations))[-1]
            notify(holding, "new_data")
            if len(holding.in_sync) > 1 or holding.joining:
                await self.replication.wait_for_replicas(holding, seq)
        finally:
            holding.inflight -= 1
            if holding.inflight == 0:
                holding.idle.set()
        return seq

    # ------------------------------------------------------- control plane

    def _guarded(self, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """Garbage on any subject is logged; the node keeps serving."""

        async def run(msg) -> None:
            try:
                await handler(msg)
            except ToruaError as exc:
                log.warning("bad message on %s: %s", msg.subject, exc.message)
            except Exception:
                log.exception("failed to handle message on %s", msg.subject)

        return run

    def _control(self, kind: type, handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[None]]:
        """Decode a control message, run the handler as its own task, reply with its result."""

        async def run(msg) -> None:
            raw: Any = None
            try:
                raw = unpack(msg.data)
                command = from_dict(kind, raw)
            except ToruaError as exc:
                if exc.code == "unsupported_version":
                    # Refused in a shape every protocol version reads, so an
                    # incompatible coordinator learns why.
                    version = raw.get("v") if isinstance(raw, dict) else None
                    reason = refusal_reason(version, f"node {self.config.id}", "the coordinator")
                    log.warning("refused %s: %s", msg.subject, reason)
                    if msg.reply:
                        await msg.respond(encode_refusal(exc.code, reason, by=f"node {self.config.id}"))
                    return
                log.warning("bad control message on %s: %s", msg.subject, exc.message)
                shard_id = -1
                await reply(msg, ShardCommandReply(False, shard_id, error_code=exc.code, error_message=exc.message))
                return
            if not self.follow_term(command.term):
                message = f"coordinator term {command.term} is older than {self.term}: a newer leader speaks for the cluster"
                log.warning("refused %s: %s", msg.subject, message)
                await reply(msg, ShardCommandReply(False, getattr(command, "shard_id", -1), error_code="stale_epoch", error_message=message))
                return

            async def answer() -> None:
                try:
                    result = await handler(command)
                except ToruaError as exc:
                    result = ShardCommandReply(False, getattr(command, "shard_id", -1), error_code=exc.code, error_message=exc.message)
                except IllegalTransition as exc:
                    result = ShardCommandReply(False, getattr(command, "shard_id", -1), error_code="conflict", error_message=str(exc))
                except Exception as exc:
                    log.exception("control %s failed", msg.subject)
                    result = ShardCommandReply(False, getattr(command, "shard_id", -1), error_code="internal", error_message=str(exc))
                await reply(msg, result)

            self.tasks.spawn(answer())

        return run

    def follow_term(self, term: int) -> bool:
        """Take a coordinator message of `term` into account? (torua.leadership.accept_term)"""
        if not accept_term(self.term, term):
            return False
        self.term = term
        return True

    def heartbeat_soon(self) -> None:
        """Send the next heartbeat now rather than at the end of the interval."""
        self._heartbeat_now.set()

    def assignment_taken(self) -> None:
        """An assignment changed what this node serves: wake a hand-off waiting for it,
        and tell the coordinator at once."""
        notify(self, "_assigned")
        self.heartbeat_soon()
        self.graph.edges.kick()  # a copy this node now leads: repair its edges at once

    def holding(self, shard_id: int) -> Holding:
        """This node's record of its copy of `shard_id` (an `absent` one if it has none yet)."""
        holding = self.holdings.get(shard_id)
        if holding is None:
            holding = Holding(shard_id, "absent", None)
            self.holdings[shard_id] = holding
        return holding

    async def _on_broadcast(self, msg) -> None:
        await on_broadcast(self, msg)  # ping, config; anything else gets a clear error

    def snapshot(self) -> NodeSnapshot:
        """What this node holds now, as plain data (its /metrics: torua.node.metrics)."""
        copies = []
        for h in list(self.holdings.values()):
            if h.store is None or h.role == "absent":
                continue
            try:
                stats = h.store.stats()
            except Exception:  # closing under a move or drop right now: measured next time
                copies.append(CopySnapshot(h.shard_id, h.role))
                continue
            copies.append(CopySnapshot(h.shard_id, h.role, True, stats.keys, stats.bytes, stats.last_seq, tuple(h.replicas), dict(h.acked)))
        return NodeSnapshot(self.config.id, self.epoch, copies, dict(self.kv_served), dict(self.graph.served))


async def run_node(config: NodeConfig, stop: StopRequest) -> None:
    """`torua node`: claim the data dir (refused with `DirTaken` if another process
    holds it, before anything is written or bound), then serve until `stop`."""
    single_threaded_blas()
    keep_pandas_out()
    node = Node(config)
    node._claim_data_dir()  # held until the process ends, whatever ends it
    async with metrics_server(registry_of(LiveCollector(lambda: node_families(node.snapshot()))), config.metrics_host, config.metrics_port):
        await node.run(stop)
