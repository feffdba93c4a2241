"""`torua.arrow_only.keep_pandas_out`: a node's graph index (built with COPY from Arrow
tables, searched by vector and text) and a worker's community run work in a process
that keeps pandas out, and pandas is never imported there. In a fresh interpreter:
this one may hold pandas already (other tests import it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from torua.arrow_only import keep_pandas_out
    assert keep_pandas_out() is True
    import importlib.util
    from torua.graph.indexing import EdgeRow, GraphSpec, IndexLimits, VertexRow
    from torua.graph.kuzu_index import KuzuGraphs
    from torua.rag.louvain import detect

    path = Path(sys.argv[1])
    spec = GraphSpec("u1", "g", 4, "cosine", ("text",))
    words = ["apple", "banana", "cherry", "damson"]
    vertices = [VertexRow(f"v{i}", "L", json.dumps({"text": f"{words[i]} common"}), [float(i == j) for j in range(4)]) for i in range(4)]
    edges = [EdgeRow("v0", "knows", "v1", "both", "committed", "{}", 1.0)]
    KuzuGraphs.build(path, IndexLimits(64 << 20, 1 << 30, 1), 1, 5, [spec], lambda uid: (vertices, edges))
    index = KuzuGraphs.open(path, IndexLimits(64 << 20, 1 << 30, 1), 1, create=False)
    try:
        vector = index.vector_search("u1", [0.0, 0.0, 1.0, 0.0], 1, "")
        docs, term_docs = index.text_stats("u1", "damson")
        text = index.text_search("u1", "damson", 2, "", docs, term_docs)
    finally:
        index.close()
    communities = detect([("a", "b"), ("b", "c"), ("c", "a"), ("x", "y")])
    print(json.dumps({
        "vector": vector, "text": [hit[0] for hit in text], "communities": len(set(communities.values())),
        "pandas": sys.modules.get("pandas", "absent") is not None, "spec": importlib.util.find_spec("pandas") is not None,
    }))
    """
)


def test_a_node_and_a_worker_keep_pandas_out_and_their_kuzu_work_still_runs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "graph.kuzu")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["vector"][0][0] == "v2" and out["vector"][0][1] == pytest.approx(1.0)
    assert out["text"] == ["v3"]
    assert out["communities"] == 2
    assert out["pandas"] is False and out["spec"] is False, "pandas was imported, or Kuzu would look for it"
