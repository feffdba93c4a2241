"""Where a node keeps its shard copies and how it opens them: one directory per
shard under ``<data dir>/shards``, opened with the key-value engine and the
node's further engines (`torua.storage.engine`).

>>> files = ShardFiles(Path("/data/n1/shards"), durable=True)
>>> files.directory(7)
PosixPath('/data/n1/shards/7')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torua.storage.engine import EngineFactory
from torua.storage.shard_store import ShardStore


class ShardFiles:
    def __init__(self, root: Path, durable: bool, engines: Sequence[EngineFactory] = ()) -> None:
        self.root = root
        self.durable = durable  # --commit durable: every commit fsynced
        self.engines = tuple(engines)  # opened with every copy, after the key-value engine

    def directory(self, shard_id: int) -> Path:
        return self.root / str(shard_id)

    def exists(self, shard_id: int) -> bool:
        return ShardStore.exists(self.directory(shard_id))

    def open(self, shard_id: int, create: bool) -> ShardStore:
        return ShardStore.open(self.directory(shard_id), shard_id, durable=self.durable, create=create, engines=self.engines)

    def destroy(self, shard_id: int) -> None:
        """Remove a closed copy, every engine's files with it."""
        ShardStore.destroy(self.directory(shard_id))
