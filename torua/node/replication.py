"""Replication on a node: replicas follow their primary's log; the primary
acknowledges a write only when every in-sync replica has it.

A replica runs one *follower* task per shard: it long-polls the primary's
`shard.log` with the seq it has applied (which acknowledges everything up to
it), applies what comes back, and asks again. The primary answers at once when
there are new ops, or after `wait` seconds. A replica whose log does not fit
the primary's (it holds ops of an older primary that the cluster did not keep,
or it is behind the primary's trimmed log) copies the shard again: snapshot,
then the log, as a move does (`torua.node.copy`).

A primary's write waits (`wait_for_replicas`) until every in-sync replica has
fetched past its seq; a replica silent for `replica_timeout` is taken out of the
in-sync set by the coordinator first, and only then is the write acknowledged
without it. If the coordinator cannot be reached, the write fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from typing import TYPE_CHECKING

from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from torua.node import copy as shard_copy
from torua.node.replies import reply
from torua.node.shard_files import ShardFiles
from torua.node.tasks import Tasks
from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import Ack, InSyncChange, LogChunk, LogRequest
from torua.replication.rejoin import agreed_seq, may_recopy, rejoin_plan
from torua.storage.operations import InvalidOperation
from torua.storage.shard_store import LogTruncated, ShardClosed

if TYPE_CHECKING:
    from torua.node.service import Holding, Node

log = logging.getLogger("torua.node.replication")

EPOCH_FILE = "SHARD_EPOCH"
# In a shard dir: this replica copy was recreated empty (or is being copied again) and
# has not caught up with its primary since. Written before the new store, so a crash
# never leaves an empty copy that looks whole.
INCOMPLETE_FILE = "INCOMPLETE"
FETCH_WAIT = 1.0


def read_synced_epoch(directory) -> int:
    try:
        return int((directory / EPOCH_FILE).read_text())
    except (OSError, ValueError):
        return 0


def write_synced_epoch(directory, epoch: int) -> None:
    path = directory / EPOCH_FILE
    tmp = directory / (EPOCH_FILE + ".tmp")
    tmp.write_text(str(epoch))
    tmp.replace(path)


def is_incomplete(directory) -> bool:
    return (directory / INCOMPLETE_FILE).exists()


def set_incomplete(holding: "Holding", directory) -> None:
    """Mark a replica copy as not whole, durably, before its new store is created."""
    holding.complete = False
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / INCOMPLETE_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def set_complete(holding: "Holding", directory) -> None:
    (directory / INCOMPLETE_FILE).unlink(missing_ok=True)
    holding.complete = True


def notify(holding: "Holding", name: str) -> None:
    """Wake everyone waiting on `holding.<name>` (a fresh Event per generation)."""
    event = getattr(holding, name)
    event.set()
    setattr(holding, name, asyncio.Event())


class Replication:
    def __init__(self, node: "Node", files: ShardFiles, tasks: Tasks) -> None:
        self.node = node  # its config, connection and holdings
        self.files = files
        self.tasks = tasks

    # ------------------------------------------------------------ primary side

    async def wait_for_replicas(self, holding: "Holding", seq: int) -> None:
        """Return once every in-sync replica has `seq`, shrinking the set past silent ones."""
        me = self.node.config.id
        deadline = time.monotonic() + self.node.config.replica_timeout
        while True:
            # A replica being put back in sync counts already: the coordinator may have
            # recorded it (and could promote it) before its answer reaches us.
            waiting_for = set(holding.in_sync) | set(holding.joining)
            missing = [r for r in waiting_for if r != me and holding.acked.get(r, -1) < seq]
            if not missing:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for replica in missing:
                    await self.shrink(holding, replica)
                continue
            waiter = holding.acks_changed
            try:
                async with asyncio.timeout(remaining):  # no task per wait, unlike wait_for
                    await waiter.wait()
            except TimeoutError:
                pass

    async def shrink(self, holding: "Holding", replica: str) -> None:
        """Ask the coordinator to drop `replica` from the in-sync set; one request per replica at a time."""
        adding = holding.joining.get(replica)
        if adding is not None:
            # Let the "add" settle first, so the "remove" is the coordinator's last word.
            await asyncio.wait({adding}, timeout=5.0)
        pending = holding.shrinking.get(replica)
        if pending is None:
            pending = asyncio.ensure_future(self._change_in_sync(holding, replica, "remove"))
            holding.shrinking[replica] = pending
            pending.add_done_callback(lambda _: holding.shrinking.pop(replica, None))
        await asyncio.shield(pending)

    async def _change_in_sync(self, holding: "Holding", replica: str, action: str) -> None:
        nc = self.node.nc
        assert nc is not None
        change = InSyncChange(holding.shard_id, holding.shard_epoch, replica, action)
        try:
            msg = await nc.request(subjects.coordinator("in_sync"), encode(change), timeout=2.0)
            ack = decode(Ack, msg.data)
        except (NoRespondersError, NatsTimeout):
            raise ToruaError("unavailable", f"replica {replica} of shard {holding.shard_id} is silent and the coordinator is unreachable") from None
        if not ack.ok:
            raise ToruaError("unavailable", f"in-sync change for {replica} refused: {ack.error_code} {ack.error_message}")
        if action == "remove":
            holding.in_sync = [n for n in holding.in_sync if n != replica]
        elif replica not in holding.in_sync:
            holding.in_sync = holding.in_sync + [replica]
        log.info("shard %d: %s %s the in-sync set", holding.shard_id, replica, "left" if action == "remove" else "joined", extra={"shard": holding.shard_id})
        notify(holding, "acks_changed")

    async def serve_fetch(self, msg, request: LogRequest) -> None:
        """A replica's long-poll: record its ack, wait for news, send the ops after it."""
        node = self.node
        holding = node.holdings.get(request.shard_id)
        if holding is None or holding.store is None or holding.role not in ("primary", "frozen"):
            await reply(msg, LogChunk(request.shard_id, 0, error_code="moved", error_message=f"{node.config.id} is not the primary"))
            return
        store = holding.store
        if self._diverged(holding, request):
            await reply(msg, LogChunk(request.shard_id, store.last_seq(), error_code="diverged", error_message="copy holds ops the primary does not"))
            return
        if holding.acked.get(request.replica, -1) < request.after_seq:
            holding.acked[request.replica] = request.after_seq
            notify(holding, "acks_changed")
        if request.replica not in holding.in_sync and request.replica in holding.replicas and request.after_seq >= store.last_seq():
            self.tasks.spawn(self._rejoin_in_sync(holding, request.replica))
        if request.wait > 0 and store.last_seq() <= request.after_seq:
            news = holding.new_data
            try:
                async with asyncio.timeout(min(request.wait, 5.0)):
                    await news.wait()
            except TimeoutError:
                pass
        try:
            ops = store.read_log_encoded(request.after_seq, max(1, request.max_ops), max(1, request.max_bytes))
            answer = LogChunk(request.shard_id, store.last_seq(), ops)
        except LogTruncated as exc:
            answer = LogChunk(request.shard_id, store.last_seq(), error_code="truncated", error_message=str(exc))
        except ShardClosed:
            # dropped or handed off while this fetch waited: the replica asks the map again
            answer = LogChunk(request.shard_id, 0, error_code="moved", error_message=f"{node.config.id} no longer holds shard {request.shard_id}")
        await reply(msg, answer)

    def _diverged(self, holding: "Holding", request: LogRequest) -> bool:
        """Must this replica copy the shard again rather than catch up from the log?"""
        store = holding.store
        assert store is not None
        if request.after_seq > store.last_seq():
            return True
        agreed = agreed_seq(request.shard_epoch, dict(holding.promotions)) if request.shard_epoch < holding.shard_epoch else None
        return rejoin_plan(request.after_seq, agreed, store.base_seq()) == "recopy"

    async def _rejoin_in_sync(self, holding: "Holding", replica: str) -> None:
        if replica in holding.joining:
            return
        holding.joining[replica] = asyncio.current_task()
        try:
            await self._change_in_sync(holding, replica, "add")
        except ToruaError as exc:
            log.debug("shard %d: %s could not rejoin the in-sync set yet: %s", holding.shard_id, replica, exc.message)
        finally:
            holding.joining.pop(replica, None)

    # ------------------------------------------------------------ replica side

    def ensure_follower(self, holding: "Holding") -> None:
        if holding.follower is None or holding.follower.done():
            holding.follower = asyncio.ensure_future(self._follow(holding))
            self.tasks.track(holding.follower)

    async def _follow(self, holding: "Holding") -> None:
        node = self.node
        nc = node.nc
        assert nc is not None
        directory = self.files.directory(holding.shard_id)
        synced = read_synced_epoch(directory)  # the shard epoch this copy was last in step at
        read_at = holding.shard_epoch  # the shard epoch when `synced` was read
        refused_at = -math.inf  # when an op this release cannot apply was last logged
        while holding.role == "replica" and not self.tasks.stopping.is_set():
            store, primary = holding.store, holding.primary
            if store is None or primary is None or primary == node.config.id:
                return
            if holding.shard_epoch != read_at:
                # The map changed while this fetch waited: the copy may have led meanwhile
                # (promoted, then handed off before this loop looked), and a primary records
                # its own epoch (ShardControl.assign).
                synced, read_at = read_synced_epoch(directory), holding.shard_epoch
            request = LogRequest(
                holding.shard_id,
                store.applied_seq(),  # acknowledges what every engine of this copy has applied
                max_bytes=shard_copy.chunk_bytes(nc),
                replica=node.config.id,
                shard_epoch=synced,
                wait=FETCH_WAIT,
            )
            try:
                msg = await nc.request(subjects.node(primary, "shard.log"), encode(request), timeout=FETCH_WAIT + 2.0)
                chunk = decode(LogChunk, msg.data)
            except (NoRespondersError, NatsTimeout, ToruaError):
                await asyncio.sleep(0.2)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("shard %d: fetch from %s failed: %s", holding.shard_id, primary, exc)
                await asyncio.sleep(0.2)
                continue
            if chunk.error_code in ("diverged", "truncated"):
                if holding.role != "replica":
                    continue  # retired or promoted meanwhile: nothing to copy again
                told = holding.position_told
                if told is not None and not may_recopy(told[0], node.epoch, told[1], time.monotonic(), told_primary=told[2], primary=holding.primary):
                    await asyncio.sleep(0.1)  # a failover may be promoting this copy: keep it whole until the map says
                    continue
                log.info("shard %d: copy %s; copying it again from %s", holding.shard_id, chunk.error_code, primary, extra={"shard": holding.shard_id})
                await self._recopy(holding, primary)
                synced = read_synced_epoch(directory)
                continue
            if chunk.error_code:
                await asyncio.sleep(0.1)  # the primary has not taken its assignment yet
                continue
            if holding.store is not store or holding.role != "replica":
                continue
            if chunk.ops:
                try:
                    await store.apply_encoded_at(chunk.ops)
                except InvalidOperation as exc:
                    # An operation type of a newer release: this copy cannot apply it and
                    # stays behind (the primary drops it from the in-sync set) until the
                    # node is upgraded. Keep asking, say why now and then.
                    now = time.monotonic()
                    if now - refused_at >= 30:
                        log.error("shard %d: cannot apply the log of %s (%s); this replica stays behind until this node is upgraded", holding.shard_id, primary, exc, extra={"shard": holding.shard_id})
                        refused_at = now
                    await asyncio.sleep(1.0)
                    continue
                except ShardClosed:  # dropped or closed meanwhile: the loop looks at the holding again
                    await asyncio.sleep(0.05)
                    continue
                except Exception as exc:  # the follower must outlive any one bad chunk
                    log.warning("shard %d: applying ops from %s failed: %s", holding.shard_id, primary, exc, extra={"shard": holding.shard_id})
                    await asyncio.sleep(0.2)
                    continue
            if not holding.complete and store.applied_seq() >= chunk.last_seq:
                set_complete(holding, directory)  # caught up with the primary: whole again
                log.info("shard %d: replica caught up with %s at seq %d", holding.shard_id, primary, chunk.last_seq, extra={"shard": holding.shard_id})
            if synced != holding.shard_epoch:
                write_synced_epoch(directory, holding.shard_epoch)
                synced = read_at = holding.shard_epoch

    async def _recopy(self, holding: "Holding", primary: str) -> None:
        node = self.node
        async with holding.lock:
            if holding.store is not None:
                await holding.store.close()
            directory = self.files.directory(holding.shard_id)
            self.files.destroy(holding.shard_id)
            set_incomplete(holding, directory)
            holding.store = self.files.open(holding.shard_id, create=True)
            deadline = time.monotonic() + node.config.copy_timeout
            try:
                await shard_copy.copy_snapshot(node.nc, primary, holding.store, deadline)
                await shard_copy.catch_up(node.nc, primary, holding.store, deadline)
                write_synced_epoch(directory, holding.shard_epoch)
            except Exception as exc:
                log.warning("shard %d: copy from %s failed: %s; trying again", holding.shard_id, primary, exc)
                await asyncio.sleep(0.5)
