"""Edges across shards under faults (BRIEF section 8, docs/design/graph.md section 4),
in memory: the real coordinator and nodes over `tests.support.memory_bus`, with
concurrent edge puts and deletes and vertex deletes and puts over every shard while
messages are lost and delayed, a primary is paused and a node crashes. Afterwards,
once repair has run, a scan of every shard's rows finds no half-edge and no edge to
a missing vertex; every acknowledged edge whose ends still exist is on both sides,
and every acknowledged delete stands. The seed is printed (TORUA_SIM_SEED replays
the scenario's choices)."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.support.graph_client import (
    GraphClient,
    GraphScan,
    graph_copies_compared,
    in_catalog,
    logged_for,
    primaries,
    scan_rows,
)
from tests.support.graph_history import Attempt, History, check_acknowledged
from tests.support.sim_cluster import SimCluster, sim_seed, wait_for
from torua.protocol.errors import ToruaError
from torua.protocol.messages import GraphRef

GRAPH = GraphRef("net", "uid-net")
VERTICES = [f"v{i}" for i in range(24)]
HEAL_TIMEOUT = 30.0


async def attempt(cluster: SimCluster, history: History, kind: str, target: tuple[str, ...], call) -> None:
    a = Attempt(kind, target, cluster.now())
    history.attempts.append(a)  # recorded before it is sent
    try:
        await call()
    except ToruaError as exc:
        a.outcome = f"failed:{exc.code}"
    except Exception as exc:  # anything else: unknown too
        a.outcome = f"failed:{type(exc).__name__}"
    else:
        a.outcome = "acked"
    a.finished = cluster.now()


async def edge_worker(cluster: SimCluster, g: GraphClient, history: History, keys: list[tuple[str, str, str]], rng: random.Random, stop: asyncio.Event) -> None:
    """Puts and deletes of its own edges, one at a time (so each key's history is in order)."""
    while not stop.is_set():
        key = rng.choice(keys)
        if rng.random() < 0.65:
            await attempt(cluster, history, "put", key, lambda: g.put_edge(*key, {"by": key[1]}))
        else:
            await attempt(cluster, history, "delete", key, lambda: g.delete_edge(*key))
        await asyncio.sleep(0.005)


async def vertex_worker(cluster: SimCluster, g: GraphClient, history: History, rng: random.Random, stop: asyncio.Event) -> None:
    while not stop.is_set():
        v = rng.choice(VERTICES)
        if rng.random() < 0.35:
            await attempt(cluster, history, "delete", (v,), lambda: g.delete_vertex(v))
        else:
            await attempt(cluster, history, "put", (v,), lambda: g.put_vertex(v, "V"))
        await asyncio.sleep(0.06)




@pytest.mark.timeout(150)
async def test_edges_across_shards_converge_under_loss_pause_and_crash(tmp_path):
    seed = sim_seed()
    cluster = SimCluster(tmp_path, seed, nodes=3, shards=4, replicas=2, graph_repair_interval=0.3, graph_peer_timeout=0.5)
    rng = random.Random(seed)
    stop = asyncio.Event()
    history = History()
    try:
        await cluster.start()
        async with asyncio.timeout(135):
            assert cluster.gateway is not None
            g = GraphClient(cluster.gateway.router, GRAPH, timeout=3.0)
            await in_catalog(cluster, GRAPH)
            for v in VERTICES:
                await g.put_vertex(v, "V")
            owned = [[(rng.choice(VERTICES), f"t{w}", rng.choice(VERTICES)) for _ in range(20)] for w in range(3)]
            keys = sorted({k for ks in owned for k in ks})
            workers = [asyncio.ensure_future(edge_worker(cluster, g, history, list(set(ks)), random.Random(rng.random()), stop)) for ks in owned]
            workers.append(asyncio.ensure_future(vertex_worker(cluster, g, history, random.Random(rng.random()), stop)))

            def acked() -> int:
                return sum(1 for a in history.attempts if a.outcome == "acked")

            await wait_for(lambda: acked() >= 60, 15, "operations acknowledged before the faults")
            # The fault schedule is timing, not synchronisation: each lasts a while, writes go on.
            cluster.bus.set_faults("*", "*", drop=0.05, delay=(0.0, 0.06))
            cluster.note("5% of messages dropped, 0-60 ms delay (so some overtake others), on every link")
            await asyncio.sleep(4.0)
            cluster.bus.heal()
            victim = cluster.map.shards[0].primary
            assert victim is not None
            cluster.pause(victim)
            cluster.note(f"{victim} paused")
            await asyncio.sleep(2.0)
            cluster.resume(victim)
            cluster.note(f"{victim} resumed")
            await cluster.wait_green(HEAL_TIMEOUT)
            crashed = cluster.map.shards[1].primary
            assert crashed is not None
            before = acked()
            await cluster.crash(crashed)
            cluster.note(f"{crashed} crashed (SIGKILL)")
            await wait_for(lambda: acked() >= before + 20, HEAL_TIMEOUT, "operations acknowledged with a node down")
            await cluster.restart(crashed)
            cluster.note(f"{crashed} restarted")
            await cluster.wait_green(HEAL_TIMEOUT)
            healed = acked()
            await wait_for(lambda: acked() >= healed + 30, HEAL_TIMEOUT, "operations acknowledged after the faults")
            stop.set()
            await asyncio.gather(*workers)
            await cluster.wait_green(HEAL_TIMEOUT, caught_up=True)

            def settled() -> GraphScan | None:
                scan = scan_rows(primaries(cluster), GRAPH.uid)  # type: ignore[arg-type]
                return None if scan.unsettled() else scan

            try:
                scan = await wait_for(settled, HEAL_TIMEOUT, "repair to settle every edge")
            except AssertionError:
                left = scan_rows(primaries(cluster), GRAPH.uid)  # type: ignore[arg-type]
                raise AssertionError(f"seed {seed}: not settled: {left.unsettled()[:20]}; {cluster.describe()}") from None
            problems = scan.problems(GRAPH.name, cluster.map.num_shards)
            checked, missing = check_acknowledged(history, scan, keys)
            outcomes: dict[str, int] = {}
            for a in history.attempts:
                outcomes[f"{a.kind}:{a.outcome}"] = outcomes.get(f"{a.kind}:{a.outcome}", 0) + 1
            print(f"attempts {outcomes}; {len(scan.edges())} edges, {len(scan.vertices)} vertices at the end; {checked} acknowledged edges checked; bus {cluster.bus.stats}")
            assert checked > 10, "too few acknowledged edges to check: the scenario tested little"
            if problems + missing:
                named = {k for k in keys if any(str(k) in p for p in problems + missing)}
                trace = logged_for(cluster, named | {(end,) for k in named for end in (k[0], k[2])})
                lines = [f"{a.kind} {a.target} {a.started:.2f}-{a.finished:.2f}s: {a.outcome}" for a in history.attempts if a.target in named or any(a.target == (end,) for k in named for end in (k[0], k[2]))]
                raise AssertionError(f"seed {seed}:\n" + "\n".join(problems + missing + ["attempts:", *lines, "logged:", *trace]))
            await cluster.wait_green(HEAL_TIMEOUT, caught_up=True)
            assert cluster.compare_copies()[1] == [] and await graph_copies_compared(cluster) == []
    finally:
        stop.set()
        await cluster.stop()
