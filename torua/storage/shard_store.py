"""One shard copy on local disk, as the node uses it: its writer (the SQLite
database, the operation log, group commit: `torua.storage.writer.ShardWriter`),
the key-value engine (`torua.storage.kv_engine.KvEngine`) and any further engines
(`torua.storage.engine`), behind one object.

    store = ShardStore.open(directory, shard_id, create=True)
    seq = await store.apply(KvPut("k", b"v"))   # logged, applied by every engine, then answered
    store.get("k")                               # (b"v", "application/octet-stream")

Writes, the log and snapshots are the writer's; `get`, `list_keys`, `stats` and
the key-value rows of a snapshot are the key-value engine's. Other engines are
opened with `engines=` and reached with `engine(name)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torua.storage.engine import Chunk, EngineFactory, ShardEngine
from torua.storage.kv_engine import ROWS_FORMAT, KvEngine, Row, check_rows, encode_rows
from torua.storage.operations import Operation
from torua.storage.writer import DB_FILENAME, LogTruncated, SeqGap, ShardClosed, ShardMissing, ShardWriter

__all__ = [
    "ShardStore",
    "ShardStats",
    "ShardMissing",
    "ShardClosed",
    "SeqGap",
    "LogTruncated",
    "DB_FILENAME",
]


@dataclass(frozen=True)
class ShardStats:
    shard_id: int
    keys: int
    bytes: int
    last_seq: int


class ShardStore:
    """A single shard copy stored in ``<directory>``: ``shard.db`` and its engines' files."""

    def __init__(self, writer: ShardWriter) -> None:
        # Use ShardStore.open().
        self.writer = writer
        kv = writer.engine(KvEngine.name)
        assert isinstance(kv, KvEngine)
        self.kv = kv

    @classmethod
    def open(
        cls,
        directory: Path,
        shard_id: int,
        *,
        durable: bool = True,
        create: bool = False,
        engines: Sequence[EngineFactory] = (),
    ) -> "ShardStore":
        """Open (with `create`: create if missing) the copy in `directory`, with the
        key-value engine and `engines` (factories, opened in that order after it)."""
        return cls(ShardWriter.open(directory, shard_id, durable=durable, create=create, engines=(KvEngine, *engines)))

    # ------------------------------------------------------------ properties

    @property
    def shard_id(self) -> int:
        return self.writer.shard_id

    @property
    def directory(self) -> Path:
        return self.writer.directory

    @property
    def durable(self) -> bool:
        return self.writer.durable

    @property
    def commits(self) -> int:
        """Number of write transactions committed since open (group commits)."""
        return self.writer.commits

    @property
    def closed(self) -> bool:
        return self.writer.closed

    def last_seq(self) -> int:
        return self.writer.last_seq()

    def base_seq(self) -> int:
        """Seq of the last op folded into the data that is no longer in the log."""
        return self.writer.base_seq()

    def applied_seq(self) -> int:
        """Every op up to it is applied by every engine (see ShardWriter.applied_seq)."""
        return self.writer.applied_seq()

    def engine(self, name: str) -> ShardEngine:
        return self.writer.engine(name)

    def formats(self) -> tuple[str, ...]:
        """The snapshot chunk formats this copy installs."""
        return self.writer.formats()

    def held_formats(self) -> tuple[str, ...]:
        """The chunk formats a snapshot of this copy may hold."""
        return self.writer.held_formats()

    # ----------------------------------------------------------------- reads

    def get(self, key: str) -> tuple[bytes, str] | None:
        return self.kv.get(key)

    def list_keys(self, prefix: str = "", after: str | None = None, limit: int = 1000) -> list[str]:
        return self.kv.list_keys(prefix, after, limit)

    def stats(self) -> ShardStats:
        counts = self.kv.stats()
        return ShardStats(shard_id=self.shard_id, keys=counts["keys"], bytes=counts["bytes"], last_seq=self.last_seq())

    def read_log(self, after_seq: int, max_ops: int = 1000, max_bytes: int = 4 << 20) -> list[tuple[int, Operation]]:
        return self.writer.read_log(after_seq, max_ops, max_bytes)

    def read_log_encoded(self, after_seq: int, max_ops: int = 1000, max_bytes: int = 4 << 20) -> list[tuple[int, bytes]]:
        return self.writer.read_log_encoded(after_seq, max_ops, max_bytes)

    # ------------------------------------------------------------- snapshots

    def snapshot_chunks(self, cursor: bytes | None, max_bytes: int = 4 << 20) -> tuple[list[Chunk], bytes | None]:
        """The next chunks of every engine's snapshot, and the cursor to go on from (None: done)."""
        return self.writer.snapshot_chunks(cursor, max_bytes)

    async def install_chunks(self, chunks: Sequence[Chunk]) -> None:
        await self.writer.install_chunks(chunks)

    def snapshot_chunk(self, after: str | None, max_bytes: int = 4 << 20) -> tuple[list[Row], str | None]:
        """Key-value rows in key order strictly after ``after`` (the shape of a snapshot
        before chunks had formats; see KvEngine.rows)."""
        return self.kv.rows(after, max_bytes)

    async def install_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Bulk upsert (key, value, content_type) rows without logging them
        (snapshot rows copied from a node of a release before chunk formats)."""
        await self.install_chunks([Chunk(ROWS_FORMAT, encode_rows(check_rows(rows)))])

    # ---------------------------------------------------------------- writes

    async def apply(self, op: Operation) -> int:
        """Log and apply ``op`` under the next seq; returns that seq."""
        return await self.writer.apply(op)

    async def apply_all(self, ops: Sequence[Operation]) -> list[int]:
        """Log and apply ``ops`` under the next seqs, in one transaction; returns their seqs."""
        return await self.writer.apply_all(ops)

    async def apply_at(self, seq: int, op: Operation) -> None:
        """Apply an op copied from another replica under its original seq.
        seq <= last_seq() is ignored; seq > last_seq() + 1 raises SeqGap."""
        await self.writer.apply_at(seq, op)

    async def apply_many_at(self, ops: Sequence[tuple[int, Operation]]) -> None:
        """apply_at() for a run, in one transaction: all of it, or (on a gap) none."""
        await self.writer.apply_many_at(ops)

    async def apply_encoded_at(self, ops: Sequence[tuple[int, bytes]]) -> None:
        """apply_many_at() for ops as another replica logged them, logged as they came."""
        await self.writer.apply_encoded_at(ops)

    async def set_base_seq(self, seq: int) -> None:
        """Declare the data to reflect every op up to ``seq`` (after a snapshot install)."""
        await self.writer.set_base_seq(seq)

    async def truncate_log(self, keep_after: int) -> None:
        """Drop ops with seq <= keep_after (within the bounds ShardWriter.truncate_log keeps)."""
        await self.writer.truncate_log(keep_after)

    async def close(self) -> None:
        """Finish queued writes, stop the writer thread, close engines and connections."""
        await self.writer.close()

    async def __aenter__(self) -> "ShardStore":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -------------------------------------------------------- static helpers

    @staticmethod
    def exists(directory: Path) -> bool:
        return ShardWriter.exists(directory)

    @staticmethod
    def destroy(directory: Path) -> None:
        ShardWriter.destroy(directory)
