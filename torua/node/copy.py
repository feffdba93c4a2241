"""Filling a shard copy from another node: snapshot, then the log.

The snapshot is read in chunks while the source keeps taking writes, so the rows
are fuzzy; every chunk says the source's last log seq *before* its rows were read.
The first chunk's seq is the base: every op after it is replayed from the source's
log, and because KV ops are whole-value puts and deletes, replaying them over the
fuzzy rows gives exactly the source's state.
"""

from __future__ import annotations

import logging
import time

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout

from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import LogChunk, LogRequest, SnapshotChunk, SnapshotRequest
from torua.storage.operations import InvalidOperation
from torua.storage.shard_store import ShardStore

log = logging.getLogger("torua.node.copy")


def chunk_bytes(nc: NATS) -> int:
    """Rows per snapshot chunk, by size: a quarter of what NATS carries, at most 4 MiB."""
    return max(64 << 10, min(4 << 20, (nc.max_payload or (1 << 20)) // 4))


# One snapshot chunk or log chunk is read and sent well within this; a request not
# answered by then was lost (or its answer was), and is sent again.
ATTEMPT_TIMEOUT = 5.0


async def _request(nc: NATS, subject: str, payload: bytes, deadline: float) -> bytes:
    """Request until answered or `deadline`; every request here is safe to repeat."""
    attempt = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ToruaError("timeout", f"copy deadline passed before {subject} was answered ({attempt} attempts)")
        attempt += 1
        try:
            msg = await nc.request(subject, payload, timeout=min(remaining, ATTEMPT_TIMEOUT))
            return msg.data
        except NatsTimeout:
            log.info("no answer on %s (attempt %d); asking again", subject, attempt)


async def copy_snapshot(nc: NATS, source: str, store: ShardStore, deadline: float) -> int:
    """Install every row of `source`'s copy; return the base seq to replay the log from."""
    after: str | None = None
    base: int | None = None
    while True:
        request = SnapshotRequest(shard_id=store.shard_id, after=after, max_bytes=chunk_bytes(nc))
        chunk = decode(SnapshotChunk, await _request(nc, subjects.node(source, "shard.snapshot"), encode(request), deadline))
        if chunk.error_code:
            raise ToruaError(chunk.error_code, f"snapshot from {source}: {chunk.error_message}")
        if base is None:
            base = chunk.last_seq
        if chunk.rows:
            await store.install_rows(list(chunk.rows))
        if chunk.next is None:
            break
        after = chunk.next
    assert base is not None
    await store.set_base_seq(base)
    return base


async def catch_up(nc: NATS, source: str, store: ShardStore, deadline: float, until_seq: int | None = None) -> int:
    """Replay `source`'s log after our last seq: up to `until_seq`, or until we reach its end."""
    while True:
        request = LogRequest(shard_id=store.shard_id, after_seq=store.last_seq(), max_bytes=chunk_bytes(nc))
        chunk = decode(LogChunk, await _request(nc, subjects.node(source, "shard.log"), encode(request), deadline))
        if chunk.error_code:
            raise ToruaError(chunk.error_code, f"log from {source}: {chunk.error_message}")
        if chunk.ops:
            try:
                await store.apply_encoded_at(chunk.ops)
            except InvalidOperation as exc:  # an operation type of a newer release
                raise ToruaError("unsupported_version", f"log from {source}: {exc}; upgrade this node first") from None
        last = store.last_seq()
        if until_seq is not None:
            if last >= until_seq:
                return last
            if not chunk.ops and chunk.last_seq < until_seq:
                raise ToruaError("conflict", f"{source} has seq {chunk.last_seq}, below the {until_seq} it reported")
        elif last >= chunk.last_seq:
            return last
