"""What the leader's helpers may ask of it.

The leading coordinator (`torua.coordinator.service.Coordinator`) is a driver
that owns the cluster's state; the helpers around it (`api`, `replicas`,
`settings`, `load_moves`) each get the narrow part of it they need, written
down here as Protocols. A helper is built with anything that has those members
(the Coordinator has them all; a unit test passes a small fake), never reaches
into the driver's private fields, and imports no driver module. Helpers that
need each other are given each other explicitly (the API gets the replica
keeper, the load mover and the settings keeper; the load mover gets the
replica keeper as `Handoffs`).

Reading members are read-only properties here: the helper reads them each
time (a settings change replaces `config` and `settings`, a new map replaces
`map`). Everything a helper changes goes through a method that says what it
asks for (`replan_soon`, `queue_move`, `use_settings`, ...).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Coroutine, Mapping, Protocol

from torua.broadcast import Gathered
from torua.cluster_settings import ClusterSettings
from torua.config import CoordinatorConfig
from torua.coordinator.moves import Move
from torua.coordinator.placement import NodeView
from torua.coordinator.records import NodeRecord
from torua.protocol.messages import (
    ClusterConfig,
    RebalanceReply,
    RebalanceRequest,
    ShardCommand,
    ShardCommandReply,
    ShardMap,
    ShardReport,
)
from torua.replication.lease_ledger import LeaseLedger

MapChange = Callable[[ShardMap | None], ShardMap | None]
Clock = Callable[[], float]  # seconds, monotonic (time.monotonic)


class ClusterView(Protocol):
    """What the leader knows now, read-only."""

    @property
    def config(self) -> CoordinatorConfig: ...

    @property
    def map(self) -> ShardMap | None: ...

    @property
    def moves(self) -> Mapping[int, Move]:
        """Moves running now, by shard."""
        ...

    def health(self) -> dict[str, str]:
        """node -> unknown | healthy | unhealthy."""
        ...

    def node_views(self) -> list[NodeView]:
        """Every known node as placement sees it."""
        ...

    def copies_missing(self) -> dict[str, set[int]]:
        """node -> shards the map counts on it for that it says it does not have."""
        ...


class MapWriter(Protocol):
    def update_map(self, change: MapChange, announce: bool = True) -> Awaitable[bool]:
        """Apply `change` to the current map at a new epoch: persist, then announce;
        False when it changed nothing."""
        ...


class NodeCommands(Protocol):
    def command(self, node_id: str, call: str, command: ShardCommand, timeout: float | None = None) -> Awaitable[ShardCommandReply]:
        """Send `call` (shard.copy, shard.position, ...) to a node; ToruaError unless it says ok."""
        ...


class Tasks(Protocol):
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` as a task the leader cancels when it stops."""
        ...


class Replanning(Protocol):
    def replan_soon(self) -> None:
        """Placement should look again at the next tick: count-based placement plans
        moves (one copy per shard) and the replica keeper steps replicated shards."""
        ...


class ReplicaLeader(ClusterView, MapWriter, NodeCommands, Tasks, Protocol):
    """What `ReplicaKeeper` needs: the view, map writes, node commands, tasks, and
    the leases nodes may hold (a failover waits them out)."""

    @property
    def leases(self) -> LeaseLedger: ...


class Handoffs(Protocol):
    """What `LoadMoves` needs of the replica keeper."""

    @property
    def failing_over(self) -> frozenset[int]:
        """Shards whose primary is being changed (failover or hand-off) now."""
        ...

    def replicated(self) -> bool: ...

    def start_handoff(self, shard_id: int, candidates: list[str]) -> bool:
        """Start a planned hand-off of the shard's primary to one of `candidates`,
        unless one runs already (False)."""
        ...


class LoadLeader(ClusterView, Replanning, Protocol):
    """What `LoadMoves` needs: the view, the settings, the copies' reported rates,
    and the move queue."""

    @property
    def settings(self) -> ClusterSettings: ...

    def healthy_reports(self) -> dict[str, list[ShardReport]]:
        """node -> the shard reports of its last heartbeat, for healthy nodes."""
        ...

    def moves_in_flight(self) -> int:
        """Moves running, queued, or left in flight by a previous leader."""
        ...

    def replan_pending(self) -> bool:
        """Has count-based placement (one copy per shard) been asked to plan again?"""
        ...

    def queue_move(self, shard_id: int, source: str, target: str) -> None:
        """Move a copy once a move slot is free (at most max_moves at once)."""
        ...


class SettingsStore(Protocol):
    """The stored settings record (torua.coordinator.state_store.ClusterState)."""

    def load_settings(self) -> Awaitable[tuple[dict, int] | None]: ...

    def save_settings(self, settings: dict) -> Awaitable[int]: ...


class SettingsLeader(MapWriter, Replanning, Protocol):
    """What `SettingsKeeper` needs."""

    @property
    def settings(self) -> ClusterSettings: ...

    @property
    def map(self) -> ShardMap | None: ...

    @property
    def term(self) -> int: ...

    @property
    def state(self) -> SettingsStore | None: ...

    @property
    def leases(self) -> LeaseLedger: ...

    def use_settings(self, settings: ClusterSettings) -> None:
        """Put `settings` in force on the leader (and the flags its config shares with them)."""
        ...

    def check_leading(self) -> None:
        """ToruaError("unavailable") unless this coordinator still leads."""
        ...

    def lease_seconds(self) -> float: ...

    def healthy_nodes(self) -> set[str]: ...

    def moves_in_flight(self) -> int: ...

    def broadcast(self, kind: str, body: dict[str, Any], expected: set[str]) -> Awaitable[Gathered]:
        """Send one message to every node and gather their answers (torua.broadcast)."""
        ...


class PrimaryHandoffs(Protocol):
    """What the API needs of the replica keeper."""

    def hand_off_primaries(self, node_id: str) -> int:
        """Start handing every primary of `node_id` to an in-sync replica; how many started."""
        ...


class Rebalancer(Protocol):
    """What the API needs of the load mover."""

    def rebalance(self, request: RebalanceRequest) -> Awaitable[RebalanceReply]: ...


class SettingsCalls(Protocol):
    """What the API needs of the settings keeper: its two calls."""

    def current(self, data: bytes) -> Awaitable[ClusterConfig]: ...

    def change(self, data: bytes) -> Awaitable[ClusterConfig]: ...


class ApiLeader(ClusterView, MapWriter, Protocol):
    """What `CoordinatorApi` needs: the view, the node records (read), and the
    operator's changes, each a method."""

    @property
    def settings(self) -> ClusterSettings: ...

    @property
    def nodes(self) -> Mapping[str, NodeRecord]: ...

    @property
    def term(self) -> int: ...

    @property
    def started_at(self) -> float: ...

    @property
    def leases(self) -> LeaseLedger: ...

    def may_act(self) -> bool: ...

    def standbys(self) -> Awaitable[list[str]]: ...

    def lease_seconds(self) -> float: ...

    def failover_hold(self) -> float: ...

    @property
    def failing_over(self) -> frozenset[int]: ...

    def node_disk_level(self, record: NodeRecord) -> str: ...

    def set_draining(self, record: NodeRecord, draining: bool) -> Awaitable[None]: ...

    def set_capacity_flags(self, records: list[NodeRecord], **flags: bool) -> Awaitable[None]: ...

    def mark_stopping(self, record: NodeRecord) -> None:
        """The node asked for a hand-off before it stops: give it no primary back
        until a new process of it beats."""
        ...

    def cancel_queued_moves(self, shard_id: int) -> None: ...

    def start_move(self, shard_id: int, source: str, target: str, reason: str) -> Move: ...
