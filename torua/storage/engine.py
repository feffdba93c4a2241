"""What a shard's state machines look like to its writer: the `ShardEngine` seam.

A shard copy is one operation log (`torua.storage.writer.ShardWriter`) and the
engines that apply its operations. Which engine takes an operation is decided by
its type (`torua.storage.operations.OPERATION_ENGINES`); which engine installs a
snapshot chunk, by the chunk's `format`. There are two kinds:

- **transactional** engines keep their data in the shard's SQLite database and
  apply an operation inside the writer's transaction, atomically with the log
  (the key-value engine, `torua.storage.kv_engine.KvEngine`);
- **follower** engines keep their data elsewhere (the graph engine, on Kuzu) and
  cannot share that transaction. The writer hands them their operations after
  the SQLite commit, in seq order, and acknowledges the write only once they
  applied it. A follower records its own `applied_seq` atomically with its data
  and applies idempotently (an op at or below its `applied_seq` changes nothing),
  so after a crash at any point the writer replays the log after that seq and
  the follower ends up with exactly the log's state. The log is never trimmed
  above a follower's `applied_seq`.

A snapshot of a shard is a sequence of `Chunk`s, opaque bytes with a format
(e.g. ``kv.rows.v1``), produced by each engine from a cursor it alone reads,
and installed by the engine that owns the format; a format no engine owns is
refused (`UnknownChunkFormat`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from torua.storage.operations import Operation

__all__ = [
    "Chunk",
    "EngineContext",
    "EngineFactory",
    "EngineKind",
    "EngineOutOfStep",
    "FollowerEngine",
    "ShardEngine",
    "TransactionalEngine",
    "UnknownChunkFormat",
]

EngineKind = Literal["transactional", "follower"]


@dataclass(frozen=True)
class Chunk:
    """One piece of a shard snapshot: `data` in `format`, which names its engine's encoding
    and version (``kv.rows.v1``: msgpack ``[[key, value, content_type], ...]``)."""

    format: str
    data: bytes


class UnknownChunkFormat(ValueError):
    """A snapshot chunk in a format no engine of this store installs."""


class EngineOutOfStep(Exception):
    """A follower engine's data does not fit the log (its files are missing or older than
    the log's start, or newer than its end): the copy cannot be rebuilt from its own log
    and must be copied again."""


@dataclass(frozen=True)
class EngineContext:
    """What an engine is opened with (in the writer's thread, before the writer serves)."""

    directory: Path  # the shard copy's directory; an engine keeps its files inside it
    shard_id: int
    durable: bool
    create: bool
    # a read-only connection to shard.db for the calling thread (one per thread)
    reader: Callable[[], sqlite3.Connection]


class ShardEngine(Protocol):
    """What every engine offers."""

    name: str  # the engine operations are routed to (OPERATION_ENGINES values)
    kind: EngineKind
    formats: tuple[str, ...]  # the snapshot chunk formats it writes and installs

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int) -> tuple[list[Chunk], bytes | None]:
        """Chunks from `cursor` (None: from the start) of about `max_bytes` in all (at least
        one chunk when there is data left), and the cursor to continue from (None: done).
        Called from any thread while writes go on: the chunks may be fuzzy; replaying the
        log after the seq read before the first chunk makes them exact."""
        ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None:
        """Called once, in the writer's thread, after the last write."""
        ...


class TransactionalEngine(ShardEngine, Protocol):
    """Applied inside the writer's SQLite transaction. Its in-memory state (counters, say)
    is a dataclass the writer keeps per transaction: copied when a transaction starts and
    at each request's savepoint, dropped on rollback, kept once committed."""

    def load(self, conn: sqlite3.Connection, create: bool) -> Any:
        """In the writer's opening transaction: create its tables if `create` and they are
        not there; return its committed state."""
        ...

    def apply(self, conn: sqlite3.Connection, state: Any, batch: Sequence[tuple[int, Operation]]) -> None: ...

    def install(self, conn: sqlite3.Connection, state: Any, chunk: Chunk) -> None: ...

    def save(self, conn: sqlite3.Connection, before: Any, after: Any) -> None:
        """Just before the commit: persist what changed in its state since `before`."""
        ...

    def settled(self) -> None:
        """Just after the writer's transaction ended (committed or rolled back): what
        its readers see may have changed (a cache of committed rows is dropped here)."""
        ...

    def holds_data(self) -> bool:
        """Whether a snapshot of the copy may hold chunks of its formats (a node that does
        not install them may copy the shard otherwise). Called from any thread."""
        ...


class FollowerEngine(ShardEngine, Protocol):
    """Applied by the writer after the SQLite commit, in seq order, in the writer's thread."""

    def applied_seq(self) -> int | None:
        """The seq its data reflects, as recorded with its data; None when it holds nothing
        and has no files (an engine created lazily, before its first operation or chunk)."""
        ...

    def apply(self, batch: Sequence[tuple[int, Operation]], through: int) -> None:
        """In one atomic, durable step: apply the ops of `batch` (in seq order, every seq
        <= `through`) whose seq is above `applied_seq`, and record `applied_seq = through`.
        The writer also calls it with no ops, to move `applied_seq` past operations that
        are not this engine's (before it trims the log) or to a snapshot's base seq."""
        ...

    def install(self, chunk: Chunk) -> None:
        """Upsert a snapshot chunk's data (atomically), without changing `applied_seq`."""
        ...


# Opens an engine of a shard copy; called in the writer's thread.
EngineFactory = Callable[[EngineContext], ShardEngine]
