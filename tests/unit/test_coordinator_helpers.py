"""Each helper of the leading coordinator is built with only its narrow interface
(`torua.coordinator.ports`), here a small fake of it with exactly the members the
Protocol lists, and does its job through it: no whole Coordinator, no NATS.

The fakes are our own seam, not NATS or storage: the real Coordinator fills the
same Protocols, and the simulation and integration tests run the real thing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import pytest

from torua.broadcast import Gathered
from torua.cluster_settings import ClusterSettings, from_config
from torua.config import CoordinatorConfig
from torua.coordinator.api import CoordinatorApi
from torua.coordinator.load_moves import LoadMoves
from torua.coordinator.moves import Move
from torua.coordinator.placement import NodeView
from torua.coordinator.records import NodeRecord
from torua.coordinator.replicas import ReplicaKeeper
from torua.coordinator.settings import SettingsKeeper
from torua.protocol.codec import encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import (
    Ack,
    AssignRequest,
    BroadcastReply,
    ClusterConfig,
    Heartbeat,
    NodeRequest,
    RebalanceReply,
    RebalanceRequest,
    SettingsChange,
    ShardCommand,
    ShardCommandReply,
    ShardEntry,
    ShardMap,
    ShardReport,
)
from torua.replication.lease_ledger import LeaseLedger


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def a_map(entries: dict[int, tuple[str, ...]], rf: int = 1, in_sync: dict[int, list[str]] | None = None) -> ShardMap:
    """shard -> (primary, *replicas), every copy in sync unless `in_sync` says otherwise."""
    shards = [
        ShardEntry(s, copies[0], list(copies[1:]), (in_sync or {}).get(s, list(copies)), "active", created=True)
        for s, copies in sorted(entries.items())
    ]
    return ShardMap(epoch=5, num_shards=len(shards), replication_factor=rf, shards=shards, cluster_id="test")


class View:
    """ClusterView: what the leader knows, as plain attributes."""

    def __init__(self, shard_map: ShardMap | None, health: dict[str, str]) -> None:
        self.config = CoordinatorConfig(heartbeat_interval=1.0, max_moves=2)
        self.map = shard_map
        self.moves: dict[int, Move] = {}
        self._health = health
        self.missing: dict[str, set[int]] = {}

    def health(self) -> dict[str, str]:
        return dict(self._health)

    def node_views(self) -> list[NodeView]:
        return [NodeView(n, status) for n, status in sorted(self._health.items())]

    def copies_missing(self) -> dict[str, set[int]]:
        return self.missing


class Writes:
    """MapWriter and Tasks: changes applied to `map` at once, tasks kept to await."""

    map: ShardMap | None
    tasks: list[asyncio.Task]

    async def update_map(self, change, announce: bool = True) -> bool:
        changed = change(self.map)
        if changed is None or changed is self.map:
            return False
        self.map = replace(changed, epoch=self.map.epoch + 1 if self.map else 1)
        return True

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task


# ------------------------------------------------------------- replica keeper


class FakeReplicaLeader(View, Writes):
    """ReplicaLeader: the view, map writes, node commands, tasks, leases."""

    def __init__(self, shard_map: ShardMap, health: dict[str, str], positions: dict[str, int]) -> None:
        super().__init__(shard_map, health)
        self.leases = LeaseLedger()
        self.tasks = []
        self.positions = positions  # node -> last seq it reports for shard.position
        self.commands: list[tuple[str, str, int]] = []

    async def command(self, node_id: str, call: str, command: ShardCommand, timeout: float | None = None) -> ShardCommandReply:
        self.commands.append((node_id, call, command.shard_id))
        return ShardCommandReply(True, command.shard_id, last_seq=self.positions[node_id])


async def test_replica_keeper_promotes_an_in_sync_replica_once_the_old_lease_ran_out():
    leader = FakeReplicaLeader(a_map({0: ("n1", "n2", "n3")}, rf=3), {"n1": "unhealthy", "n2": "healthy", "n3": "healthy"}, {"n2": 7, "n3": 9})
    clock = Clock(100.0)
    leader.leases.granted("n1", incarnation=1.0, beat=1, shards=[0], until=102.0)
    keeper = ReplicaKeeper(leader, clock=clock)

    keeper.fail_over()  # n1 may still hold its lease: wait
    assert leader.tasks == [] and keeper.failing_over == frozenset()

    clock.now = 102.5
    keeper.fail_over()
    assert keeper.failing_over == {0}  # from here on n1 gets no lease for shard 0
    await asyncio.gather(*leader.tasks)
    assert sorted(leader.commands) == [("n2", "shard.position", 0), ("n3", "shard.position", 0)]
    entry = leader.map.shards[0]
    assert (entry.primary, entry.replicas, entry.in_sync) == ("n3", ["n1", "n2"], ["n3", "n2"])
    assert keeper.failing_over == frozenset()


async def test_replica_keeper_starts_one_hand_off_per_shard_at_a_time():
    leader = FakeReplicaLeader(a_map({0: ("n1", "n2"), 1: ("n1", "n2")}, rf=2), {"n1": "healthy", "n2": "healthy"}, {"n2": 3})
    keeper = ReplicaKeeper(leader, clock=Clock())
    assert keeper.start_handoff(0, ["n2"]) is True
    assert keeper.start_handoff(0, ["n2"]) is False  # one runs already
    assert keeper.hand_off_primaries("n1") == 1  # shard 1; shard 0 is on its way
    assert keeper.failing_over == {0, 1}
    await asyncio.gather(*leader.tasks)
    assert [e.primary for e in leader.map.shards] == ["n2", "n2"]
    assert keeper.failing_over == frozenset()


async def test_replica_keeper_steps_toward_the_target_once_per_interval_unless_asked_sooner():
    # rf 2 but one copy each: the keeper adds a replica
    leader = FakeReplicaLeader(a_map({0: ("n1",), 1: ("n2",)}, rf=2), {"n1": "healthy", "n2": "healthy"}, {})
    clock = Clock(100.0)
    keeper = ReplicaKeeper(leader, clock=clock)
    await keeper.reconcile()
    assert [e.copies for e in leader.map.shards] == [("n1", "n2"), ("n2", "n1")]
    leader.map = a_map({0: ("n1",), 1: ("n2",)}, rf=2)  # as if the copies were lost again
    await keeper.reconcile()  # within the interval: nothing
    assert [e.copies for e in leader.map.shards] == [("n1",), ("n2",)]
    keeper.reconcile_soon()
    await keeper.reconcile()
    assert [e.copies for e in leader.map.shards] == [("n1", "n2"), ("n2", "n1")]


# ------------------------------------------------------------------ load moves


class FakeLoadLeader(View):
    """LoadLeader: the view, settings, reported rates, the move queue."""

    def __init__(self, shard_map: ShardMap, health: dict[str, str], rates: dict[int, float]) -> None:
        super().__init__(shard_map, health)
        self.settings = ClusterSettings()
        self.rates = rates
        self.queued: list[tuple[int, str, str]] = []
        self.in_flight = 0
        self.replans = 0

    def healthy_reports(self) -> dict[str, list[ShardReport]]:
        assert self.map is not None
        out: dict[str, list[ShardReport]] = {}
        for e in self.map.shards:
            out.setdefault(e.primary, []).append(ShardReport(e.shard_id, "primary", ops_rate=self.rates.get(e.shard_id, 0.0)))
        return out

    def moves_in_flight(self) -> int:
        return self.in_flight + len(self.queued)

    def replan_pending(self) -> bool:
        return False

    def replan_soon(self) -> None:
        self.replans += 1

    def queue_move(self, shard_id: int, source: str, target: str) -> None:
        self.queued.append((shard_id, source, target))


class NoReplicas:
    """Handoffs of a cluster with one copy per shard."""

    failing_over: frozenset[int] = frozenset()

    def replicated(self) -> bool:
        return False

    def start_handoff(self, shard_id: int, candidates: list[str]) -> bool:
        raise AssertionError("no hand-off with one copy per shard")


async def test_load_moves_waits_while_busy_and_settling_then_swaps_the_hot_shard():
    placement = {0: ("a",), 1: ("a",), 2: ("b",), 3: ("b",), 4: ("c",), 5: ("c",)}
    leader = FakeLoadLeader(a_map(placement), {"a": "healthy", "b": "healthy", "c": "healthy"}, {0: 40, 1: 40, 2: 5, 3: 5, 4: 1})
    clock = Clock(100.0)
    load = LoadMoves(leader, NoReplicas(), clock=clock)

    leader.in_flight = 1
    assert load.hold(clock()).startswith("busy: 1 shard move")
    leader.in_flight = 0
    clock.now += 1.0
    assert load.hold(clock()).startswith("settling")
    clock.now += 10.0
    assert load.hold(clock()) == ""

    dry = await load.rebalance(RebalanceRequest(dry_run=True))
    assert dry.started is False and leader.queued == []
    reply = await load.rebalance(RebalanceRequest())
    assert reply.started is True
    assert leader.queued[:2] == [(0, "a", "c"), (4, "c", "a")]  # the hot shard swapped with a cold one
    assert leader.replans == 1  # count-based placement checks the result afterwards
    assert load.hold(clock()).startswith("busy")


# ------------------------------------------------------------ settings keeper


class FakeStore:
    def __init__(self) -> None:
        self.saved: list[dict] = []

    async def load_settings(self) -> tuple[dict, int] | None:
        return (self.saved[-1], len(self.saved)) if self.saved else None

    async def save_settings(self, settings: dict) -> int:
        self.saved.append(settings)
        return len(self.saved)


class FakeSettingsLeader(Writes):
    """SettingsLeader: settings, the store, leases, moves in flight, the broadcast."""

    def __init__(self, shard_map: ShardMap) -> None:
        self.config = CoordinatorConfig()
        self.settings = from_config(self.config)
        self.map = shard_map
        self.term = 4
        self.state = FakeStore()
        self.leases = LeaseLedger()
        self.tasks = []
        self.in_flight = 0
        self.replans = 0
        self.broadcasts: list[tuple[str, dict, set[str]]] = []

    def use_settings(self, settings: ClusterSettings) -> None:
        self.settings = settings

    def check_leading(self) -> None:
        pass

    def lease_seconds(self) -> float:
        return 2.0

    def healthy_nodes(self) -> set[str]:
        return {"n1", "n2"}

    def moves_in_flight(self) -> int:
        return self.in_flight

    def replan_soon(self) -> None:
        self.replans += 1

    async def broadcast(self, kind: str, body: dict[str, Any], expected: set[str]) -> Gathered:
        self.broadcasts.append((kind, body, expected))
        return Gathered([BroadcastReply("n1", True, kind)], ["n2"])


@pytest.fixture
def root_log_level():
    """A settings change sets the process's log level: put it back afterwards."""
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


async def test_settings_keeper_stores_applies_and_broadcasts_a_change(root_log_level):
    leader = FakeSettingsLeader(a_map({0: ("n1",), 1: ("n2",)}))
    keeper = SettingsKeeper(leader)
    reply = await keeper.change(encode(SettingsChange({"max_moves": 5, "replication_factor": 2})))
    assert (reply.revision, reply.applied_by, reply.missing) == (1, ["n1"], ["n2"])
    assert leader.settings.max_moves == 5 and leader.state.saved[0]["max_moves"] == 5
    kind, body, expected = leader.broadcasts[0]
    assert kind == "config" and body["revision"] == 1 and body["term"] == 4 and expected == {"n1", "n2"}
    assert leader.map.replication_factor == 2 and leader.replans == 1  # the map takes the new factor
    current = await keeper.current(b"")
    assert current == ClusterConfig(leader.settings.to_dict(), 1)


async def test_settings_keeper_refuses_a_factor_change_while_moves_run(root_log_level):
    leader = FakeSettingsLeader(a_map({0: ("n1",)}))
    leader.in_flight = 1
    keeper = SettingsKeeper(leader)
    with pytest.raises(ToruaError) as refused:
        await keeper.change(encode(SettingsChange({"replication_factor": 2})))
    assert refused.value.code == "conflict"
    assert leader.state.saved == [] and leader.settings.replication_factor == 1 and leader.broadcasts == []


# ------------------------------------------------------------------------ API


class FakeApiLeader(View, Writes):
    """ApiLeader: the view, node records, and the operator's changes."""

    def __init__(self, shard_map: ShardMap, records: list[NodeRecord]) -> None:
        super().__init__(shard_map, {r.id: r.status for r in records})
        self.settings = ClusterSettings()
        self.nodes = {r.id: r for r in records}
        self.term = 3
        self.started_at = 1.0
        self.leases = LeaseLedger()
        self.tasks = []
        self.queued = [(0, "n1", "n2")]
        self.started: list[tuple[int, str, str, str]] = []
        self.flags: list[tuple[list[str], dict[str, bool]]] = []

    def may_act(self) -> bool:
        return True

    async def standbys(self) -> list[str]:
        return ["c2"]

    def lease_seconds(self) -> float:
        return 2.0

    def failover_hold(self) -> float:
        return 0.0

    @property
    def failing_over(self) -> frozenset[int]:
        return frozenset({5})

    def node_disk_level(self, record: NodeRecord) -> str:
        return "ok"

    async def set_draining(self, record: NodeRecord, draining: bool) -> None:
        record.draining = draining

    async def set_capacity_flags(self, records: list[NodeRecord], **flags: bool) -> None:
        self.flags.append(([r.id for r in records], flags))

    def mark_stopping(self, record: NodeRecord) -> None:
        record.stopping_of = record.heartbeat.started_at if record.heartbeat else None

    def cancel_queued_moves(self, shard_id: int) -> None:
        self.queued = [q for q in self.queued if q[0] != shard_id]

    def start_move(self, shard_id: int, source: str, target: str, reason: str) -> Move:
        self.started.append((shard_id, source, target, reason))
        return Move(shard_id, source, target, 0.0, reason=reason)


class FakeHandoffs:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def hand_off_primaries(self, node_id: str) -> int:
        self.asked.append(node_id)
        return 2


class FakeRebalancer:
    async def rebalance(self, request: RebalanceRequest) -> RebalanceReply:
        return RebalanceReply([], "balanced: test", started=False)


class FakeSettingsCalls:
    async def current(self, data: bytes) -> ClusterConfig:
        return ClusterConfig({"max_moves": 2}, 0)

    async def change(self, data: bytes) -> ClusterConfig:
        raise ToruaError("bad_request", "not here")


def a_record(node_id: str, status: str = "healthy", started_at: float = 10.0) -> NodeRecord:
    beat = Heartbeat(node_id, "0.3.0", 5, started_at, started_at + 1, shards=[ShardReport(0, "primary", keys=3, bytes=30)])
    return NodeRecord(node_id, 1.0, status=status, heartbeat=beat, last_seen=0.0)


def an_api(leader: FakeApiLeader) -> tuple[CoordinatorApi, FakeHandoffs]:
    handoffs = FakeHandoffs()
    return CoordinatorApi(leader, handoffs, FakeRebalancer(), FakeSettingsCalls()), handoffs


async def test_api_answers_from_the_records_and_the_map():
    leader = FakeApiLeader(a_map({0: ("n1", "n2"), 1: ("n2", "n1")}, rf=2), [a_record("n1"), a_record("n2")])
    api, _ = an_api(leader)
    statuses = api.node_statuses()
    assert [(s.id, s.status, s.shards, s.primaries, s.keys) for s in statuses] == [("n1", "healthy", [0, 1], [0], 3), ("n2", "healthy", [0, 1], [1], 3)]
    info = await api.info(b"")
    assert (info.term, info.standbys, info.epoch, info.formed, info.handoffs) == (3, ["c2"], 5, True, [5])
    assert (await api.rebalance(b"")).reason == "balanced: test"


async def test_api_assign_replaces_a_queued_move_of_the_shard_with_the_manual_one():
    leader = FakeApiLeader(a_map({0: ("n1",), 1: ("n2",)}), [a_record("n1"), a_record("n2"), a_record("n3")])
    api, _ = an_api(leader)
    ack = await api.assign(encode(AssignRequest(0, "n3")))
    assert ack == Ack(True, detail={"status": "moving"})
    assert leader.queued == [] and leader.started == [(0, "n1", "n3", "manual")]


async def test_api_node_calls_go_to_the_leader_and_the_replica_keeper():
    records = [a_record("n1", started_at=42.0), a_record("n2")]
    leader = FakeApiLeader(a_map({0: ("n1", "n2")}, rf=2), records)
    api, handoffs = an_api(leader)
    ack = await api.node(encode(NodeRequest("n1", "handoff")))
    assert ack.detail == {"handing_off": "2"} and handoffs.asked == ["n1"] and leader.nodes["n1"].stopping_of == 42.0
    await api.node(encode(NodeRequest("n2", "drain")))
    assert leader.nodes["n2"].draining is True
    await api.node(encode(NodeRequest("n2", "unevacuate")))
    assert leader.flags == [(["n2"], {"evacuating": False})]
    with pytest.raises(ToruaError) as unknown:
        await api.node(encode(NodeRequest("n9", "drain")))
    assert unknown.value.code == "unknown_node"


def test_the_coordinator_fills_every_helper_port():
    """The real driver has every member each Protocol lists."""
    from torua.coordinator import ports
    from torua.coordinator.service import Coordinator

    coordinator = Coordinator(CoordinatorConfig())
    for port in (ports.ReplicaLeader, ports.LoadLeader, ports.SettingsLeader, ports.ApiLeader):
        members = {name for cls in port.__mro__ if cls not in (object,) and cls.__module__ == ports.__name__ for name in vars(cls) if not name.startswith("_")}
        assert members, port
        lacking = sorted(name for name in members if not hasattr(coordinator, name))
        assert not lacking, f"Coordinator lacks {lacking} of {port.__name__}"
    for port, helper in ((ports.Handoffs, coordinator.replicas), (ports.PrimaryHandoffs, coordinator.replicas),
                         (ports.Rebalancer, coordinator.load), (ports.SettingsCalls, coordinator.settings_keeper)):
        members = {name for name in vars(port) if not name.startswith("_")}
        assert all(hasattr(helper, name) for name in members), port.__name__
