"""Fault injection on real processes: concurrent writers while nodes are killed
(SIGKILL, then restarted with the same argv) or paused (SIGSTOP, then SIGCONT),
one node at a time, on a cluster with two copies of every shard.

Each writer owns its keys and gives every operation a sequence number that only
grows, so a value names exactly one attempted write (``w{writer}:{seq}``). After
the faults the cluster heals and every key is checked against what the writer
knows:

- the last acknowledged operation on a key, or an operation attempted after it
  (failed or timed out, so unknown), is what a read may return: an acknowledged
  put is never lost nor replaced by an older value, an acknowledged delete never
  comes back;
- a value that was never attempted for that key (a phantom) is never returned;
- once green, every copy of the shard (read from its SQLite file) holds what the
  primary serves, so losing any one node now would lose nothing either.

The seed is printed; set TORUA_FAULT_SEED to replay the same choices (the timing
of real processes is not replayable, the fault sequence is).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from tests.support import shard_db
from tests.support.history import Op, check_key, value_of
from tests.support.processes import Cluster, Proc, wait_until

NODES = ("n1", "n2", "n3")
WRITERS = 4
KEYS_PER_WRITER = 20
DELETING_WRITERS = (0, 1)  # these also delete now and then
DELETE_PROBABILITY = 0.15
MAX_FAULTS = 14
FAULT_WINDOW = 90.0  # seconds: no new fault starts after this
HEAL_TIMEOUT = 45.0  # one node back in every in-sync set
HTTP_TIMEOUT = 20.0  # urllib; the gateway itself gives up after 5 s



@dataclass
class FaultRecord:
    kind: str
    node: str
    hold: float
    started: float
    healed: float = 0.0


class KeyWriter(threading.Thread):
    """Writes (and maybe deletes) its own keys, one operation at a time, and records
    every attempt and its outcome. Values are unique per writer and increase."""

    def __init__(self, c: Cluster, index: int, seed: int, t0: float) -> None:
        super().__init__(daemon=True, name=f"writer-{index}")
        self.c, self.index, self.t0 = c, index, t0
        self.rng = random.Random(seed)
        self.deletes = index in DELETING_WRITERS
        self.ops: dict[int, Op] = {}
        self.stop_flag = threading.Event()
        self.acked_count = 0
        self.error: BaseException | None = None

    def key(self, seq: int) -> str:
        return f"w{self.index}-k{seq % KEYS_PER_WRITER}"

    def run(self) -> None:
        try:
            seq = 0
            while not self.stop_flag.is_set():
                seq += 1
                key = self.key(seq)
                if self.deletes and self.rng.random() < DELETE_PROBABILITY:
                    op = Op(seq, "delete", key, None)
                else:
                    op = Op(seq, "put", key, value_of(self.index, seq))
                op.started = time.monotonic() - self.t0
                self.ops[seq] = op  # recorded as attempted before it is sent
                try:
                    if op.kind == "put":
                        status = self.c.request("PUT", f"/data/{quote(key)}", op.value, timeout=HTTP_TIMEOUT)[0]
                    else:
                        status = self.c.request("DELETE", f"/data/{quote(key)}", timeout=HTTP_TIMEOUT)[0]
                except Exception as exc:  # timeout, connection reset: unknown
                    op.outcome, op.detail = "failed", f"{type(exc).__name__}: {exc}"
                else:
                    if status == 204:
                        op.outcome = "acked"
                        self.acked_count += 1
                    else:
                        op.outcome, op.detail = "failed", f"HTTP {status}"
                op.finished = time.monotonic() - self.t0
                if op.outcome == "failed":
                    # pacing only (a refused request returns at once while a shard fails over)
                    threading.Event().wait(0.05)
        except BaseException as exc:  # pragma: no cover - surfaced by the test
            self.error = exc

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(HTTP_TIMEOUT + 10)


def health(c: Cluster) -> dict:
    return c.json("GET", "/cluster/health")[1]


def node_info(c: Cluster, node_id: str) -> dict:
    status, body = c.json("GET", f"/nodes/{node_id}")
    assert status == 200, body
    return body


def healed(c: Cluster, node_id: str, pid: int) -> bool:
    """Green (every copy on a healthy node and in sync), and the faulty node is the
    process we expect, heartbeating again: a kill and restart faster than the
    coordinator notices must not pass for healed while the new process is not back."""
    h = health(c)
    if h["status"] != "green" or h["nodes_healthy"] != len(NODES):
        return False
    n = node_info(c, node_id)
    return n["status"] == "healthy" and n["pid"] == pid and n["missed_heartbeats"] == 0


@pytest.mark.timeout(300)
def test_acknowledged_writes_survive_kills_and_pauses(group, nats_url):
    seed = int(os.environ.get("TORUA_FAULT_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nfault-injection seed: {seed} (replay the fault choices with TORUA_FAULT_SEED={seed})")
    rng = random.Random(seed)
    t0 = time.monotonic()

    def now() -> float:
        return time.monotonic() - t0

    c = Cluster(group, nats_url, replicas=2).start(nodes=len(NODES))
    assert c.json("GET", "/shards")[1]["replication_factor"] == 2

    writers = [KeyWriter(c, i, rng.randrange(2**32), t0) for i in range(WRITERS)]
    for w in writers:
        w.start()
    faults: list[FaultRecord] = []
    paused: Proc | None = None  # a node stopped right now (resumed if the test fails)
    try:
        wait_until(lambda: all(w.acked_count >= 20 for w in writers), 30, "every writer to get writes acknowledged before the faults")
        fault_deadline = time.monotonic() + FAULT_WINDOW
        while len(faults) < MAX_FAULTS and time.monotonic() < fault_deadline:
            node_id = rng.choice(NODES)
            kind = rng.choice(("kill", "pause"))
            hold = rng.uniform(0.2, 3.0) if kind == "kill" else rng.uniform(1.0, 3.0)
            record = FaultRecord(kind, node_id, hold, now())
            faults.append(record)
            print(f"[{record.started:7.2f}s] fault {len(faults)}: {kind} {node_id}, hold {hold:.2f}s")
            proc = c.nodes[node_id]
            if kind == "kill":
                argv = proc.argv
                proc.kill()
                threading.Event().wait(hold)  # fault timing: how long the node stays dead
                proc = c.group.start(f"node-{node_id}", argv)
                c.nodes[node_id] = proc
            else:
                proc.pause()
                paused = proc
                threading.Event().wait(hold)  # fault timing: how long the node stays stopped
                proc.resume()
                paused = None
            wait_until(lambda: healed(c, node_id, proc.pid), HEAL_TIMEOUT, f"the cluster green again after {kind} of {node_id}", interval=0.1)
            record.healed = now()
            acked = {w.index: w.acked_count for w in writers}
            print(f"[{record.healed:7.2f}s]   green again after {record.healed - record.started:.2f}s; acked so far {sum(acked.values())}")
            threading.Event().wait(rng.uniform(0.3, 2.0))  # fault timing: healthy writing before the next fault
        # Writes go on after the last heal: no writer is stuck.
        before = {w.index: w.acked_count for w in writers}
        wait_until(lambda: all(w.acked_count >= before[w.index] + 10 for w in writers), 30, "every writer making progress after the last fault")
    finally:
        if paused is not None:
            paused.resume()
        for w in writers:
            w.stop()
    for w in writers:
        assert not w.is_alive(), f"writer {w.index} hangs (a request did not return within {HTTP_TIMEOUT}s)"
        assert w.error is None, f"writer {w.index} crashed: {w.error!r}"
    wait_until(lambda: health(c)["status"] == "green", HEAL_TIMEOUT, "the cluster green before the checks", interval=0.1)

    # ------------------------------------------------------------------ checks
    def read(key: str) -> tuple[int, bytes]:
        def attempt():
            status, body, _ = c.request("GET", f"/data/{quote(key)}", timeout=HTTP_TIMEOUT)
            return (status, body) if status in (200, 404) else None

        return wait_until(attempt, 20, f"a definite answer (200 or 404) for {key}", interval=0.1)

    problems: list[str] = []
    checks = copy_checks = 0
    served: dict[str, bytes | None] = {}
    for w in writers:
        by_key: dict[str, list[Op]] = {}
        for op in sorted(w.ops.values(), key=lambda o: o.seq):
            by_key.setdefault(op.key, []).append(op)
        for key in sorted(by_key):
            status, body = read(key)
            checks += 1
            served[key] = body if status == 200 else None
            problem = check_key(w.index, w.ops, key, by_key[key], served[key])
            if problem:
                problems.append(problem)

    # Green means every copy is in sync: each copy holds what the primary serves, so
    # the loss of any one node now would lose nothing either.
    shard_map = {s["shard_id"]: s for s in c.json("GET", "/shards")[1]["shards"]}
    for key, value in sorted(served.items()):
        shard_id = c.location(key)["shard_id"]
        entry = shard_map[shard_id]
        for node_id in [entry["primary"], *entry["replicas"]]:
            copy_checks += 1
            try:
                wait_until(lambda: shard_db.copy_value(c.group.workdir, node_id, shard_id, key) == value, 10, "copies to agree", interval=0.1)
            except AssertionError:
                try:
                    got = shard_db.copy_value(c.group.workdir, node_id, shard_id, key)
                except Exception as exc:  # no such file or table: the copy is not there at all
                    got = f"unreadable ({type(exc).__name__}: {exc})"
                problems.append(f"DIVERGED: {key} (shard {shard_id}) served as {value!r}, but the copy on {node_id} holds {got!r}; shard {entry}")

    all_ops = [op for w in writers for op in w.ops.values()]
    acked_puts = sum(1 for op in all_ops if op.kind == "put" and op.outcome == "acked")
    acked_deletes = sum(1 for op in all_ops if op.kind == "delete" and op.outcome == "acked")
    failed = sum(1 for op in all_ops if op.outcome == "failed")
    failed_kinds: dict[str, int] = {}
    for op in all_ops:
        if op.outcome == "failed":
            reason = op.detail.split(":")[0]
            failed_kinds[reason] = failed_kinds.get(reason, 0) + 1
    by_kind = {k: sum(1 for f in faults if f.kind == k) for k in ("kill", "pause")}
    print(
        f"operations: {len(all_ops)} attempted, {acked_puts} acked puts, {acked_deletes} acked deletes, "
        f"{failed} failed/unknown {failed_kinds}"
    )
    print(f"faults: {len(faults)} ({', '.join(f'{k}: {v}' for k, v in by_kind.items())}); sequence: "
          + ", ".join(f"{f.kind} {f.node} hold {f.hold:.2f}s healed in {f.healed - f.started:.2f}s" for f in faults))
    latencies = sorted(op.finished - op.started for op in all_ops if op.finished)
    slow = [op for op in all_ops if op.finished and op.finished - op.started > 1.0]
    print(
        f"latency: median {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1]:.2f}s, "
        f"{len(slow)} ops over 1s: " + ", ".join(f"{op.kind} {op.key} at {op.started:.2f}s took {op.finished - op.started:.2f}s ({op.outcome})" for op in sorted(slow, key=lambda o: o.started)[:40])
    )
    coordinator_log = c.coordinator.log() if c.coordinator else ""
    node_logs = "".join(p.log() for p in c.group.procs if p.name.startswith("node-"))
    print(
        f"coordinator: {coordinator_log.count('failover: shard')} failovers, "
        f"{coordinator_log.count('the in-sync set')} in-sync changes; nodes: "
        f"{node_logs.count('copying it again')} re-copies, {node_logs.count(' copied from ')} shard copies"
    )
    print(f"checks: {checks} keys read back, {copy_checks} copies compared, {len(problems)} problems; test took {now():.1f}s")
    assert faults, "no fault was injected"
    assert not problems, f"seed {seed}:\n" + "\n".join(problems)
