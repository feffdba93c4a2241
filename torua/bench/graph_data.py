"""The data `torua bench --graph` works on, from a seeded generator (pure: same sizes and
seed, same data), and the NDJSON files both Torua and the Kuzu anchor import.

- A directed graph of `vertices` vertices and `edges` distinct edges (no self loops):
  sources uniform, targets drawn from a power law (a few hubs, a long tail), one edge
  type `LINKS`, a small property document per vertex.
- A second vertex set of `vectors` clustered `dim`-float embeddings (vertices without
  edges), and `queries` query vectors near them.

>>> g = generate(200, 600, 50, 8, queries=3, seed=1)
>>> len(g.vertex_ids), len(g.edges), len(set(g.edges)), g.vectors.shape, g.queries.shape
(200, 600, 600, (50, 8), (3, 8))
>>> all(s != d for s, _, d in g.edges)
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EDGE_TYPE = "LINKS"
VERTEX_LABEL = "Node"
DOC_LABEL = "Doc"


@dataclass
class GraphData:
    vertex_ids: list[str]
    edges: list[tuple[str, str, str]]
    vector_ids: list[str]
    vectors: np.ndarray  # (n, dim) float32, rounded as written to the files
    queries: np.ndarray  # (q, dim) float32
    seeds: list[str]  # traversal seeds


def generate(vertices: int, edges: int, vectors: int, dim: int, queries: int = 100, seeds: int = 200, seed: int = 11) -> GraphData:
    rng = np.random.default_rng(seed)
    ids = [f"v{i}" for i in range(vertices)]
    wanted = min(edges, vertices * (vertices - 1))
    chosen: set[tuple[int, int]] = set()
    hubs = _perm(vertices, seed)  # which vertices the power law favours
    while len(chosen) < wanted:
        n = (wanted - len(chosen)) * 2
        src = rng.integers(0, vertices, n)
        dst = np.minimum((rng.pareto(1.2, n) * vertices / 50).astype(np.int64), vertices - 1)
        dst = hubs[dst]
        for s, d in zip(src.tolist(), dst.tolist()):
            if s != d and (s, d) not in chosen:
                chosen.add((s, d))
                if len(chosen) == wanted:
                    break
    edge_list = [(ids[s], EDGE_TYPE, ids[d]) for s, d in sorted(chosen)]
    centres = rng.standard_normal((max(1, vectors // 250), dim)).astype(np.float32)
    data = centres[rng.integers(0, len(centres), vectors)] + 0.8 * rng.standard_normal((vectors, dim)).astype(np.float32)
    data = np.round(data, 4).astype(np.float32)
    picks = rng.integers(0, max(1, vectors), queries)
    q = data[picks] + 0.8 * rng.standard_normal((queries, dim)).astype(np.float32) if vectors else np.zeros((queries, dim), np.float32)
    seed_ids = [ids[i] for i in rng.integers(0, vertices, seeds)] if vertices else []
    return GraphData(ids, edge_list, [f"d{i}" for i in range(vectors)], data, np.round(q, 4).astype(np.float32), seed_ids)


def _perm(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1).permutation(n)


def vertex_line(vid: str, i: int) -> dict:
    return {"vertex": {"id": vid, "label": VERTEX_LABEL, "properties": {"n": i, "name": f"vertex {i}"}}}


def write_files(data: GraphData, directory: Path) -> tuple[Path, Path, Path]:
    """graph-vertices.ndjson, graph-edges.ndjson and vectors.ndjson in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "graph-vertices.ndjson", directory / "graph-edges.ndjson", directory / "vectors.ndjson"
    with open(paths[0], "w") as f:
        for i, vid in enumerate(data.vertex_ids):
            f.write(json.dumps(vertex_line(vid, i)) + "\n")
    with open(paths[1], "w") as f:
        for s, t, d in data.edges:
            f.write(json.dumps({"edge": {"src": s, "type": t, "dst": d}}) + "\n")
    with open(paths[2], "w") as f:
        for vid, row in zip(data.vector_ids, data.vectors):
            f.write(json.dumps({"vertex": {"id": vid, "label": DOC_LABEL, "embedding": [round(float(x), 4) for x in row]}}) + "\n")
    return paths


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, ids: list[str], k: int) -> list[list[str]]:
    """Each query's `k` nearest ids by cosine similarity, exactly."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    out = []
    for q in queries:
        scores = unit @ (q / max(float(np.linalg.norm(q)), 1e-12))
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k] if len(scores) > k else np.arange(len(scores))
        out.append([ids[i] for i in top[np.argsort(-scores[top], kind="stable")]])
    return out


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    """Mean share of each query's true top k found."""
    if not truth:
        return 0.0
    return sum(len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)) / len(truth)
