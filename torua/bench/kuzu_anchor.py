"""The anchor of `torua bench --graph`: one embedded Kuzu database in one process doing
the work the bench asks of Torua, with its fastest write path (what a user would pick
instead of Torua). Run by the bench as its own process:

    python -m torua.bench.kuzu_anchor WORKDIR

It reads `WORKDIR/{graph-vertices,graph-edges,vectors}.ndjson`, `WORKDIR/anchor-input.json`
(traversal seeds, requests per figure, efs) and `WORKDIR/queries.npy`, and writes its
figures to `WORKDIR/anchor-result.json`.

- Import with the same semantics as Torua's (importing the same file twice changes
  nothing): parse the NDJSON, look up which vertex ids and edge keys exist already,
  `COPY ... FROM` a pyarrow table of the new ones (the fastest path, notes §4) and
  SET the changed ones. Timed twice: into the empty database, then the same files again.
- 2-hop traversal from one seed: `MATCH p = (a {id})-[* SHORTEST 1..2]->(b)`, hops
  and properties returned, at most 1000 rows (Torua's default limit).
- Vector top 10: `COPY` of every embedding then `CREATE_VECTOR_INDEX` (cosine), queried
  with `QUERY_VECTOR_INDEX` at the efs Torua uses.

This is a bench anchor, not product code: it imports `kuzu` on purpose (the product's
only Kuzu module stays `torua.graph.kuzu_index`).
"""

from __future__ import annotations

import importlib.util  # noqa: F401  kuzu 0.11.3 needs it for COPY FROM a pyarrow table
import json
import sys
import time
from pathlib import Path

import kuzu
import numpy as np
import psutil
import pyarrow as pa

from torua.bench.load import percentile
from torua.gc_settings import settle_gc

COPY_ROWS = 200_000


def _rows(conn: kuzu.Connection, query: str, params: dict | None = None) -> list[list]:
    result = conn.execute(query, params or {})
    try:
        return result.get_all()
    finally:
        result.close()


def _lines(path: Path, kind: str) -> list[dict]:
    with open(path, "rb") as f:
        return [json.loads(line)[kind] for line in f if line.strip()]


def import_graph(conn: kuzu.Connection, vertices_path: Path, edges_path: Path) -> dict:
    """The idempotent import of both files: (vertices, edges) new and changed."""
    vertices = {v["id"]: (v.get("label", ""), json.dumps(v.get("properties") or {}, separators=(",", ":"))) for v in _lines(vertices_path, "vertex")}
    known = {r[0]: (r[1], r[2]) for r in _rows(conn, "MATCH (v:V) RETURN v.id, v.label, v.props")}
    new_v = [vid for vid in vertices if vid not in known]
    changed_v = [vid for vid in vertices if vid in known and known[vid] != vertices[vid]]
    for i in range(0, len(new_v), COPY_ROWS):
        part = new_v[i : i + COPY_ROWS]
        _rows(conn, "COPY V FROM $t", {"t": pa.table({
            "id": pa.array(part, pa.string()),
            "label": pa.array([vertices[v][0] for v in part], pa.string()),
            "props": pa.array([vertices[v][1] for v in part], pa.string()),
        })})
    for vid in changed_v:
        _rows(conn, "MATCH (v:V {id: $id}) SET v.label = $l, v.props = $p", {"id": vid, "l": vertices[vid][0], "p": vertices[vid][1]})
    edges = {}
    for e in _lines(edges_path, "edge"):
        edges[(e["src"], e["type"], e["dst"])] = (json.dumps(e.get("properties") or {}, separators=(",", ":")), float(e.get("weight", 1.0)))
    have = {(r[0], r[1], r[2]): (r[3], r[4]) for r in _rows(conn, "MATCH (a:V)-[e:E]->(b:V) RETURN a.id, e.type, b.id, e.props, e.weight")}
    new_e = [k for k in edges if k not in have]
    changed_e = [k for k in edges if k in have and have[k] != edges[k]]
    for i in range(0, len(new_e), COPY_ROWS):
        part = new_e[i : i + COPY_ROWS]
        _rows(conn, "COPY E FROM $t", {"t": pa.table({
            "from": pa.array([k[0] for k in part], pa.string()),
            "to": pa.array([k[2] for k in part], pa.string()),
            "type": pa.array([k[1] for k in part], pa.string()),
            "props": pa.array([edges[k][0] for k in part], pa.string()),
            "weight": pa.array([edges[k][1] for k in part], pa.float64()),
        })})
    for s, t, d in changed_e:
        _rows(conn, "MATCH (a:V {id: $s})-[e:E]->(b:V {id: $d}) WHERE e.type = $t SET e.props = $p, e.weight = $w",
              {"s": s, "t": t, "d": d, "p": edges[(s, t, d)][0], "w": edges[(s, t, d)][1]})
    return {"elements": len(vertices) + len(edges), "new": len(new_v) + len(new_e), "changed": len(changed_v) + len(changed_e)}


def import_vectors(conn: kuzu.Connection, path: Path, dim: int) -> int:
    docs = _lines(path, "vertex")
    if not docs:
        return 0
    flat = np.asarray([d["embedding"] for d in docs], dtype=np.float32).ravel()
    _rows(conn, "COPY D FROM $t", {"t": pa.table({
        "id": pa.array([d["id"] for d in docs], pa.string()),
        "label": pa.array([d.get("label", "") for d in docs], pa.string()),
        "props": pa.array([json.dumps(d.get("properties") or {}) for d in docs], pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat), dim),
    })})
    _rows(conn, "CALL CREATE_VECTOR_INDEX('D', 'd_idx', 'embedding', metric := 'cosine')")
    return len(docs)


def _timed(fn, n: int) -> tuple[list[float], list]:
    times, answers = [], []
    for i in range(n):
        t0 = time.perf_counter()
        answers.append(fn(i))
        times.append(time.perf_counter() - t0)
    return sorted(times), answers


def _figure(times: list[float]) -> dict:
    total = sum(times)
    return {"requests": len(times), "p50_ms": round(percentile(times, 0.5) * 1000, 3), "p99_ms": round(percentile(times, 0.99) * 1000, 3),
            "throughput": round(len(times) / total, 1) if total else 0.0}


def main(workdir: Path) -> None:
    spec = json.loads((workdir / "anchor-input.json").read_text())
    queries = np.load(workdir / "queries.npy")
    db_path = workdir / "anchor" / "graph.kuzu"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db = kuzu.Database(str(db_path), buffer_pool_size=spec["buffer_pool_bytes"])
    conn = kuzu.Connection(db)
    dim = int(spec["dim"])
    _rows(conn, "CREATE NODE TABLE V(id STRING PRIMARY KEY, label STRING, props STRING)")
    _rows(conn, "CREATE REL TABLE E(FROM V TO V, type STRING, props STRING, weight DOUBLE DEFAULT 1.0)")
    _rows(conn, f"CREATE NODE TABLE D(id STRING PRIMARY KEY, label STRING, props STRING, embedding FLOAT[{dim}])")
    out: dict = {"kuzu": kuzu.__version__}
    vertices, edges, vectors = workdir / "graph-vertices.ndjson", workdir / "graph-edges.ndjson", workdir / "vectors.ndjson"
    for name in ("import", "reimport"):
        t0 = time.perf_counter()
        done = import_graph(conn, vertices, edges)
        seconds = time.perf_counter() - t0
        out[name] = {**done, "seconds": round(seconds, 3), "elements_per_s": round(done["elements"] / seconds, 1)}
        print(f"anchor {name}: {done} in {seconds:.1f} s", flush=True)
    out["counts"] = {"vertices": _rows(conn, "MATCH (v:V) RETURN count(*)")[0][0], "edges": _rows(conn, "MATCH ()-[e:E]->() RETURN count(*)")[0][0]}

    seeds = spec["seeds"]
    traverse = "MATCH p = (a:V {id: $id})-[:E* SHORTEST 1..2]->(b:V) RETURN b.id, b.label, b.props, length(p) LIMIT 1000"
    _timed(lambda i: _rows(conn, traverse, {"id": seeds[i % len(seeds)]}), min(20, spec["requests"]))  # warm-up
    times, answers = _timed(lambda i: _rows(conn, traverse, {"id": seeds[i % len(seeds)]}), spec["requests"])
    out["traverse"] = {**_figure(times), "sizes": [len(a) for a in answers[: len(seeds)]]}
    print(f"anchor 2-hop traversal: {out['traverse']['p50_ms']} ms p50", flush=True)

    t0 = time.perf_counter()
    n = import_vectors(conn, vectors, dim)
    out["vector_import"] = {"vectors": n, "seconds": round(time.perf_counter() - t0, 3)}
    print(f"anchor vectors: {n} imported and indexed in {out['vector_import']['seconds']} s", flush=True)
    if n:
        search = ("CALL QUERY_VECTOR_INDEX('D', 'd_idx', $v, $k, efs := %d) RETURN node.id, node.label, node.props, distance "
                  "ORDER BY distance LIMIT $k" % int(spec["efs"]))
        ask = lambda i: [r[0] for r in _rows(conn, search, {"v": queries[i % len(queries)].tolist(), "k": 10})]  # noqa: E731
        _timed(ask, min(10, len(queries)))
        times, answers = _timed(ask, len(queries))
        out["vector"] = {**_figure(times), "hits": answers}
        print(f"anchor vector top 10: {out['vector']['p50_ms']} ms p50", flush=True)
    out["rss_bytes"] = psutil.Process().memory_info().rss
    conn.close()
    db.close()
    (workdir / "anchor-result.json").write_text(json.dumps(out))


if __name__ == "__main__":
    settle_gc()  # as a Torua process does (torua.gc_settings): the ratio compares like with like
    main(Path(sys.argv[1]))
