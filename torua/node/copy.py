"""Filling a shard copy from another node: snapshot, then the log; and the source's
side of it, the snapshot answer.

The snapshot is read in chunks while the source keeps taking writes, so the data
is fuzzy; every chunk says the seq every engine of the source had applied *before*
its data was read. The first chunk's seq is the base: every op after it is
replayed from the source's log, and because every op is a blind write keyed by
its identity (a whole-value put or a delete of a key), replaying them over the
fuzzy data gives exactly the source's state.

Chunks are opaque bytes in a format (`torua.storage.engine.Chunk`), installed by
the engine owning the format. A source of a release before formats answers with
key-value rows; an older requester gets them too (`torua.node.snapshots`).
"""

from __future__ import annotations

import logging
import time

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout

from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.node.snapshots import unreadable
from torua.protocol.messages import LogChunk, LogRequest, SnapshotChunk, SnapshotData, SnapshotRequest
from torua.storage.engine import Chunk, UnknownChunkFormat
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
    """Install every chunk of `source`'s copy; return the base seq to replay the log from."""
    formats = list(store.formats())
    after: str | None = None  # where a source of an older release goes on (rows)
    cursor: bytes | None = None  # where a source with formats goes on
    base: int | None = None
    while True:
        request = SnapshotRequest(shard_id=store.shard_id, after=after, max_bytes=chunk_bytes(nc), formats=formats, cursor=cursor)
        chunk = decode(SnapshotChunk, await _request(nc, subjects.node(source, "shard.snapshot"), encode(request), deadline))
        if chunk.error_code:
            raise ToruaError(chunk.error_code, f"snapshot from {source}: {chunk.error_message}")
        if base is None:
            base = chunk.last_seq
        if chunk.rows:
            await store.install_rows(list(chunk.rows))
        if chunk.chunks:
            try:
                await store.install_chunks([Chunk(part.format, part.data) for part in chunk.chunks])
            except UnknownChunkFormat as exc:
                raise ToruaError("unsupported_version", f"snapshot from {source}: {exc}; upgrade this node first") from None
        if chunk.cursor is not None:
            cursor = chunk.cursor
        elif chunk.next is not None:
            after = chunk.next
        else:
            break
    assert base is not None
    await store.set_base_seq(base)
    return base


def answer_snapshot(store: ShardStore, request: SnapshotRequest, me: str) -> SnapshotChunk:
    """The next chunk of `store`'s snapshot for `request`: in the formats it names, or
    (a requester of a release before formats) as key-value rows. `ToruaError` if the
    copy holds data the requester cannot install, or for a cursor not made here."""
    missing = unreadable(store.held_formats(), request.formats)
    if missing:
        reads = ", ".join(request.formats) or "key-value rows only"
        raise ToruaError(
            "unsupported_version",
            f"shard {request.shard_id} on {me} holds {', '.join(missing)} data, which the copying node cannot install (it reads {reads}); upgrade it first",
        )
    last_seq = store.applied_seq()  # before the data is read
    max_bytes = max(1, request.max_bytes)
    if not request.formats:
        rows, nxt = store.snapshot_chunk(request.after, max_bytes)
        return SnapshotChunk(request.shard_id, last_seq, rows, nxt)
    try:
        chunks, cursor = store.snapshot_chunks(request.cursor, max_bytes)
    except ValueError as exc:
        raise ToruaError("bad_request", str(exc)) from None
    return SnapshotChunk(request.shard_id, last_seq, chunks=[SnapshotData(c.format, c.data) for c in chunks], cursor=cursor)


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
