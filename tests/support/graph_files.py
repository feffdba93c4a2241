"""The graph rows of a real cluster's shard copies, read from the nodes' files (each
copy's `shard.db`, opened read-only while the node runs): what the fault tests scan
to check the edge invariant of BRIEF section 8 on every copy of every shard."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.graph_client import GraphScan
from tests.support.processes import Cluster
from torua.graph.rows import EdgeRow, read_rows
from torua.storage.writer import DB_FILENAME


@dataclass
class CopyRows:
    """One copy's rows of one graph."""

    vertices: list[str] = field(default_factory=list)
    edges: list[EdgeRow] = field(default_factory=list)
    outbox: int = 0


def copy_directory(cluster: Cluster, node: str, shard: int) -> Path:
    """Where `node` keeps its copy of `shard` (`--data-dir` is the node's id under the workdir)."""
    return cluster.group.workdir / node / "shards" / str(shard)


def read_copy(directory: Path, uid: str) -> CopyRows:
    """The graph `uid`'s rows in the copy at `directory`, as one read transaction."""
    uri = f"{(directory / DB_FILENAME).resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as conn, read_rows(conn) as rows:
        out = CopyRows(
            vertices=[v.id for v in rows.vertex_rows(uid, with_embedding=False)],
            edges=list(rows.edge_rows(uid)),
        )
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'g_outbox'").fetchone():
            out.outbox = conn.execute("SELECT count(*) FROM g_outbox WHERE uid = ?", (uid,)).fetchone()[0]
        return out


@dataclass
class ClusterScan:
    """Every copy the shard map lists, read from its node's files."""

    copies: dict[int, dict[str, CopyRows]]  # shard -> node -> rows
    primaries: dict[int, str]

    def primary_scan(self) -> GraphScan:
        scan = GraphScan()
        for shard, node in self.primaries.items():
            rows = self.copies[shard][node]
            scan.vertices.update({v: shard for v in rows.vertices})
            scan.rows[shard] = rows.edges
            scan.outbox[shard] = rows.outbox
        return scan

    def differ(self) -> list[str]:
        """Copies whose rows are not their primary's."""
        out = []
        for shard, copies in sorted(self.copies.items()):
            expected = copies[self.primaries[shard]]
            for node, rows in sorted(copies.items()):
                if rows != expected:
                    out.append(
                        f"shard {shard}: {node}'s copy ({len(rows.vertices)} vertices, {len(rows.edges)} edge rows, outbox {rows.outbox}) "
                        f"differs from primary {self.primaries[shard]}'s ({len(expected.vertices)}, {len(expected.edges)}, {expected.outbox})"
                    )
        return out


def scan_cluster(cluster: Cluster, uid: str) -> ClusterScan:
    """Every copy of every shard as the current map places them (primary and replicas)."""
    copies: dict[int, dict[str, CopyRows]] = {}
    primaries: dict[int, str] = {}
    for shard in cluster.json("GET", "/shards")[1]["shards"]:
        sid = shard["shard_id"]
        assert shard["primary"], f"shard {sid} has no primary: {shard}"
        primaries[sid] = shard["primary"]
        copies[sid] = {node: read_copy(copy_directory(cluster, node, sid), uid) for node in [shard["primary"], *shard["replicas"]]}
    return ClusterScan(copies, primaries)
