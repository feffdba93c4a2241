"""One graph's vectors on one shard copy, in memory, searched exactly.

A shard holds a slice of a graph's vectors (100k vectors over 16 shards: ~6k each).
Kuzu's `QUERY_VECTOR_INDEX` costs about the same on such a slice as on the whole
set (a fixed ~1-4 ms a call, measured with 0.11.3, whatever the efs), and a search
asks every shard, so sixteen of those made a search ~17x one database's. A numpy
scan of ~6k 384-d vectors takes well under a millisecond and is exact. So a shard
copy keeps each graph's vectors here while they fit the node's
--graph-vector-memory (64 MiB: ~43k 384-d vectors), read once from the index and
then kept up to date with every write the index commits; above that size the
Kuzu index answers (torua.graph.kuzu_index).

Scores are those of the exact Cypher path: cosine similarity for `cosine`, minus
the Euclidean distance for `l2`; ties go to the smaller id.

>>> import numpy as np
>>> c = VectorCache(["a", "b", "c"], ["X", "Y", "X"], np.array([[1, 0], [0, 1], [1, 1]], np.float32), "cosine", version=3)
>>> [(i, round(s, 3)) for i, s in c.top_k([1.0, 0.0], 2)]
[('a', 1.0), ('c', 0.707)]
>>> [i for i, _ in c.top_k([0.0, 1.0], 5, label="X")]
['c', 'a']
>>> c.put("d", "Y", [1.0, 0.0]); c.delete("a"); c.put("c", "X", [0.0, 1.0])
>>> [(i, round(s, 3)) for i, s in c.top_k([1.0, 0.0], 5)]
[('d', 1.0), ('b', 0.0), ('c', 0.0)]
>>> [(i, round(s, 3)) for i, s in VectorCache(["a", "b"], ["", ""], np.array([[0, 0], [3, 4]], np.float32), "l2", 0).top_k([0.0, 0.0], 2)]
[('a', -0.0), ('b', -5.0)]
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

VECTOR_CACHE_REBUILD_S = 1.0  # a graph whose vectors are not in memory is read from the index at most this often


def single_threaded_blas() -> None:
    """Run numpy's BLAS on the calling thread, in this whole process (a node's).

    OpenBLAS splits a matrix-vector product over its own threads, one per core.
    On a machine whose cores are busy (a node serves many shards, beside other
    processes), each product then waits for a core for each of its threads: a
    1250x384 product took 2 ms at p50 and 9 ms at p99 with two busy processes on two
    cores, against 0.03 ms on one thread, and a vector search over 20k vectors on
    three nodes went from ~85 to ~12 ms. A node runs many searches at once anyway."""
    threadpool_limits(limits=1, user_api="blas")


class VectorCache:
    """Thread-safe: the index's writer puts and deletes while queries search."""

    def __init__(self, ids: Sequence[str], labels: Sequence[str], matrix: np.ndarray, metric: str, version: int) -> None:
        self.version = version  # of the graph's vectors on this copy (KuzuGraphs counts their writes)
        self.metric = metric
        rows = np.array(matrix, dtype=np.float32)  # (n, dim), n may be 0
        assert rows.ndim == 2 and len(rows) == len(ids), (rows.shape, len(ids))
        self.dim = rows.shape[1]
        self._n = len(ids)
        self._rows = self._stored(rows)
        self._squares = np.einsum("ij,ij->i", self._rows, self._rows)  # used for l2
        self._ids = list(ids)
        self._labels = np.array(list(labels), dtype=object)
        self._row_of = {vid: i for i, vid in enumerate(self._ids)}
        self._lock = threading.Lock()

    @staticmethod
    def fits(count: int, dim: int, budget_bytes: int) -> bool:
        return count * dim * 4 <= budget_bytes

    def nbytes(self) -> int:
        return self._n * self.dim * 4

    def _stored(self, rows: np.ndarray) -> np.ndarray:
        """Unit rows for cosine (zero rows stay zero), as given for l2."""
        if self.metric != "cosine":
            return rows
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)

    def put(self, vid: str, label: str, vector: Sequence[float]) -> None:
        row = self._stored(np.asarray(vector, dtype=np.float32).reshape(1, self.dim))
        with self._lock:
            i = self._row_of.get(vid)
            if i is None:
                i = self._n
                if i == len(self._rows):  # full: twice the room
                    grow = max(16, len(self._rows))
                    self._rows = np.concatenate([self._rows, np.zeros((grow, self.dim), np.float32)])
                    self._squares = np.concatenate([self._squares, np.zeros(grow, np.float32)])
                    self._labels = np.concatenate([self._labels, np.empty(grow, dtype=object)])
                self._ids.append(vid)
                self._row_of[vid] = i
                self._n += 1
            self._rows[i] = row[0]
            self._squares[i] = float(row[0] @ row[0])
            self._labels[i] = label

    def delete(self, vid: str) -> None:
        with self._lock:
            i = self._row_of.pop(vid, None)
            if i is None:
                return
            last = self._n - 1
            if i != last:  # the last row takes the freed place
                moved = self._ids[last]
                self._rows[i], self._squares[i], self._labels[i], self._ids[i] = self._rows[last], self._squares[last], self._labels[last], moved
                self._row_of[moved] = i
            self._ids.pop()
            self._labels[last] = None
            self._n = last

    def top_k(self, vector: Sequence[float], k: int, label: str = "") -> list[tuple[str, float]]:
        """The `k` best (id, score), best first."""
        q = np.asarray(vector, dtype=np.float32)
        with self._lock:
            rows, n = self._rows[: self._n], self._n
            if self.metric == "cosine":
                norm = math.sqrt(float(q @ q))
                # float32 rounding puts a vector's similarity to itself at 1.0000001: clip
                scores = np.clip(rows @ (q / norm), -1.0, 1.0) if norm > 0 else np.zeros(n, np.float32)
            else:
                scores = -np.sqrt(np.maximum(self._squares[:n] - 2.0 * (rows @ q) + float(q @ q), 0.0))
            chosen = np.nonzero(self._labels[:n] == label)[0] if label else None  # None: every row
            part = scores if chosen is None else scores[chosen]
            if len(part) > k:
                kth = np.partition(part, len(part) - k)[len(part) - k]  # the k-th best score
                top = np.nonzero(part >= kth)[0]  # every tie with it too: the id decides among them
                chosen = top if chosen is None else chosen[top]
            elif chosen is None:
                chosen = np.arange(n)
            best = sorted(chosen.tolist(), key=lambda i: (-float(scores[i]), self._ids[i]))[:k]
            return [(self._ids[i], float(scores[i])) for i in best]
