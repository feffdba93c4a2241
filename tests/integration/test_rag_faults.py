"""GraphRAG ingestion while a node primary is killed (kill -9) on a cluster with two
copies of each shard and two workers: every document of the job ends complete, and
the corpus graph is whole: each relation's weight is its number of supporting
chunks, each entity is supported, and no edge is left half-made
(docs/design/graphrag.md sections 3 and 4)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.integration.test_rag_ingest import PEOPLE
from tests.support.processes import Cluster, ProcessGroup, start_nats, wait_until
from torua import Client
from torua.storage.writer import DB_FILENAME


@pytest.fixture
def replicated(tmp_path) -> Cluster:
    group = ProcessGroup(tmp_path)
    try:
        _, url = start_nats(group)
        cluster = Cluster(group, url, shards=8, replicas=2).start(nodes=3)
        workers = [cluster.start_worker(name, ["--ack-wait", "4"]) for name in ("w1", "w2")]
        wait_until(lambda: all("worker ready" in w.log() for w in workers), 60, "the workers to load their models")
        yield cluster
    finally:
        group.kill_all()


def primary_rows(cluster: Cluster, uid: str) -> tuple[dict, dict, set, set]:
    """Out-halves (key -> (weight, state)), in-halves (key -> state), support rows and
    entity ids of graph `uid`, from every shard's primary copy."""
    out, inn, supports, entities = {}, {}, set(), set()
    for shard in cluster.json("GET", "/shards")[1]["shards"]:
        path = Path(cluster.group.workdir) / shard["primary"] / "shards" / str(shard["shard_id"]) / DB_FILENAME
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            for src, type, dst, out_state, in_state, weight in conn.execute(
                "SELECT src, type, dst, out_state, in_state, weight FROM g_edge WHERE uid = ?", (uid,)
            ):
                if out_state is not None:
                    out[(src, type, dst)] = (weight, out_state)
                if in_state is not None:
                    inn[(src, type, dst)] = in_state
            supports |= set(conn.execute("SELECT src, type, dst, chunk FROM g_support WHERE uid = ?", (uid,)))
            entities |= {id for (id,) in conn.execute("SELECT id FROM g_vertex WHERE uid = ? AND label = 'Entity'", (uid,))}
    return out, inn, supports, entities


async def test_a_primary_killed_mid_ingest_loses_no_document_and_leaves_the_graph_whole(replicated):
    many = [{"id": f"{name}-{n}", "text": text} for n in range(5) for name, text in PEOPLE]
    async with Client(replicated.nats_url, timeout=10) as db:
        rag = db.rag("rag-faults")
        await rag.create(chunk_tokens=24, overlap_tokens=8)
        job = await rag.add(many)
        deadline = time.monotonic() + 60
        while (await rag.job(job))["done"] < 4:
            assert time.monotonic() < deadline, "no progress before the kill"
            await asyncio.sleep(0.05)
        replicated.nodes["n1"].kill()
        status = await rag.wait(job, timeout=180)
        assert (status["done"], status["failed"]) == (len(many), 0), status
        for item in many:
            held = await rag.document(item["id"])
            assert held is not None and held["status"] == "complete", item["id"]
        uid = (await db.graph("rag-faults").info())["uid"]

    seen: list[list[str]] = [[]]

    def whole():
        out, inn, supports, entities = primary_rows(replicated, uid)
        by_edge: dict[tuple, int] = {}
        for src, type, dst, _ in supports:
            if type:
                by_edge[(src, type, dst)] = by_edge.get((src, type, dst), 0) + 1
        related = {k: v for k, v in out.items() if k[1] == "RELATED"}
        problems = [f"{k}: weight {w}, state {s}, supports {by_edge.get(k, 0)}" for k, (w, s) in related.items() if s != "committed" or w != by_edge.get(k, 0)]
        problems += [f"{k}: supported, no edge" for k in by_edge if k not in related]
        problems += [f"{k}: out-half without its in-half" for k, (_, s) in out.items() if s == "committed" and inn.get(k) != "confirmed"]
        problems += [f"{k}: in-half without its out-half" for k in inn if k not in out]
        supported = {src for src, type, _, _ in supports if not type}
        problems += [f"entity {e}: no chunk supports it" for e in entities if e not in supported]
        problems += [f"entity {e}: supported, no vertex" for e in supported if e.startswith("e/") and e not in entities]
        seen[0] = problems
        return (not problems and related) or (problems and None)

    try:
        wait_until(whole, 30, "every relation to weigh its supports, every edge whole")
    except AssertionError:
        raise AssertionError("the corpus graph is not whole:\n" + "\n".join(seen[0][:20])) from None
