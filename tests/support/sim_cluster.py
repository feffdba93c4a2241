"""A whole Torua cluster in one event loop: the real `Coordinator` and `Node`s,
and a client using the gateway's own routing, all over one `MemoryBus`.

Shard data stays real (SQLite under a temp dir); only NATS is in memory, so a
node can be paused, cut off or crashed (its tasks cancelled, its stores closed,
no hand-off) and restarted on the same data in milliseconds.

Also here: the workload every scenario shares. `KeyWriter`s own their keys and
give every operation a sequence number that only grows, so a value names exactly
one attempted write (``w{writer}:{seq}``); `check_history` then holds each key
against what its writer knows, as the real-process fault-injection test does:

- a read may show the last acknowledged operation on a key or any operation
  attempted after it (failed or timed out: unknown), never an older value, never
  a value nobody attempted (a phantom), never a key whose delete was acknowledged;
- once green, every copy of a shard holds the same rows (`compare_copies`).

The seed is printed; ``TORUA_SIM_SEED=<seed>`` replays the scenario's choices
(fault schedule, each writer's operations) exactly. Which messages a lossy link
drops or delays follows from the same seed but also from the interleaving, which
is not replayed: SQLite commits on threads and the clock is real.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from torua.config import CoordinatorConfig, GatewayConfig, NodeConfig
from torua.coordinator.service import Coordinator
from torua.gateway.service import Gateway
from torua.keys import shard_for_key
from torua.node.service import Node
from torua.protocol.errors import ToruaError
from torua.protocol.messages import ShardMap
from torua.storage.engine import EngineFactory

from tests.support.history import Op, check_key, value_of
from tests.support.memory_bus import MemoryBus

log = logging.getLogger("tests.sim")



def sim_seed() -> int:
    """TORUA_SIM_SEED if set, else a fresh random seed; printed either way."""
    seed = int(os.environ.get("TORUA_SIM_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nsimulation seed: {seed} (replay with TORUA_SIM_SEED={seed})")
    return seed


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll `predicate` (plain or async) until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
        except Exception as exc:  # the thing polled is not there yet
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))
        await asyncio.sleep(interval)


class SimCluster:
    """One coordinator, nodes n1..nN and a client, each its own process on the bus."""

    def __init__(
        self,
        data_dir: Path,
        seed: int,
        nodes: int = 3,
        shards: int = 4,
        replicas: int = 2,
        heartbeat: float = 0.1,
        unhealthy_after: int = 3,
        replica_timeout: float = 0.5,
        request_timeout: float = 3.0,
        node_left_delay: float = 600.0,
        engines: Sequence[EngineFactory] = (),
        **node_settings: Any,
    ) -> None:
        master = random.Random(seed)
        self.seed = seed
        self.rng = random.Random(master.getrandbits(64))  # the scenario's own choices
        self.bus = MemoryBus(random.Random(master.getrandbits(64)))  # message drops and delays
        self.data_dir = data_dir
        self.node_ids = [f"n{i}" for i in range(1, nodes + 1)]
        self.coordinator_config = CoordinatorConfig(
            shards=shards,
            replicas=replicas,
            heartbeat_interval=heartbeat,
            unhealthy_after=unhealthy_after,
            expect_nodes=nodes,
            node_left_delay=node_left_delay,
            move_timeout=10.0,
        )
        # every node's settings (further NodeConfig fields may be given, e.g. graph_repair_interval)
        self._node_settings = dict(heartbeat_interval=heartbeat, commit="relaxed", replica_timeout=replica_timeout, shutdown_timeout=1.0, **node_settings)
        self.request_timeout = request_timeout
        self.engines = tuple(engines)  # every node opens its copies with these besides the key-value engine
        self.coordinator: Coordinator | None = None
        self.nodes: dict[str, Node] = {}
        self.gateway: Gateway | None = None
        self.events: list[str] = []  # what the harness did, with times, for the printed summary
        self._maps_seen: asyncio.Task[None] | None = None  # notes each new shard map
        self._t0 = time.monotonic()

    # ------------------------------------------------------------ lifecycle

    def now(self, monotonic: float | None = None) -> float:
        """Seconds since the cluster was made (of `monotonic`, a `time.monotonic()` reading, if given)."""
        return (time.monotonic() if monotonic is None else monotonic) - self._t0

    def note(self, what: str) -> None:
        line = f"[{self.now():6.2f}s] {what}"
        self.events.append(line)
        print(line)

    def node_config(self, node_id: str) -> NodeConfig:
        # API keys off: requests come from the harness's own gateway (torua.api_keys is tested elsewhere)
        settings = {"insecure": True, **self._node_settings}
        config = NodeConfig(id=node_id, data_dir=self.data_dir / node_id, **settings)  # type: ignore[arg-type]
        config.validate()
        return config

    async def start(self, green_timeout: float = 15.0) -> "SimCluster":
        self.coordinator_config.validate()
        self.coordinator = Coordinator(self.coordinator_config, connect=self.bus.connector("coordinator"))
        await self.coordinator.start()
        for node_id in self.node_ids:
            await self.start_node(node_id)
        self.gateway = Gateway(self.bus.connect("client"), GatewayConfig(port=0, request_timeout=self.request_timeout, insecure=True))
        await self.gateway.start()
        await self.wait_green(green_timeout)
        self.note(f"cluster formed and green: {self.describe_map()}")
        self._maps_seen = asyncio.ensure_future(self._note_maps())
        return self

    async def _note_maps(self) -> None:
        """Every shard map the coordinator makes from now on, as a note: a failure's
        printed story says which copy led and which were in sync when."""
        seen = self.coordinator.map.epoch if self.coordinator and self.coordinator.map else -1
        while True:
            await asyncio.sleep(0.005)
            m = self.coordinator.map if self.coordinator else None
            if m is not None and m.epoch != seen:
                seen = m.epoch
                self.note(f"map {self.describe_map()}")

    async def start_node(self, node_id: str, engines: Sequence[EngineFactory] | None = None) -> Node:
        node = Node(self.node_config(node_id), connect=self.bus.connector(node_id), engines=self.engines if engines is None else engines)
        await node.start()
        self.nodes[node_id] = node
        return node

    async def crash(self, node_id: str) -> None:
        """SIGKILL: the connection drops, every task stops where it is, no hand-off."""
        node = self.nodes.pop(node_id)
        await self.bus.crash(node_id)
        node.tasks.stopping.set()
        tasks = list(node.tasks)
        for holding in node.holdings.values():
            if holding.follower is not None:
                tasks.append(holding.follower)
            tasks.extend(holding.shrinking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for holding in node.holdings.values():
            if holding.store is not None:
                await holding.store.close()
        node.release_data_dir()  # the kernel drops a dead process's lock (torua.dir_lock)

    async def restart(self, node_id: str) -> Node:
        return await self.start_node(node_id)

    def pause(self, node_id: str) -> None:
        self.bus.pause(node_id)

    def resume(self, node_id: str) -> None:
        self.bus.resume(node_id)

    async def stop(self) -> None:
        """Stop everything, whatever state the test left it in."""
        if self._maps_seen is not None:
            self._maps_seen.cancel()
            await asyncio.gather(self._maps_seen, return_exceptions=True)
        self.bus.heal()
        for name in ["coordinator", "client", *self.node_ids]:
            self.bus.resume(name)
        # The coordinator first, so that it fails nothing over meanwhile.
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        if self.gateway is not None:
            steps.append(("client", self.gateway.stop))
        if self.coordinator is not None:
            steps.append(("coordinator", self.coordinator.stop))
        steps += [(node_id, lambda node_id=node_id: self.crash(node_id)) for node_id in list(self.nodes)]
        try:
            for name, step in steps:
                try:
                    await step()
                except Exception:
                    log.exception("stopping %s", name)
        finally:
            await self.bus.close()

    # ---------------------------------------------------------------- views

    @property
    def map(self) -> ShardMap:
        assert self.coordinator is not None and self.coordinator.map is not None, "the cluster has not formed"
        return self.coordinator.map

    def shard_of(self, key: str) -> int:
        return shard_for_key(key, self.map.num_shards)

    def describe_map(self) -> str:
        m = self.map
        return f"epoch {m.epoch}: " + "; ".join(
            f"s{e.shard_id} {e.primary}@{e.shard_epoch}+{','.join(e.replicas)} in_sync={','.join(e.in_sync)}" for e in m.shards
        )

    def green(self, caught_up: bool = False) -> bool:
        """Every shard active with all its copies in sync, and every node agreeing; with
        `caught_up`, every replica also holds the primary's last seq (no writes running)."""
        c = self.coordinator
        if c is None or c.map is None or c.failing_over or c.moves:
            return False
        health = c.health()
        if any(health.get(n) != "healthy" for n in self.node_ids) or set(self.nodes) != set(self.node_ids):
            return False
        now = time.monotonic()
        for e in c.map.shards:
            if e.state != "active" or e.primary is None or len(e.copies) != c.map.replication_factor:
                return False
            if sorted(e.in_sync) != sorted(e.copies):
                return False
            primary = self.nodes[e.primary].holdings.get(e.shard_id)
            if primary is None or primary.role != "primary" or primary.store is None or primary.shard_epoch != e.shard_epoch:
                return False
            if sorted(primary.in_sync) != sorted(e.in_sync) or primary.lease_until <= now:
                return False
            for replica_id in e.replicas:
                replica = self.nodes[replica_id].holdings.get(e.shard_id)
                if replica is None or replica.role != "replica" or replica.store is None or replica.shard_epoch != e.shard_epoch:
                    return False
                if caught_up and replica.store.last_seq() != primary.store.last_seq():
                    return False
        return True

    async def wait_green(self, timeout: float = 20.0, caught_up: bool = False) -> None:
        try:
            await wait_for(lambda: self.green(caught_up), timeout, "the cluster green" + (" and caught up" if caught_up else ""))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {self.describe()}") from None

    def stuck_copies(self, longer_than: float = 60.0) -> dict[int, str]:
        """Replicas whose re-copy waits on one request that may take more than
        `longer_than` seconds, read from each follower task's await chain: the id
        of that request's coroutine (the same while it waits) -> a description."""
        stuck = {}
        for node_id, node in sorted(self.nodes.items()):
            for shard_id, holding in sorted(node.holdings.items()):
                if holding.follower is None or holding.follower.done():
                    continue
                names, remaining, waiting = [], None, None
                coro = holding.follower.get_coro()
                while coro is not None and getattr(coro, "cr_frame", None) is not None:
                    names.append(coro.cr_frame.f_code.co_name)
                    if "remaining" in coro.cr_frame.f_locals:
                        remaining, waiting = coro.cr_frame.f_locals["remaining"], coro
                    coro = coro.cr_await
                if "_recopy" in names and isinstance(remaining, float) and remaining > longer_than:
                    stuck[id(waiting)] = f"{node_id} shard {shard_id}: {' > '.join(names)} waits up to {remaining:.0f}s"
        return stuck

    def describe(self) -> str:
        """The coordinator's view and every node's, for failure messages."""
        c = self.coordinator
        lines = [f"map {self.describe_map() if c and c.map else None}", f"health {c.health() if c else None}"]
        for node_id, node in sorted(self.nodes.items()):
            copies = []
            for shard_id, h in sorted(node.holdings.items()):
                seq = h.store.last_seq() if h.store is not None and not h.store.closed else None
                follower = "" if h.follower is None else " following" if not h.follower.done() else " follower done"
                copies.append(f"s{shard_id} {h.role}@{h.shard_epoch} seq {seq} in_sync={','.join(h.in_sync)} acked={h.acked}{follower}")
            lines.append(f"{node_id}: " + "; ".join(copies))
        return "\n".join(lines)

    def copy_rows(self, node_id: str, shard_id: int) -> dict[str, bytes]:
        """Every key and value of one node's copy of a shard, read from its store."""
        store = self.nodes[node_id].holdings[shard_id].store
        assert store is not None, f"{node_id} has no open copy of shard {shard_id}"
        rows: dict[str, bytes] = {}
        after: str | None = None
        while True:
            chunk, after = store.snapshot_chunk(after, 1 << 20)
            rows.update((key, value) for key, value, _ in chunk)
            if after is None:
                return rows

    def compare_copies(self) -> tuple[int, list[str]]:
        """(copies compared, problems): every copy of every shard holds the primary's rows."""
        problems: list[str] = []
        compared = 0
        for e in self.map.shards:
            assert e.primary is not None
            expected = self.copy_rows(e.primary, e.shard_id)
            for replica_id in e.replicas:
                compared += 1
                got = self.copy_rows(replica_id, e.shard_id)
                if got != expected:
                    differ = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
                    problems.append(
                        f"DIVERGED: shard {e.shard_id} on {replica_id} differs from primary {e.primary} in "
                        + ", ".join(f"{k}: {got.get(k)!r} vs {expected.get(k)!r}" for k in differ[:10])
                    )
        return compared, problems

    # --------------------------------------------------------------- client

    async def put(self, key: str, value: bytes) -> None:
        assert self.gateway is not None
        await self.gateway.kv_put(key, value)

    async def delete(self, key: str) -> None:
        assert self.gateway is not None
        await self.gateway.kv_delete(key)

    async def get(self, key: str) -> bytes | None:
        assert self.gateway is not None
        try:
            return (await self.gateway.kv_get(key))[0]
        except ToruaError as exc:
            if exc.code == "not_found":
                return None
            raise

    async def read_definitely(self, key: str, timeout: float = 10.0) -> bytes | None:
        """A strong read that retries until the cluster gives a definite answer."""

        async def attempt() -> tuple[bytes | None] | None:
            try:
                return (await self.get(key),)
            except ToruaError:
                return None

        return (await wait_for(attempt, timeout, f"a definite answer for {key}"))[0]


# ------------------------------------------------------------------ workload


class KeyWriter:
    """Writes (and, if `deletes`, sometimes deletes) its own keys, one operation at a
    time, recording every attempt before it is sent and its outcome after.

    Half the puts go to a fresh key written once (``w0-u17``): a lost acknowledged
    write there stays visible, where on a rotating key (``w0-k5``) a later write
    would hide it."""

    def __init__(self, cluster: SimCluster, index: int, keys: int = 12, deletes: bool = False, delete_probability: float = 0.15, fresh_share: float = 0.5) -> None:
        self.cluster, self.index = cluster, index
        self.rng = random.Random(cluster.rng.getrandbits(64))
        self.keys = [f"w{index}-k{i}" for i in range(keys)]
        self.deletes, self.delete_probability, self.fresh_share = deletes, delete_probability, fresh_share
        self.ops: dict[int, Op] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def acked(self, after: float = -1.0, shards: set[int] | None = None) -> int:
        """Acknowledged operations started after `after` (cluster time), on `shards` if given."""
        return sum(
            1
            for op in self.ops.values()
            if op.outcome == "acked" and op.started > after and (shards is None or self.cluster.shard_of(op.key) in shards)
        )

    def start(self) -> "KeyWriter":
        self._task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            # one operation may be in flight; the router gives up at its deadline
            await asyncio.wait_for(self._task, self.cluster.request_timeout + 5)

    async def _run(self) -> None:
        c = self.cluster
        seq = 0
        while not self._stop.is_set():
            seq += 1
            key = self.keys[seq % len(self.keys)]
            if self.rng.random() < self.fresh_share:
                key = f"w{self.index}-u{seq}"
                op = Op(seq, "put", key, value_of(self.index, seq))
            elif self.deletes and self.rng.random() < self.delete_probability:
                op = Op(seq, "delete", key, None)
            else:
                op = Op(seq, "put", key, value_of(self.index, seq))
            op.started = c.now()
            self.ops[seq] = op  # recorded as attempted before it is sent
            try:
                if op.kind == "put":
                    assert op.value is not None
                    await c.put(key, op.value)
                else:
                    await c.delete(key)
            except ToruaError as exc:
                op.outcome, op.detail = "failed", exc.code
            except Exception as exc:  # anything else is unknown too
                op.outcome, op.detail = "failed", type(exc).__name__
            else:
                op.outcome = "acked"
            op.finished = c.now()
            # pacing: a refused request returns at once while a shard fails over
            await asyncio.sleep(0.02 if op.outcome == "failed" else 0.002)


async def check_history(cluster: SimCluster, writers: list[KeyWriter]) -> tuple[int, list[str]]:
    """(keys read back, problems): every key of every writer against its history."""
    problems: list[str] = []
    checked = 0
    for w in writers:
        by_key: dict[str, list[Op]] = {}
        for op in sorted(w.ops.values(), key=lambda o: o.seq):
            by_key.setdefault(op.key, []).append(op)
        for key, ops in sorted(by_key.items()):
            served = await cluster.read_definitely(key)
            checked += 1
            problem = check_key(w.index, w.ops, key, ops, served)
            if problem:
                problems.append(f"[shard {shard_for_key(key, cluster.map.num_shards)}] {problem}")
    return checked, problems


def summarize_ops(writers: list[KeyWriter]) -> str:
    ops = [op for w in writers for op in w.ops.values()]
    acked = {kind: sum(1 for op in ops if op.kind == kind and op.outcome == "acked") for kind in ("put", "delete")}
    failed: dict[str, int] = {}
    for op in ops:
        if op.outcome == "failed":
            failed[op.detail] = failed.get(op.detail, 0) + 1
    return f"operations: {len(ops)} attempted, {acked['put']} acked puts, {acked['delete']} acked deletes, failed/unknown {failed or 0}"
