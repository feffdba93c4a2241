"""Typed messages on the wire. Every one is encoded by `torua.protocol.codec`
with the protocol version in field `v`; docs/protocol.md lists which subject
carries which message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------- shard map


@dataclass(frozen=True)
class ShardEntry:
    shard_id: int
    primary: str | None = None
    replicas: list[str] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    # active | moving | unassigned | unavailable (its holder is not healthy)
    state: str = "unassigned"
    # while moving: the node the copy is going to
    target: str | None = None
    # set once a node has created the shard; before that, an assignment may create it empty
    created: bool = False
    # the primary's incarnation: grows whenever another node becomes primary
    shard_epoch: int = 0
    # (shard_epoch, last seq of the new primary when it took over), oldest first
    promotions: list[tuple[int, int]] = field(default_factory=list)

    @property
    def copies(self) -> tuple[str, ...]:
        return ((self.primary,) if self.primary else ()) + tuple(self.replicas)


@dataclass(frozen=True)
class ShardMap:
    epoch: int
    num_shards: int
    replication_factor: int = 1
    shards: list[ShardEntry] = field(default_factory=list)
    cluster_id: str = ""
    # the coordinator that wrote this map and its term (torua.leadership)
    leader: str = ""
    term: int = 0

    def entry(self, shard_id: int) -> ShardEntry:
        return self.shards[shard_id]


# ------------------------------------------------------------- membership


@dataclass(frozen=True)
class ShardReport:
    shard_id: int
    role: str  # primary | replica | frozen | copying
    last_seq: int = 0
    keys: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Heartbeat:
    node_id: str
    version: str
    epoch: int
    started_at: float
    sent_at: float
    max_shards: int | None = None
    host: str = ""
    pid: int = 0
    shards: list[ShardReport] = field(default_factory=list)


@dataclass(frozen=True)
class LeaseGrant:
    """Coordinator -> node, the reply to a heartbeat: the primaries it still assigns
    to the node, as (shard_id, shard_epoch), good for `lease_seconds` from when the
    node *sent* that heartbeat (see docs/design/replication.md, Leases)."""

    epoch: int
    lease_seconds: float
    shards: list[tuple[int, int]] = field(default_factory=list)
    term: int = 0  # the granting leader's term; a node ignores grants below the highest it has seen


@dataclass(frozen=True)
class AssignedShard:
    shard_id: int
    role: str = "primary"  # primary | replica
    # True only for a shard that is being born: the node may create it empty.
    create: bool = False
    shard_epoch: int = 0
    primary: str | None = None
    replicas: list[str] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    promotions: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Assignment:
    epoch: int
    node_id: str
    shards: list[AssignedShard] = field(default_factory=list)
    term: int = 0  # the sending leader's term (torua.leadership.accept_term)


@dataclass(frozen=True)
class AssignmentAck:
    node_id: str
    epoch: int
    serving: list[int] = field(default_factory=list)
    # assigned but neither on disk nor marked `create`: the node refuses to make them up
    missing: list[int] = field(default_factory=list)


# ------------------------------------------------------------------ KV ops


@dataclass(frozen=True)
class KvRequest:
    op: str  # get | put | delete | list
    shard_id: int
    epoch: int
    key: str = ""
    value: bytes | None = None
    content_type: str = "application/octet-stream"
    prefix: str = ""
    after: str | None = None
    limit: int = 1000
    # a get that any in-sync copy may answer (it may miss the newest writes)
    eventual: bool = False


@dataclass(frozen=True)
class KvReply:
    ok: bool
    epoch: int
    found: bool = False
    value: bytes | None = None
    content_type: str = ""
    keys: list[str] = field(default_factory=list)
    seq: int = 0
    error_code: str = ""
    error_message: str = ""


# ------------------------------------------------------------- shard moves


@dataclass(frozen=True)
class ShardCommand:
    """Coordinator -> node: copy | catch_up | freeze | unfreeze | drop a shard."""

    shard_id: int
    epoch: int
    source: str | None = None
    until_seq: int = 0
    term: int = 0  # the sending leader's term (torua.leadership.accept_term)


@dataclass(frozen=True)
class ShardCommandReply:
    ok: bool
    shard_id: int
    last_seq: int = 0
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class SnapshotRequest:
    shard_id: int
    after: str | None = None
    max_bytes: int = 4 << 20


@dataclass(frozen=True)
class SnapshotChunk:
    shard_id: int
    # last_seq is read before the rows, so the rows contain at least every op up to it
    last_seq: int
    rows: list[tuple[str, bytes, str]] = field(default_factory=list)
    next: str | None = None
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class LogRequest:
    shard_id: int
    after_seq: int
    max_ops: int = 1000
    max_bytes: int = 4 << 20
    # replication: who fetches (its fetch after `after_seq` acknowledges every op up
    # to it), the shard epoch its copy last followed, and how long to wait for news
    replica: str = ""
    shard_epoch: int = 0
    wait: float = 0.0


@dataclass(frozen=True)
class LogChunk:
    shard_id: int
    last_seq: int
    ops: list[tuple[int, bytes]] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""


# -------------------------------------------------------- coordinator API


@dataclass(frozen=True)
class NodeStatus:
    id: str
    status: str  # unknown | healthy | unhealthy
    draining: bool
    last_heartbeat: float | None
    shards: list[int]
    primaries: list[int]
    version: str = ""
    host: str = ""
    pid: int = 0
    max_shards: int | None = None
    started_at: float | None = None
    keys: int = 0
    bytes: int = 0
    missed_heartbeats: int = 0


@dataclass(frozen=True)
class NodesReply:
    nodes: list[NodeStatus]
    epoch: int


@dataclass(frozen=True)
class InSyncChange:
    """Primary -> coordinator: take `node_id` out of (or put it back into) the in-sync set."""

    shard_id: int
    shard_epoch: int
    node_id: str
    action: str  # remove | add


@dataclass(frozen=True)
class NodeRequest:
    """Operator or node -> coordinator about one node: drain | undrain | handoff."""

    node_id: str
    action: str


@dataclass(frozen=True)
class AssignRequest:
    shard_id: int
    node_id: str


@dataclass(frozen=True)
class MoveStatus:
    shard_id: int
    source: str | None
    target: str
    phase: str
    started_at: float


@dataclass(frozen=True)
class CoordinatorInfo:
    coordinator_id: str
    version: str
    epoch: int
    num_shards: int
    replication_factor: int
    started_at: float
    cluster_id: str
    moves: list[MoveStatus] = field(default_factory=list)
    formed: bool = False
    term: int = 0  # this (leading) coordinator's term
    standbys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ack:
    ok: bool
    error_code: str = ""
    error_message: str = ""
    detail: dict[str, str] = field(default_factory=dict)
