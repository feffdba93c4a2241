"""Vector search recall through the real cluster's REST API, against exact search in numpy.

10k clustered 384-d vectors (a seeded generator) are imported over REST into a cluster
of two shards, 5000 vertices each, on nodes that keep no vectors in memory
(`--graph-vector-memory 0`), so that both shards answer from their HNSW index (not
the exact scan kept for small tables, nor memory) and the gateway merges two top-k
lists.
50 queries near the data; recall@10 against numpy's exact cosine top 10 must be at
least 0.95 (BRIEF section 8, issue 11)."""

from __future__ import annotations

import json

import numpy as np

from tests.support.processes import Cluster, wait_until
from torua.graph import rules
from torua.graph.kuzu_index import EXACT_VECTOR_BELOW

GRAPH = "recall"
DIM = 384
VECTORS = 10_000
SHARDS = 2
QUERIES = 50
K = 10
LINES_PER_REQUEST = 1000
NDJSON = {"Content-Type": "application/x-ndjson"}


def clustered(rng: np.random.Generator, n: int, dim: int, centres: int = 40) -> np.ndarray:
    """`n` vectors around `centres` random centres, the spread about as wide as the gaps
    between centres: many near neighbours at similar distances (a hard case for HNSW)."""
    middle = rng.standard_normal((centres, dim)).astype(np.float32)
    which = rng.integers(0, centres, n)
    return middle[which] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)


def balanced_ids(n: int, shards: int) -> list[str]:
    """`n` vertex ids, exactly n / shards on each shard."""
    per = n // shards
    chosen: dict[int, list[str]] = {s: [] for s in range(shards)}
    i = 0
    while any(len(ids) < per for ids in chosen.values()):
        vid = f"v{i}"
        i += 1
        shard = rules.vertex_shard(GRAPH, vid, shards)
        if len(chosen[shard]) < per:
            chosen[shard].append(vid)
    return [vid for s in range(shards) for vid in chosen[s]]


def test_vector_search_recall_at_10_against_exact_numpy_search(group, nats_url):
    assert VECTORS // SHARDS >= EXACT_VECTOR_BELOW, "each shard must answer from its HNSW index"
    c = Cluster(group, nats_url, shards=SHARDS)
    c.extra_args = lambda who: ["--graph-vector-memory", "0"] if who.startswith("n") else []  # no vectors in memory: HNSW answers
    c.start(nodes=2)
    rng = np.random.default_rng(20261204)
    data = np.round(clustered(rng, VECTORS, DIM), 4)
    ids = balanced_ids(VECTORS, SHARDS)
    rng.shuffle(ids)

    assert c.json("PUT", f"/graphs/{GRAPH}", {"vector_dim": DIM, "metric": "cosine"})[0] == 201
    for start in range(0, VECTORS, LINES_PER_REQUEST):
        body = b"".join(
            json.dumps({"vertex": {"id": ids[i], "label": "Doc", "embedding": data[i].tolist()}}).encode() + b"\n"
            for i in range(start, min(VECTORS, start + LINES_PER_REQUEST))
        )
        status, raw, _ = c.request("POST", f"/graphs/{GRAPH}/import", body, NDJSON, timeout=60)
        answer = json.loads(raw)
        assert status == 200 and answer["errors"] == [] and answer["vertices"] == min(LINES_PER_REQUEST, VECTORS - start), answer

    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    # queries near the data: a data point moved by noise as large as the spread
    queries = data[rng.choice(VECTORS, QUERIES, replace=False)] + 0.8 * rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    queries = np.round(queries, 4)

    def search(q: np.ndarray) -> tuple[int, dict]:
        return c.json("POST", f"/graphs/{GRAPH}/search/vector", {"vector": q.tolist(), "k": K})

    # 503 while the shards' indexes are still being built after the import (504 when the
    # gateway's deadline passed while a shard caught up)
    status, first = wait_until(lambda: (r := search(queries[0]))[0] not in (503, 504) and r, 120, "the vector indexes to be built")
    assert status == 200, first
    found = 0
    for n, q in enumerate(queries):
        status, answer = (200, first) if n == 0 else search(q)
        assert status == 200, answer
        hits = answer["hits"]
        assert len(hits) == K
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True), "best first"
        exact = np.argsort(-(unit @ (q / np.linalg.norm(q))), kind="stable")[:K]
        truth = {ids[i] for i in exact}
        found += len(truth & {h["id"] for h in hits})
        # the score is the cosine similarity
        best = next(h for h in hits if h["id"] in truth) if truth & {h["id"] for h in hits} else None
        if best is not None:
            i = ids.index(best["id"])
            assert abs(best["score"] - float(unit[i] @ (q / np.linalg.norm(q)))) < 1e-3
    recall = found / (QUERIES * K)
    print(f"recall@{K} {recall:.3f}")
    assert recall >= 0.95, f"recall@{K} {recall:.3f} over {QUERIES} queries"
