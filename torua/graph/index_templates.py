"""Empty index files that a shard's index rebuild starts from (docs/design/graph.md
section 1).

Building a shard copy's graph index from its rows spends ~40% of its CPU at GraphRAG's
sizes (~50 of ~125 ms for a shard of 90 vertices and 360 edge rows) before its first
row: a new Kuzu database, the graphs' tables, and their full-text indexes, the same
for every shard of a node that holds the same graphs (a bulk ingest leaves all 16
shards' indexes to build at once). So a node makes each such empty file once (a build
with no rows) and a rebuild starts from a copy of it (`KuzuGraphs.build`).

The files live in one directory beside the shard directories, each named by a hash
of the graphs it holds (uid, name, vector_dim, metric, text_properties, in order)
and of the engine's version (`torua.graph.kuzu_index` says what; this module knows
nothing of Kuzu); the first use in a process empties the directory, so a file of an
earlier release, or of graphs since dropped, lasts until the node starts again.
Measured on `torua bench --rag`'s ingest (450 documents, 16 shards on 3 nodes): the
indexes' catch-up after it took 1.7 s instead of 2.1-2.3 (3.1 s of the nodes' CPU
instead of 3.9-4.3).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

DIRECTORY = "index-templates"  # beside the shard directories (`<data dir>/shards/`)


def template_key(described: object) -> str:
    """The name of the empty file for `described` (JSON: the engine's version and the
    graphs, in order, since the order numbers their tables).

    >>> template_key(["0.11.3", [["u1", "g", 384]]]) == template_key(["0.11.3", [["u1", "g", 384]]]) != template_key(["0.11.3", [["u1", "g", 8]]])
    True
    """
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:32]


class IndexTemplates:
    """One node's empty index files (`in_dir`: one object per directory in a process)."""

    _held: dict[Path, "IndexTemplates"] = {}
    _held_lock = threading.Lock()

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # one file made at a time; the shards' builds wait for it
        self._emptied = False

    @classmethod
    def in_dir(cls, directory: Path) -> "IndexTemplates":
        with cls._held_lock:
            return cls._held.setdefault(directory.resolve(), cls(directory))

    def path_for(self, key: str, make: Callable[[Path], None]) -> Path:
        """The empty file named `key` (`template_key`), made now by `make(path)` (a build
        with no rows) if this process has not made it yet."""
        with self._lock:
            if not self._emptied:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory.mkdir(parents=True, exist_ok=True)
                self._emptied = True
            path = self.directory / f"{key}.kuzu"
            if not path.exists():
                fresh = self.directory / f"{path.stem}.{uuid.uuid4().hex}.making"
                try:
                    make(fresh)
                    os.replace(fresh, path)
                finally:
                    for leftover in self.directory.glob(f"{fresh.name}*"):
                        leftover.unlink(missing_ok=True)
            return path

    def forget(self, key: str) -> None:
        """Drop the file named `key` (a build from it failed: the next one makes it again)."""
        with self._lock:
            (self.directory / f"{key}.kuzu").unlink(missing_ok=True)
