"""Replication and failover (two copies of every shard) under scripted faults, in
memory: the real coordinator and nodes over `tests.support.memory_bus`, with
concurrent writers whose every operation is checked afterwards (see
`tests.support.sim_cluster`). Each scenario prints its seed; set TORUA_SIM_SEED
to replay its choices.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.errors import TimeoutError as NatsTimeout

from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.messages import KvReply, KvRequest
from torua.storage.shard_store import ShardStore
from torua.storage.writer import DB_FILENAME
from tests.support.memory_bus import Envelope
from tests.support.sim_cluster import KeyWriter, SimCluster, check_history, sim_seed, summarize_ops, wait_for

HEAL_TIMEOUT = 20.0  # seconds for the cluster to be green again after a fault


@pytest.fixture
async def cluster(tmp_path):
    c = SimCluster(tmp_path, sim_seed())
    try:
        await c.start()
        yield c
    finally:
        await c.stop()
        print(f"bus: {c.bus.stats}")


def start_writers(cluster: SimCluster, count: int = 3) -> list[KeyWriter]:
    """`count` writers; the first one also deletes now and then."""
    return [KeyWriter(cluster, i, deletes=i == 0).start() for i in range(count)]


async def stop_writers(writers: list[KeyWriter]) -> None:
    results = await asyncio.gather(*(w.stop() for w in writers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise AssertionError(f"a writer did not stop cleanly: {result!r}") from result


async def wait_green(cluster: SimCluster, caught_up: bool = False) -> None:
    """`SimCluster.wait_green`, saying what the cluster looks like when it times out
    (including any copy request a node is still waiting on)."""
    try:
        await wait_for(lambda: cluster.green(caught_up), HEAL_TIMEOUT, "the cluster green" + (" and caught up" if caught_up else ""))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {cluster.describe()}; waiting copies: {cluster.stuck_copies(longer_than=0)}") from None


async def check_everything(cluster: SimCluster, writers: list[KeyWriter]) -> None:
    """Once the cluster is green and caught up: every key against its history, every copy against its primary."""
    await wait_green(cluster, caught_up=True)
    keys, problems = await check_history(cluster, writers)
    copies, copy_problems = cluster.compare_copies()
    problems += copy_problems
    print(summarize_ops(writers))
    print(f"checks: {keys} keys read back, {copies} replica copies compared, {len(problems)} problems; seed {cluster.seed}")
    assert sum(w.acked() for w in writers) > 0, "nothing was acknowledged: the scenario tested nothing"
    assert not problems, f"seed {cluster.seed}:\n" + "\n".join(problems)


@pytest.mark.timeout(60)
async def test_acknowledged_writes_survive_message_loss_and_delay(cluster):
    async with asyncio.timeout(50):
        writers = start_writers(cluster)
        try:
            await wait_for(lambda: all(w.acked() >= 20 for w in writers), 10, "writes acknowledged before the faults")
            cluster.bus.set_faults("*", "*", drop=0.05, delay=(0.0, 0.02))
            lossy_from = cluster.now()
            cluster.note("5% of messages dropped, 0-20 ms delay, on every link")
            await asyncio.sleep(4.0)  # how long the network is bad (fault timing, not synchronisation)
            acked_lossy = sum(w.acked(after=lossy_from) for w in writers)
            cluster.bus.heal()
            healed_at = cluster.now()
            cluster.note(f"links healed; {acked_lossy} operations acknowledged meanwhile; bus {cluster.bus.stats}")
            await wait_for(lambda: all(w.acked(after=healed_at) >= 10 for w in writers), HEAL_TIMEOUT, "every writer making progress after the heal")
        finally:
            await stop_writers(writers)
        assert cluster.bus.stats.dropped > 0 and cluster.bus.stats.delayed > 0
        assert acked_lossy > 0, "no write was acknowledged while messages were lost"
        await check_everything(cluster, writers)


@dataclass
class KvAnswer:
    """One answer of the paused node to a KV request."""

    request: KvRequest
    reply: KvReply
    held: bool  # the request waited for the node's resume
    sent_at: float  # cluster time


async def probe(cluster: SimCluster, node: str, shard_id: int, key: str) -> None:
    """A put sent straight to `node`, as a client with an old map would: it must go unanswered now."""
    assert cluster.gateway is not None
    request = KvRequest("put", shard_id, cluster.map.epoch, key=key, value=key.encode())
    with pytest.raises(NatsTimeout):
        await cluster.gateway.nc.request(subjects.node(node, "kv"), encode(request), timeout=0.2)


PAUSE = 1.5  # seconds: longer than failover, and than the requests the paused node has in flight


@pytest.mark.timeout(60)
async def test_paused_primary_is_replaced_and_refuses_what_it_held(cluster, monkeypatch):
    async with asyncio.timeout(50):
        old = cluster.map.shards[0].primary
        assert old is not None
        kv_subject = subjects.node(old, "kv")
        answers: list[KvAnswer] = []

        def tap(env: Envelope) -> None:
            if env.src == old and env.request is not None and env.request.subject == kv_subject:
                answers.append(KvAnswer(decode(KvRequest, env.request.data), decode(KvReply, env.data), env.request.held, cluster.now(env.sent_at)))

        # Every op any copy takes as a primary write, to see that no probe ever enters a log.
        logged: list[tuple[Path, str]] = []
        apply = ShardStore.apply

        async def recording_apply(store: ShardStore, op):
            logged.append((store.directory, getattr(op, "key", "")))
            return await apply(store, op)

        monkeypatch.setattr(ShardStore, "apply", recording_apply)

        cluster.bus.taps.append(tap)
        writers = start_writers(cluster)
        try:
            await wait_for(lambda: all(w.acked() >= 20 for w in writers), 10, "writes acknowledged before the pause")
            lost = {e.shard_id: e.shard_epoch for e in cluster.map.shards if e.primary == old}
            probes = [k for k in (f"probe-{i}" for i in range(100)) if cluster.shard_of(k) in lost][:2]
            # Replication from the old primary lags (its clients see no delay), so a write it
            # acknowledged without its replica would be missing after the failover.
            for replica in {r for e in cluster.map.shards if e.primary == old for r in e.replicas}:
                cluster.bus.set_faults(old, replica, delay=(0.03, 0.08))
            lagging_from = cluster.now()
            await wait_for(lambda: sum(w.acked(after=lagging_from, shards=set(lost)) for w in writers) >= 10, 10, "writes acknowledged while replication lags")
            cluster.pause(old)
            paused_at = cluster.now()
            cluster.note(f"paused {old}, primary of shards {sorted(lost)}")
            await probe(cluster, old, cluster.shard_of(probes[0]), probes[0])

            def failed_over() -> bool:
                return all(cluster.map.shards[s].primary not in (None, old) and cluster.map.shards[s].shard_epoch > epoch for s, epoch in lost.items())

            await wait_for(failed_over, 10, f"the coordinator to fail {old}'s shards over")
            failed_over_at = cluster.now()
            cluster.note(f"failed over: {cluster.describe_map()}")
            await probe(cluster, old, cluster.shard_of(probes[1]), probes[1])
            await wait_for(
                lambda: sum(w.acked(after=failed_over_at, shards=set(lost)) for w in writers) >= 10,
                10,
                "writes to the failed-over shards acknowledged by their new primaries",
            )
            await asyncio.sleep(max(0.0, PAUSE - (cluster.now() - paused_at)))  # fault timing: how long it stays paused
            cluster.bus.heal()
            cluster.resume(old)
            cluster.note(f"resumed {old}")
            await wait_for(lambda: {a.request.key for a in answers} >= set(probes), 10, f"{old} to answer the probes it held")
            await wait_green(cluster)
            cluster.note(f"green again: {cluster.describe_map()}")
            for shard_id, epoch in lost.items():
                e = cluster.map.shards[shard_id]
                assert old in e.in_sync and e.shard_epoch > epoch, f"{old} did not rejoin shard {shard_id} in sync: {e}"
        finally:
            await stop_writers(writers)
            cluster.bus.taps.remove(tap)
        held = [a for a in answers if a.held]
        print(
            f"{old} answered {len(held)} held requests after waking: "
            + ", ".join(f"{a.request.op} {a.request.key} (s{a.request.shard_id}) -> {a.reply.error_code or 'ok'} {a.reply.error_message}" for a in held)
        )
        assert {a.request.key for a in held} >= set(probes), "the probes were not held: the scenario tested nothing"
        accepted = [a for a in held if a.reply.ok]
        assert not accepted, f"seed {cluster.seed}: the woken old primary {old} accepted requests it held: {accepted}"
        applied = [(str(d), key) for d, key in logged if key in probes]
        assert not applied, f"seed {cluster.seed}: the woken old primary {old} applied probes it held: {applied}"
        for key in probes:
            assert await cluster.read_definitely(key) is None, f"seed {cluster.seed}: {key}, refused by {old}, is visible"
        # Writes it had in hand before the pause may be acknowledged late only if the new primary has
        # them, which the history check proves; shown for the record.
        late_ok = [a for a in answers if not a.held and a.reply.ok and a.request.op in ("put", "delete") and a.sent_at > failed_over_at]
        if late_ok:
            print(f"note: {len(late_ok)} writes taken before the pause were acknowledged by {old} after the failover")
        await check_everything(cluster, writers)


@pytest.mark.timeout(60)
async def test_cut_off_replica_leaves_the_in_sync_set_and_rejoins(cluster):
    async with asyncio.timeout(50):
        first = cluster.map.shards[0]
        primary, replica = first.primary, first.replicas[0]
        assert primary is not None
        shared = {e.shard_id: e.primary for e in cluster.map.shards if set(e.copies) == {primary, replica}}
        writers = start_writers(cluster)
        try:
            assert any(cluster.shard_of(k) in shared for w in writers for k in w.keys), "no key on the shards cut off"
            await wait_for(lambda: all(w.acked() >= 20 for w in writers), 10, "writes acknowledged before the partition")
            cluster.bus.partition(primary, replica)
            cluster.note(f"partitioned {primary} from {replica}; shards with copies on both: {sorted(shared)}")
            await wait_for(
                lambda: all(cluster.map.shards[s].in_sync == [cluster.map.shards[s].primary] for s in shared),
                10,
                "the coordinator to shrink every in-sync set to its primary",
            )
            shrunk_at = cluster.now()
            cluster.note(f"in-sync sets shrunk: {cluster.describe_map()}")
            await wait_for(
                lambda: sum(w.acked(after=shrunk_at, shards=set(shared)) for w in writers) >= 10,
                10,
                "writes acknowledged by the primaries alone",
            )
            cluster.bus.heal()
            cluster.note("partition healed")
            await wait_green(cluster)
            cluster.note(f"replicas back in sync: {cluster.describe_map()}")
        finally:
            await stop_writers(writers)
        await check_everything(cluster, writers)


FAULTS = 5
FAULT_KINDS = ("drop", "delay", "pause", "crash", "partition")


@dataclass(frozen=True)
class Fault:
    kind: str
    node: str
    hold: float  # seconds the fault lasts
    other: str  # the far end of a partition
    gap: float  # seconds of healthy writing after the heal


def fault_schedule(cluster: SimCluster, count: int) -> list[Fault]:
    """Chosen up front from the seed, so a seed replays the same faults."""
    rng, nodes = cluster.rng, cluster.node_ids
    schedule = []
    for _ in range(count):
        node = rng.choice(nodes)
        schedule.append(Fault(rng.choice(FAULT_KINDS), node, rng.uniform(0.3, 1.5), rng.choice([n for n in nodes if n != node]), rng.uniform(0.1, 0.5)))
    return schedule


async def inject(cluster: SimCluster, fault: Fault) -> None:
    bus = cluster.bus
    if fault.kind == "drop":
        bus.set_faults(fault.node, "*", drop=0.3)
        bus.set_faults("*", fault.node, drop=0.3)
    elif fault.kind == "delay":
        bus.set_faults(fault.node, "*", delay=(0.02, 0.1))
        bus.set_faults("*", fault.node, delay=(0.02, 0.1))
    elif fault.kind == "pause":
        cluster.pause(fault.node)
    elif fault.kind == "crash":
        await cluster.crash(fault.node)
    elif fault.kind == "partition":
        bus.partition(fault.node, fault.other)
    await asyncio.sleep(fault.hold)  # fault timing: how long it lasts
    bus.heal()
    cluster.resume(fault.node)
    if fault.kind == "crash":
        await cluster.restart(fault.node)


@pytest.mark.timeout(90)
async def test_acknowledged_writes_survive_random_faults(cluster):
    async with asyncio.timeout(80):
        schedule = fault_schedule(cluster, FAULTS)
        print("fault schedule: " + "; ".join(f"{f.kind} {f.node}" + (f"-{f.other}" if f.kind == "partition" else "") + f" {f.hold:.2f}s" for f in schedule))
        writers = start_writers(cluster)
        try:
            await wait_for(lambda: all(w.acked() >= 20 for w in writers), 10, "writes acknowledged before the faults")
            for i, fault in enumerate(schedule, 1):
                started = cluster.now()
                cluster.note(f"fault {i}: {fault}")
                await inject(cluster, fault)
                await wait_green(cluster)
                cluster.note(f"green again {cluster.now() - started:.2f}s after fault {i}; {summarize_ops(writers)}")
                await asyncio.sleep(fault.gap)  # fault timing: healthy writing before the next fault
            healed_at = cluster.now()
            await wait_for(lambda: all(w.acked(after=healed_at) >= 10 for w in writers), HEAL_TIMEOUT, "every writer making progress after the last fault")
        finally:
            await stop_writers(writers)
        await check_everything(cluster, writers)


@pytest.mark.timeout(60)
async def test_write_acknowledged_while_a_replica_rejoins_survives_failover(cluster):
    """The coordinator puts a caught-up replica back in the in-sync set when its
    primary asks (`torua.coordinator.in_sync` "add"), and may promote it from then
    on. So the primary counts the replica from before it asks: a write acknowledged
    while the answer is on its way has waited for the replica too."""
    async with asyncio.timeout(50):
        first = cluster.map.shards[0]
        primary, replica = first.primary, first.replicas[0]
        assert primary is not None
        keys = [k for k in (f"key-{i}" for i in range(200)) if cluster.shard_of(k) == 0]
        cluster.bus.partition(primary, replica)
        await cluster.put(keys[0], b"written while the replica is cut off")
        await wait_for(lambda: cluster.map.shards[0].in_sync == [primary], 10, f"{replica} out of the in-sync set")
        cluster.bus.heal()
        # The replica's log replies come late, and so does the coordinator's answer to the rejoin.
        cluster.bus.set_faults(primary, replica, delay=(1.0, 1.0))
        cluster.bus.set_faults("coordinator", primary, delay=(0.3, 0.3), subject=subjects.coordinator("in_sync"))
        await wait_for(lambda: replica in cluster.map.shards[0].in_sync, 15, f"the coordinator to count {replica} in sync again")
        in_sync = list(cluster.nodes[primary].holdings[0].in_sync)
        await cluster.put(keys[1], b"acknowledged")
        cluster.note(f"{keys[1]} acknowledged; the map says in sync {cluster.map.shards[0].in_sync}, {primary} said {in_sync}")
        await cluster.crash(primary)
        try:
            await wait_for(lambda: cluster.map.shards[0].primary == replica, 1.5, f"failover to {replica}")
            cluster.note(f"failed over: {cluster.describe_map()}")
        except AssertionError:
            cluster.note("no failover: the replica was not counted in sync")
        cluster.bus.heal()
        await cluster.restart(primary)
        await cluster.wait_green(HEAL_TIMEOUT, caught_up=True)
        got = await cluster.read_definitely(keys[1])
        assert got == b"acknowledged", f"seed {cluster.seed}: acknowledged write of {keys[1]} lost, reads {got!r}"


@pytest.mark.timeout(60)
async def test_recopy_recovers_from_a_lost_message(cluster):
    """A woken old primary whose log has an op its successor lacks copies the shard
    again (snapshot, then log). One snapshot request lost on the way must cost a
    retry, not the whole copy budget."""
    async with asyncio.timeout(50):
        first = cluster.map.shards[0]
        old, replica = first.primary, first.replicas[0]
        assert old is not None
        key = next(k for k in (f"key-{i}" for i in range(200)) if cluster.shard_of(k) == 0)
        await cluster.put(key, b"acknowledged")
        store = cluster.nodes[old].holdings[0].store
        assert store is not None
        applied = store.last_seq()
        # The next write reaches the replica late; the old primary is paused with it in hand.
        cluster.bus.set_faults(old, replica, delay=(1.0, 1.0))
        write = asyncio.ensure_future(cluster.put(key, b"unacknowledged"))
        try:
            await wait_for(lambda: store.last_seq() > applied, 5, f"the write applied on {old}")
            cluster.pause(old)
            await wait_for(lambda: cluster.map.shards[0].primary == replica, 10, f"failover to {replica}")
            cluster.bus.heal()
            cluster.bus.set_faults(subject="torua.node.*.shard.snapshot", drop=1.0)
            cluster.resume(old)
            cluster.note(f"{old} resumed, diverged; snapshot requests are lost for a second")
            await asyncio.sleep(1.0)  # fault timing
            cluster.bus.heal()
        finally:
            try:
                await write
            except Exception:
                pass  # unknown outcome: it was in hand when the primary paused
        assert cluster.bus.stats.dropped > 0, "no snapshot request was lost: the scenario tested nothing"
        try:
            await cluster.wait_green(8.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstuck: {cluster.stuck_copies()}") from None


async def test_a_primary_that_hands_off_follows_its_successor_without_a_copy(tmp_path):
    """Shard 0's primary dies: its replica is promoted (at the seq it had) and takes
    writes; the old primary returns as a replica and catches up. Then the leader hands
    the shard off (a planned stop): it becomes a replica holding exactly its
    successor's history, and must catch up from the log, not copy the shard again
    (its shard.db stays the same file). It used to claim the shard epoch it last
    followed at (a copy that led since recorded none), which counted the first
    promotion's seq against it: every planned hand-off after a failover copied the
    shard again whole. `test_recopy_recovers_from_a_lost_message` is the other side:
    a tail past the promotion still copies again."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=1, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            first, second = cluster.map.shards[0].primary, cluster.map.shards[0].replicas[0]
            assert first is not None
            await cluster.crash(first)
            await wait_for(lambda: cluster.map.shards[0].primary == second, 10, f"failover to {second}")
            keys = [f"key-{i}" for i in range(20)]
            for k in keys:
                await cluster.put(k, b"after the failover")
            await cluster.restart(first)
            await wait_green(cluster, caught_up=True)
            leader = cluster.nodes[second]
            assert cluster.map.shards[0].primary == second and leader.holdings[0].store is not None
            db = leader.holdings[0].store.directory / DB_FILENAME
            file = os.stat(db).st_ino
            await leader.hand_off()
            await wait_for(lambda: cluster.map.shards[0].primary == first and cluster.green(caught_up=True), HEAL_TIMEOUT, f"{first} leading, {second} caught up")
            assert leader.holdings[0].role == "replica"
            assert os.stat(db).st_ino == file, f"{second} copied the shard again after handing it off"
            for k in keys:
                assert await cluster.read_definitely(k) == b"after the failover"
            copies, problems = cluster.compare_copies()
            assert copies == 1 and not problems, problems
    finally:
        await cluster.stop()


def copies_held(cluster: SimCluster, node_id: str) -> dict[int, str]:
    """shard -> role of every copy `node_id` serves or follows (primary, frozen, replica)."""
    return {s: h.role for s, h in cluster.nodes[node_id].holdings.items() if h.role in ("primary", "frozen", "replica")}


def copies_in_map(cluster: SimCluster, node_id: str) -> dict[int, str]:
    return {e.shard_id: "primary" if e.primary == node_id else "replica" for e in cluster.map.shards if node_id in e.copies}


async def test_a_replica_the_map_takes_away_stops_following_and_is_dropped(cluster):
    """A node joins; the coordinator moves replicas onto it and takes them off others.
    A copy taken off a node stops following its primary (left following, it re-copied
    in a loop once the shard's primary changed) and is dropped: every node ends with
    exactly the copies the map gives it, on disk too."""
    async with asyncio.timeout(60):
        before = {n: set(copies_in_map(cluster, n)) for n in cluster.node_ids}
        cluster.node_ids.append("n4")
        await cluster.start_node("n4")
        await wait_for(lambda: copies_in_map(cluster, "n4"), HEAL_TIMEOUT, "n4 given copies")
        await wait_green(cluster)
        taken = {n: before[n] - set(copies_in_map(cluster, n)) for n in before if before[n] - set(copies_in_map(cluster, n))}
        assert taken, f"no copy was taken off a node: the scenario tested nothing; {cluster.describe_map()}"

        def agree() -> bool:
            return all(copies_held(cluster, n) == copies_in_map(cluster, n) for n in cluster.node_ids)

        try:
            await wait_for(agree, HEAL_TIMEOUT, "every node holding exactly the copies the map gives it")
        except AssertionError as exc:
            held = {n: (copies_held(cluster, n), copies_in_map(cluster, n)) for n in cluster.node_ids}
            raise AssertionError(f"{exc}; (held, map) per node: {held}") from None
        for node_id, shards in taken.items():
            node = cluster.nodes[node_id]
            for shard_id in shards:
                await wait_for(
                    lambda: shard_id not in node.holdings and not node.shards_dir.joinpath(str(shard_id)).exists(),
                    HEAL_TIMEOUT, f"the copy of shard {shard_id} taken off {node_id} dropped",
                )
