"""`torua bench --failover`: how long a primary's shards stay unavailable after
kill -9, with replicas.

Starts its own nats-server and `torua up --replicas 2` (heartbeat 1 s, so the
target is under 3 heartbeats + 1 s = 4 s), writes continuously through
`torua.Client` to keys on every shard, kills the node n1 with SIGKILL, and
reports, for the shards n1 led, the time from the kill to the first write that
succeeded again on each, plus how many writes failed meanwhile. Several rounds
(n1, then n2, ...) give a spread; each restarts the node it killed first.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from torua.bench.procs import Stack, run_async
from torua.client import Client
from torua.keys import shard_for_key
from torua.protocol.errors import ToruaError
from torua.protocol.vocabulary import ShardState

HEARTBEAT = 1.0
TARGET = 3 * HEARTBEAT + 1.0


def _node_process(up_pid: int, node_id: str) -> psutil.Process:
    for child in psutil.Process(up_pid).children():
        cmd = child.cmdline()
        if "node" in cmd and "--id" in cmd and cmd[cmd.index("--id") + 1] == node_id:
            return child
    raise RuntimeError(f"node {node_id} not found under torua up")


async def _round(db: Client, nats_url: str, up_pid: int, victim: str, rounds_dir: Path) -> dict:
    shard_map = db._maps.current  # noqa: SLF001 (the bench reads the client's map on purpose)
    assert shard_map is not None
    led = [e.shard_id for e in shard_map.shards if e.primary == victim]
    keys = {}
    for i in range(100000):
        key = f"failover/{i}"
        shard = shard_for_key(key, shard_map.num_shards)
        if shard in led and shard not in keys:
            keys[shard] = key
        if len(keys) == len(led):
            break
    # per shard: when each successful write completed; the longest gap around the
    # kill is how long a writer of that shard was kept waiting
    completed: dict[int, list[float]] = {s: [] for s in keys}
    failures = 0
    killed_at: float | None = None
    stop = asyncio.Event()

    async def writer(shard: int, key: str) -> None:
        nonlocal failures
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await db.put(key, str(n).encode())
                completed[shard].append(time.monotonic())
            except ToruaError:
                failures += 1

    tasks = [asyncio.ensure_future(writer(s, k)) for s, k in keys.items()]
    await asyncio.sleep(1.0)  # steady writes before the fault (bench pacing, not synchronisation)
    proc = _node_process(up_pid, victim)
    argv = proc.cmdline()
    killed_at = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    deadline = killed_at + 30
    def recovered() -> bool:
        return all(any(t > killed_at for t in times) for times in completed.values())

    while not recovered() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a few more writes after recovery
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    # bring the node back so the next round starts from a whole cluster
    log = open(rounds_dir / f"{victim}.log", "ab")
    restarted = psutil.Popen(argv, stdout=log, stderr=log, stdin=None)
    log.close()
    times = []
    for shard_times in completed.values():
        around = [t for t in shard_times if t > killed_at - 1.0]
        gaps = [b - a for a, b in zip(around, around[1:])]
        if gaps and any(t > killed_at for t in around):
            times.append(max(gaps))
    return {"victim": victim, "shards": len(led), "recovered": len(times), "failed_writes": failures,
            "max_s": round(max(times), 3) if times else None, "median_s": round(statistics.median(times), 3) if times else None,
            "pid": restarted.pid}


def run_failover(args) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="torua-failover-"))
    stack = Stack(workdir, insecure=getattr(args, "insecure", False))
    restarted: list[int] = []
    try:
        nats_url = stack.start_nats("nats")
        http = stack.start_torua(nats_url, args.commit, replicas=2)
        up_pid = next(p.pid for name, p in stack.procs if name == "torua-up")
        print(f"torua bench --failover: cluster with 2 copies per shard at {http}; heartbeat {HEARTBEAT:g} s, target < {TARGET:g} s", flush=True)

        async def rounds() -> list[dict]:
            out = []
            async with Client(nats_url, api_key=stack.api_key) as db:
                for victim in ("n1", "n2", "n3")[: getattr(args, "failover_rounds", 3)]:
                    await db._maps.refresh()  # noqa: SLF001
                    # wait for the previous victim to be back in sync (green) before the next fault
                    for _ in range(600):
                        m = db._maps.current  # noqa: SLF001
                        if m and all(sorted(e.in_sync) == sorted(e.copies) and e.state == ShardState.ACTIVE for e in m.shards):
                            break
                        await asyncio.sleep(0.1)
                        await db._maps.refresh()  # noqa: SLF001
                    r = await _round(db, nats_url, up_pid, victim, workdir)
                    restarted.append(r.pop("pid"))
                    print(f"  kill -9 {victim}: {r['shards']} shards failed over, unavailable at most {r['max_s']} s "
                          f"(median {r['median_s']} s), {r['failed_writes']} writes refused meanwhile", flush=True)
                    out.append(r)
            return out

        results = run_async(rounds())
        worst = max((r["max_s"] or 0) for r in results)
        print(f"torua bench --failover: worst {worst} s against the target {TARGET:g} s "
              f"({'met' if worst < TARGET else 'missed'})", flush=True)
        Path(args.json).write_text(json.dumps({"heartbeat_s": HEARTBEAT, "target_s": TARGET, "rounds": results}, indent=2))
        print(f"torua bench: results written to {args.json}", flush=True)
        return 0
    finally:
        for pid in restarted:
            try:
                p = psutil.Process(pid)
                p.terminate()
                p.wait(10)
            except psutil.Error:
                pass
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
