"""torua.graph.vector_cache against a brute-force model: random puts, re-puts and
deletes, then every search (with and without a label) equals numpy's exact top k over
what the model holds, for both metrics."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from torua.graph.vector_cache import VectorCache

DIM = 8


def exact(model: dict[str, tuple[str, np.ndarray]], q: np.ndarray, k: int, metric: str, label: str) -> list[str]:
    def score(v: np.ndarray) -> float:
        if metric == "cosine":
            n = float(np.linalg.norm(v)) * float(np.linalg.norm(q))
            return float(v @ q) / n if n else 0.0
        return -float(np.linalg.norm(v - q))

    rows = [(vid, score(v)) for vid, (lab, v) in model.items() if not label or lab == label]
    return [vid for vid, _ in sorted(rows, key=lambda r: (-r[1], r[0]))[:k]]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("seed", range(5))
def test_searches_after_random_writes_equal_exact_search(metric: str, seed: int) -> None:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    start = {f"v{i}": (rng.choice("AB"), nrng.normal(size=DIM).astype(np.float32)) for i in range(20)}
    cache = VectorCache(list(start), [lab for lab, _ in start.values()], np.stack([v for _, v in start.values()]), metric, 0)
    model = dict(start)
    for step in range(300):
        action = rng.random()
        if action < 0.5:
            vid = f"v{rng.randrange(60)}"  # new or existing
            model[vid] = (rng.choice("AB"), nrng.normal(size=DIM).astype(np.float32))
            cache.put(vid, model[vid][0], model[vid][1].tolist())
        elif action < 0.8 and model:
            vid = rng.choice(sorted(model))
            del model[vid]
            cache.delete(vid)
        else:
            cache.delete(f"missing{step}")  # nothing there: nothing changes
        q = nrng.normal(size=DIM).astype(np.float32)
        k = rng.choice([1, 3, 10, 100])
        for label in ("", "A"):
            got = cache.top_k(q.tolist(), k, label)
            assert [vid for vid, _ in got] == exact(model, q, k, metric, label), (step, label)
    assert cache.nbytes() == len(model) * DIM * 4


def test_an_empty_graph_is_searched_and_filled() -> None:
    cache = VectorCache([], [], np.zeros((0, DIM), np.float32), "cosine", 0)
    assert cache.top_k([1.0] * DIM, 5) == []
    cache.put("a", "L", [1.0] * DIM)
    assert [vid for vid, _ in cache.top_k([1.0] * DIM, 5)] == ["a"]
    cache.delete("a")
    assert cache.top_k([1.0] * DIM, 5) == [] and cache.nbytes() == 0


def test_cosine_scores_stay_within_minus_one_and_one() -> None:
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(50, 384)).astype(np.float32)
    cache = VectorCache([f"v{i}" for i in range(50)], [""] * 50, rows, "cosine", 0)
    for i in range(50):
        (best, score), *_ = cache.top_k(rows[i].tolist(), 1)
        assert best == f"v{i}" and 1.0 - 1e-6 <= score <= 1.0
        assert -1.0 <= cache.top_k((-rows[i]).tolist(), 1)[0][1] <= 1.0


def test_a_node_process_runs_numpys_blas_on_one_thread():
    # In a process of its own: the limit holds for the whole process that sets it.
    code = (
        "import numpy\n"
        "from threadpoolctl import threadpool_info\n"
        "from torua.graph.vector_cache import single_threaded_blas\n"
        "single_threaded_blas()\n"
        "print(sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "OPENBLAS_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1]"
