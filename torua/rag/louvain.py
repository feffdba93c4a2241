"""Louvain communities with Kuzu's algo extension, in an in-memory database made
for one run (the adapter: the one place that knows how; `torua.rag.communities`
says what the answer means). One thread, so the same graph always gives the same
communities.

>>> sorted(detect([("a", "b"), ("b", "c"), ("a", "c"), ("d", "e"), ("e", "f"), ("d", "f"), ("c", "d")]).items())
[('a', 0), ('b', 0), ('c', 0), ('d', 1), ('e', 1), ('f', 1)]
"""

from __future__ import annotations

from collections.abc import Sequence

import kuzu
import pyarrow as pa

BUFFER_POOL_BYTES = 256 << 20
MAX_DB_BYTES = 8 << 30  # address space reserved, not memory used


def detect(edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Every endpoint of `edges` (undirected; parallel edges weigh more) -> its community id."""
    nodes = sorted({n for edge in edges for n in edge})
    if not nodes:
        return {}
    db = kuzu.Database(":memory:", buffer_pool_size=BUFFER_POOL_BYTES, max_num_threads=1, max_db_size=MAX_DB_BYTES)
    conn = kuzu.Connection(db)
    try:
        conn.execute("CREATE NODE TABLE N(id STRING PRIMARY KEY)")
        conn.execute("CREATE REL TABLE R(FROM N TO N)")
        conn.execute("COPY N FROM $t", {"t": pa.table({"id": nodes})})
        conn.execute("COPY R FROM $t", {"t": pa.table({"from": [a for a, _ in edges], "to": [b for _, b in edges]})})
        conn.execute("CALL project_graph('G', ['N'], ['R'])")
        result = conn.execute("CALL louvain('G') RETURN node.id, louvain_id")
        assert not isinstance(result, list)
        try:
            return {str(id): int(found) for id, found in result.get_all()}
        finally:
            result.close()
    finally:
        conn.close()
        db.close()
