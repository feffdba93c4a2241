"""One graph's vectors on one shard copy, in memory, searched exactly.

A shard holds a slice of a graph's vectors (100k vectors over 16 shards: ~6k each).
Kuzu's `QUERY_VECTOR_INDEX` costs about the same on such a slice as on the whole
set (a fixed ~1-4 ms a call, measured with 0.11.3, whatever the efs), and a search
asks every shard, so sixteen of those made a search ~17x one database's. A numpy
scan of ~6k 384-d vectors takes well under a millisecond and is exact. So a shard
copy keeps each graph's vectors here while they fit `VECTOR_CACHE_BYTES`, and
searches them exactly; above that, or while the copy is being written to, the
Kuzu index answers (torua.graph.kuzu_index).

Scores are those of the exact Cypher path: cosine similarity for `cosine`, minus
the Euclidean distance for `l2`; ties go to the smaller id.

>>> import numpy as np
>>> c = VectorCache.of(["a", "b", "c"], ["X", "Y", "X"], np.array([[1, 0], [0, 1], [1, 1]], np.float32), "cosine", version=3)
>>> [(i, round(s, 3)) for i, s in c.top_k([1.0, 0.0], 2)]
[('a', 1.0), ('c', 0.707)]
>>> [i for i, _ in c.top_k([0.0, 1.0], 5, label="X")]
['c', 'a']
>>> [(i, round(s, 3)) for i, s in VectorCache.of(["a", "b"], ["", ""], np.array([[0, 0], [3, 4]], np.float32), "l2", 0).top_k([0.0, 0.0], 2)]
[('a', -0.0), ('b', -5.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VECTOR_CACHE_BYTES = 64 << 20  # per graph per shard copy: ~43k 384-d vectors
VECTOR_CACHE_REBUILD_S = 1.0  # a cache outdated by a write is read again at most this often


@dataclass(frozen=True)
class VectorCache:
    version: int  # of the graph's vectors on this copy when they were read (KuzuGraphs counts writes)
    ids: list[str]
    labels: np.ndarray  # object array of labels, for the `label` filter
    rows: np.ndarray  # (n, dim) float32: unit rows for cosine, as stored for l2
    metric: str
    squares: np.ndarray | None = None  # (n,) squared norms of the rows, for l2

    @classmethod
    def of(cls, ids: Sequence[str], labels: Sequence[str], matrix: np.ndarray, metric: str, version: int) -> "VectorCache":
        rows = np.ascontiguousarray(matrix, dtype=np.float32).reshape(len(ids), -1)
        if metric == "cosine":
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
            return cls(version, list(ids), np.asarray(labels, dtype=object), rows, metric)
        return cls(version, list(ids), np.asarray(labels, dtype=object), rows, metric, np.einsum("ij,ij->i", rows, rows))

    @staticmethod
    def fits(count: int, dim: int) -> bool:
        return count * dim * 4 <= VECTOR_CACHE_BYTES

    def top_k(self, vector: Sequence[float], k: int, label: str = "") -> list[tuple[str, float]]:
        """The `k` best (id, score), best first."""
        q = np.asarray(vector, dtype=np.float32)
        if self.metric == "cosine":
            norm = float(np.linalg.norm(q))
            scores = self.rows @ (q / norm) if norm > 0 else np.zeros(len(self.ids), np.float32)
        else:
            assert self.squares is not None
            scores = -np.sqrt(np.maximum(self.squares - 2.0 * (self.rows @ q) + float(q @ q), 0.0))
        chosen = np.nonzero(self.labels == label)[0] if label else np.arange(len(self.ids))
        if len(chosen) > k:
            part = scores[chosen]
            kth = np.partition(part, len(part) - k)[len(part) - k]  # the k-th best score
            chosen = chosen[part >= kth]  # every tie with it too: the id decides among them
        best = sorted(chosen.tolist(), key=lambda i: (-float(scores[i]), self.ids[i]))[:k]
        return [(self.ids[i], float(scores[i])) for i in best]
