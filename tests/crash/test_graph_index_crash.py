"""The graph index after SIGKILL at random points: a process writes graph batches
(applied at once, or lazily with catch-ups and rebuilds) and is killed; then its
Kuzu file, opened as it was left, holds exactly the log's graph at the file's
applied seq (or is marked to be built again), and the shard reopened brings the index
to the log's end."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

from tests.support import graph_rows_model
from tests.support.graph_index_shard import SMALL, expected_at, expected_now, open_shard
from tests.support.processes import wait_until
from torua.graph.index import FILENAME
from torua.graph.kuzu_index import RISKY_SUFFIX, IndexDamaged, KuzuGraphs

REPO = Path(__file__).resolve().parents[2]
RUNS = 8


def last_logged(directory: Path) -> int:
    with closing(sqlite3.connect(directory / "shard.db")) as conn:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM oplog").fetchone()[0])


def index_as_left(directory: Path) -> tuple[str, int | None, dict]:
    """The index file as the killed process left it, opened as GraphIndex opens it (its
    last checkpoint, the WAL dropped): ("ok", its seq, its graphs' rows), or ("risky" |
    "damaged" | "none", None, {}): killed during a checkpoint, unopenable, no file."""
    path = directory / FILENAME
    if Path(f"{path}{RISKY_SUFFIX}").exists():
        return "risky", None, {}
    KuzuGraphs.discard_wal(path)  # as GraphIndex does: its last checkpoint
    try:
        kuzu = KuzuGraphs.open(path, SMALL, 1, create=False)
    except IndexDamaged:
        return "damaged", None, {}
    except FileNotFoundError:
        return "none", None, {}
    try:
        return "ok", kuzu.applied_seq, {uid: kuzu.dump(uid) for uid in ("g1", "g2")}
    finally:
        kuzu.close()


async def test_kills_at_random_points_leave_an_index_that_is_the_log_at_its_seq(tmp_path: Path, children: list) -> None:
    rng = random.Random(2026)
    outcomes: dict[str, int] = {}
    started = time.monotonic()
    for run in range(RUNS):
        directory = tmp_path / f"shard{run % 4}"  # each shard killed and reopened twice
        mode = ("direct", "lazy")[run % 2]
        proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "tests.support.graph_index_child", str(directory), mode, str(run)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        children.append(proc)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        acks = rng.randint(3, 60)
        wait_until(lambda: sum(line.startswith("ack") for line in lines) >= acks or proc.poll() is not None, 120, f"{acks} batches written")
        proc.kill()
        proc.wait(10)
        reader.join(10)
        assert proc.returncode == -9, proc.stderr.read()[-4000:]  # type: ignore[union-attr]
        state, seq, rows = index_as_left(directory)
        outcomes[f"{mode}/{state}"] = outcomes.get(f"{mode}/{state}", 0) + 1
        if state == "ok":
            assert seq is not None and seq <= last_logged(directory)
            for uid in ("g1", "g2"):
                assert rows[uid] == expected_at(directory, seq, uid), (run, mode, uid, seq)
        with graph_rows_model.registered():
            store, index = open_shard(directory, create=False, idle_s=3600)
            try:
                for uid in ("g1", "g2"):
                    got, want = index.dump(uid, time.monotonic() + 120), expected_now(store, uid)
                    assert got == want, (run, mode, uid, index.stats(), {k: (len(got.get(k, ())), len(v)) for k, v in want.items()}, state, seq)
                assert index.stats()["applied_seq"] == store.last_seq()
            finally:
                await store.close()
    print(f"\n{RUNS} kills in {time.monotonic() - started:.0f} s; the index as left: {outcomes}")
    assert sum(n for k, n in outcomes.items() if k.endswith("/ok")) >= RUNS // 2
