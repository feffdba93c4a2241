"""The node's control plane: what the coordinator tells it (assignments, move
steps) and what other nodes pull from it (snapshots and logs of its copies).

Every handler changes a copy's role only through `torua.node.roles.next_role`,
so an illegal step (say, dropping a serving primary) is refused and changes
nothing. It works on the node's public state (its config, holdings, epoch and
shard count), opens and removes copies through the node's `ShardFiles`, and runs
long answers as the node's `Tasks`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from torua.kv_rules import validate_shard
from torua.node.command_checks import assignment_refusal, destructive_refusal
from torua.node import copy as shard_copy
from torua.node.replies import reply
from torua.node.replication import is_incomplete, notify, set_incomplete, write_synced_epoch
from torua.node.roles import next_role, serves_copy_source
from torua.node.shard_files import ShardFiles
from torua.node.tasks import Tasks
from torua.protocol import subjects
from torua.protocol.codec import decode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import (
    Assignment,
    AssignmentAck,
    LogChunk,
    LogRequest,
    ShardCommand,
    ShardCommandReply,
    ShardMap,
    SnapshotChunk,
    SnapshotRequest,
)
from torua.storage.shard_store import LogTruncated, ShardStore

if TYPE_CHECKING:
    from torua.node.service import Node

log = logging.getLogger("torua.node")

FROZEN_MARKER = "FROZEN"


class ShardControl:
    def __init__(self, node: "Node", files: ShardFiles, tasks: Tasks) -> None:
        self.node = node
        self.files = files
        self.tasks = tasks
        self._cluster_kv = None  # the torua_cluster bucket, once opened

    async def stored_map(self) -> ShardMap | None:
        """The shard map the coordinator stored (None: none yet), read now."""
        try:
            if self._cluster_kv is None:
                self._cluster_kv = await self.node.nc.jetstream().key_value(subjects.CLUSTER_BUCKET)
            entry = await self._cluster_kv.get(subjects.MAP_KEY)
        except (BucketNotFoundError, KeyNotFoundError):
            return None
        except Exception as exc:  # JetStream without a majority, NATS reconnecting, ...
            raise ToruaError("unavailable", f"cannot read the stored shard map to check the command: {exc}") from None
        return decode(ShardMap, entry.value) if entry.value else None

    async def check_destructive(self, call: str, command: ShardCommand) -> None:
        """Refuse (`conflict`, logged) a drop or freeze the stored map does not call for."""
        refusal = destructive_refusal(call, self.node.config.id, command.shard_id, await self.stored_map())
        if refusal is not None:
            log.warning("refused %s of shard %d: %s", call, command.shard_id, refusal, extra={"shard": command.shard_id})
            raise ToruaError("conflict", f"{call} of shard {command.shard_id} on {self.node.config.id}: {refusal}")

    def set_frozen_marker(self, shard_id: int, frozen: bool) -> None:
        marker = self.files.directory(shard_id) / FROZEN_MARKER
        if frozen:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def shard(self, shard_id: int) -> int:
        """`unknown_shard` for a shard the cluster does not have (once this node knows how many it has)."""
        return validate_shard(shard_id, self.node.num_shards)

    async def assign(self, assignment: Assignment) -> AssignmentAck:
        if assignment.node_id != self.node.config.id:
            raise ToruaError("bad_request", f"assignment for {assignment.node_id} sent to {self.node.config.id}")
        if assignment.epoch < self.node.epoch:
            raise ToruaError("stale_epoch", f"assignment at epoch {assignment.epoch} is older than {self.node.epoch}")
        num_shards = assignment.num_shards or self.node.num_shards  # 0: an older coordinator did not say
        for item in assignment.shards:
            validate_shard(item.shard_id, num_shards)
        refusal = assignment_refusal(assignment, await self.stored_map())
        if refusal is not None:
            code, why = refusal
            log.warning("refused the assignment at epoch %d: %s", assignment.epoch, why, extra={"epoch": assignment.epoch})
            raise ToruaError(code, f"assignment for {self.node.config.id}: {why}")
        self.node.num_shards = num_shards
        self.node.epoch = assignment.epoch
        wanted = {a.shard_id: a for a in assignment.shards}
        serving: list[int] = []
        missing: list[int] = []
        for shard_id, item in sorted(wanted.items()):
            holding = self.node.holding(shard_id)
            async with holding.lock:
                replica = item.role == "replica"
                serving_before = holding.role in ("primary", "frozen")
                if holding.role == "absent":
                    directory = self.files.directory(shard_id)
                    on_disk = self.files.exists(shard_id)
                    # A replica can always be refilled from its primary; a primary's data exists only where it is.
                    if not on_disk and not item.create and not replica:
                        missing.append(shard_id)
                        continue
                    if not on_disk and not item.create:
                        # its data is gone: an empty copy, not in sync until it has caught up
                        log.warning("shard %d: replica copy not on disk; recreating it empty to refill from %s", shard_id, item.primary, extra={"shard": shard_id})
                        set_incomplete(holding, directory)
                    else:
                        holding.complete = not is_incomplete(directory)
                    holding.store = self.files.open(shard_id, create=not on_disk)
                    frozen = (directory / FROZEN_MARKER).exists()
                    if replica:
                        holding.role = next_role("absent", "open_replica")
                    else:
                        holding.role = "frozen" if frozen else next_role("absent", "open")
                elif replica:
                    holding.role = next_role(holding.role, "assign_replica")
                elif holding.role in ("copying", "retired", "replica"):
                    holding.role = next_role(holding.role, "assign")
                moved_on = holding.shard_epoch != item.shard_epoch or not serving_before
                if holding.shard_epoch != item.shard_epoch:
                    holding.lease_until = 0.0  # a lease belongs to one primary incarnation
                holding.shard_epoch = item.shard_epoch
                if not replica and moved_on:
                    # A primary's copy is the shard's history at its shard epoch. Recorded as a
                    # replica's is once it caught up (`read_synced_epoch`), so that when a
                    # hand-off or a failover makes it a replica, its primary judges it from
                    # this epoch: it catches up unless it holds a tail past the promotion
                    # (torua.replication.rejoin). Unrecorded, it claimed the epoch it last
                    # followed at (0 for a copy that always led) and was copied again whole
                    # after every planned hand-off past an older promotion.
                    write_synced_epoch(self.files.directory(shard_id), item.shard_epoch)
                holding.primary = item.primary
                holding.in_sync = list(item.in_sync) or [self.node.config.id]
                holding.replicas = list(item.replicas)
                holding.promotions = list(item.promotions)
                notify(holding, "acks_changed")
                if replica:
                    self.node.replication.ensure_follower(holding)
                serving.append(shard_id)
        for shard_id, holding in self.node.holdings.items():
            # A copy the map no longer gives this node retires: its follower stops (a replica
            # left following would re-copy forever once its primary's shard epoch moved on)
            # and the coordinator drops it once the shard is served elsewhere.
            if shard_id not in wanted and holding.role in ("primary", "frozen", "replica"):
                holding.role = next_role(holding.role, "unassign")
        log.info("epoch %d: serving %s%s", self.node.epoch, serving, f", missing {missing}" if missing else "", extra={"epoch": self.node.epoch})
        self.node.assignment_taken()
        return AssignmentAck(node_id=self.node.config.id, epoch=self.node.epoch, serving=serving, missing=missing)

    async def copy(self, command: ShardCommand) -> ShardCommandReply:
        if not command.source:
            raise ToruaError("bad_request", "copy needs a source node")
        self.shard(command.shard_id)
        holding = self.node.holding(command.shard_id)
        async with holding.lock:
            holding.role = next_role(holding.role, "copy")
            if holding.store is not None:
                await holding.store.close()
            self.files.destroy(command.shard_id)
            holding.store = self.files.open(command.shard_id, create=True)
            deadline = time.monotonic() + self.command_budget()
            await shard_copy.copy_snapshot(self.node.nc, command.source, holding.store, deadline)
            last = await shard_copy.catch_up(self.node.nc, command.source, holding.store, deadline)
        log.info("shard %d copied from %s up to seq %d", command.shard_id, command.source, last, extra={"shard": command.shard_id, "epoch": command.epoch})
        return ShardCommandReply(True, command.shard_id, last_seq=last)

    async def catch_up(self, command: ShardCommand) -> ShardCommandReply:
        self.shard(command.shard_id)
        holding = self.node.holdings.get(command.shard_id)
        if holding is None or holding.role != "copying" or holding.store is None or not command.source:
            raise ToruaError("conflict", f"shard {command.shard_id} is not being copied here")
        async with holding.lock:
            deadline = time.monotonic() + self.command_budget()
            last = await shard_copy.catch_up(self.node.nc, command.source, holding.store, deadline, command.until_seq)
        return ShardCommandReply(True, command.shard_id, last_seq=last)

    async def freeze(self, command: ShardCommand) -> ShardCommandReply:
        """Stop taking writes, wait for the ones in flight, report the last seq."""
        self.shard(command.shard_id)
        holding = self.node.holdings.get(command.shard_id)
        if holding is None or holding.store is None:
            raise ToruaError("moved", f"shard {command.shard_id} is not here")
        await self.check_destructive("shard.freeze", command)
        holding.role = next_role(holding.role, "freeze")
        self.set_frozen_marker(command.shard_id, True)
        await holding.idle.wait()
        holding.position_told = (self.node.epoch, time.monotonic(), holding.primary)
        return ShardCommandReply(True, command.shard_id, last_seq=holding.store.last_seq())

    async def unfreeze(self, command: ShardCommand) -> ShardCommandReply:
        self.shard(command.shard_id)
        holding = self.node.holdings.get(command.shard_id)
        if holding is None or holding.store is None:
            raise ToruaError("moved", f"shard {command.shard_id} is not here")
        if holding.role == "frozen":
            holding.role = next_role(holding.role, "unfreeze")
        self.set_frozen_marker(command.shard_id, False)
        return ShardCommandReply(True, command.shard_id, last_seq=holding.store.last_seq())

    async def drop(self, command: ShardCommand) -> ShardCommandReply:
        self.shard(command.shard_id)
        await self.check_destructive("shard.drop", command)
        holding = self.node.holding(command.shard_id)
        async with holding.lock:
            holding.role = next_role(holding.role, "drop")
            if holding.store is not None:
                await holding.store.close()
                holding.store = None
            self.files.destroy(command.shard_id)
            del self.node.holdings[command.shard_id]
        log.info("shard %d dropped", command.shard_id, extra={"shard": command.shard_id, "epoch": command.epoch})
        return ShardCommandReply(True, command.shard_id)

    async def position(self, command: ShardCommand) -> ShardCommandReply:
        """How far this copy is (a failover asks the in-sync replicas). A replica
        still refilling after it was recreated empty refuses: it must never be promoted."""
        self.shard(command.shard_id)
        holding = self.node.holdings.get(command.shard_id)
        if holding is None or holding.store is None:
            raise ToruaError("moved", f"shard {command.shard_id} is not here")
        if not holding.complete:
            raise ToruaError("conflict", f"the copy of shard {command.shard_id} on {self.node.config.id} is refilling from its primary and may miss writes")
        # a failover may promote it on what it says: it keeps itself whole (no re-copy)
        # until a map names the failover's outcome (rejoin.may_recopy)
        holding.position_told = (self.node.epoch, time.monotonic(), holding.primary)
        return ShardCommandReply(True, command.shard_id, last_seq=holding.store.last_seq())

    def command_budget(self) -> float:
        """Seconds one copy or catch-up step may take here (--copy-timeout)."""
        return self.node.config.copy_timeout

    # ------------------------------------------------- serving copies to others

    def source_store(self, shard_id: int) -> ShardStore:
        holding = self.node.holdings.get(self.shard(shard_id))
        if holding is None or holding.store is None or not serves_copy_source(holding.role):
            raise ToruaError("moved", f"shard {shard_id} has no readable copy on {self.node.config.id}")
        # log retention keeps this copy's log whole meanwhile (--copy-source-hold)
        holding.copy_source_until = time.monotonic() + self.node.config.copy_source_hold
        return holding.store

    async def on_snapshot(self, msg) -> None:
        request = decode(SnapshotRequest, msg.data)
        try:
            store = self.source_store(request.shard_id)
            answer = shard_copy.answer_snapshot(store, request, self.node.config.id)
        except ToruaError as exc:
            answer = SnapshotChunk(request.shard_id, 0, error_code=exc.code, error_message=exc.message)
        await reply(msg, answer)

    async def on_log(self, msg) -> None:
        request = decode(LogRequest, msg.data)
        try:
            self.shard(request.shard_id)
        except ToruaError as exc:
            await reply(msg, LogChunk(request.shard_id, 0, error_code=exc.code, error_message=exc.message))
            return
        if request.replica:  # a replica's long-poll: may wait, so it must not hold up this subscription
            self.tasks.spawn(self.node.replication.serve_fetch(msg, request))
            return
        try:
            store = self.source_store(request.shard_id)
            last_seq = store.last_seq()
            ops = store.read_log_encoded(request.after_seq, max(1, request.max_ops), max(1, request.max_bytes))
            answer = LogChunk(request.shard_id, last_seq, ops)
        except LogTruncated as exc:
            answer = LogChunk(request.shard_id, 0, error_code="conflict", error_message=str(exc))
        except ToruaError as exc:
            answer = LogChunk(request.shard_id, 0, error_code=exc.code, error_message=exc.message)
        await reply(msg, answer)
