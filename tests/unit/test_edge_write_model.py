"""The edge-write model of the bulk path (torua.bench.edge_write_model) writes what it
says: every way leaves each edge's out-half committed on A and its in-half confirmed
on B, with one log row per edge and step today and one per batch and step otherwise."""

import sqlite3
from contextlib import closing

import pytest

from torua.bench import edge_write_model as model


@pytest.mark.parametrize("way,log_rows", [("per-edge ops (today)", 4 * 1200), ("ops of many edges", 4 * 3), ("floor (each half written once)", 2 * 3)])
def test_every_way_settles_every_edge_and_logs_as_it_says(tmp_path, way, log_rows):
    edges = model.edges_of(300, 1200)
    assert len(set(edges)) == 1200
    _, settled = model.run(way, tmp_path / "shards", 300, edges)
    assert settled == (1200, 1200)
    logged = 0
    for name in ("a.db", "b.db"):
        with closing(sqlite3.connect(tmp_path / "shards" / name)) as conn:
            logged += conn.execute("SELECT count(*) FROM oplog").fetchone()[0]
            assert conn.execute("SELECT count(*) FROM g_edge").fetchone()[0] == 1200
    assert logged == log_rows
