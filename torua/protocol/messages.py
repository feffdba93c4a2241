"""Typed messages on the wire. Every one is encoded by `torua.protocol.codec`
with the protocol version in field `v`; docs/protocol.md lists which subject
carries which message. Fields that take one of a fixed set of values are typed
with a vocabulary (`torua.protocol.vocabulary`), which the codec checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torua.protocol.vocabulary import (
    BroadcastKind, CopyRole, Direction, GraphOp, HalfState, InSyncAction, KvOp, MapRole, MovePhase, NodeAction, NodeHealth, RagTask, ShardState, VectorMetric,
)

# ---------------------------------------------------------------- shard map


@dataclass(frozen=True)
class ShardEntry:
    shard_id: int
    primary: str | None = None
    replicas: list[str] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    # active | moving | unassigned | unavailable (its holder is not healthy)
    state: ShardState = ShardState.UNASSIGNED
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
    role: CopyRole  # primary | replica | frozen | copying | retired
    last_seq: int = 0
    keys: int = 0
    bytes: int = 0
    # KV operations per second this copy served lately (torua.node.rates), and the
    # writes among them; load rebalancing (torua.coordinator.load_balance) reads them
    ops_rate: float = 0.0
    write_rate: float = 0.0
    # seconds this copy's primary lease had left when the heartbeat was sent (0: none);
    # the coordinator's bound on the leases a node holds (torua.replication.lease_ledger)
    lease_left: float = 0.0
    # False for a replica recreated empty (its data was gone) or being copied again,
    # until it has caught up with its primary: it is not in sync and is never promoted
    complete: bool = True


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
    # the revision of the cluster settings this node runs with (SettingsUpdate); 0 = its flags
    settings_revision: int = 0
    # the filesystem of the node's data dir, in bytes (0 = not known); against the disk watermarks.
    # Use is used / (used + free), as `df` shows it (free excludes blocks reserved for root).
    disk_total: int = 0
    disk_used: int = 0
    disk_free: int = 0
    # this heartbeat's number (1, 2, ... per node process; 0 = an older release), and the
    # number of the newest heartbeat whose LeaseGrant the node has taken (it takes no older)
    seq: int = 0
    grant_seq: int = 0
    # the node's --data-dir, absolute: where it keeps its shards on `host` (/nodes, torua up)
    data_dir: str = ""


@dataclass(frozen=True)
class SettingsUpdate:
    """Coordinator -> node: the cluster settings (torua.cluster_settings, as a map) at
    `revision` (of key `cluster_config` in the `torua_cluster` bucket). Sent as the
    body of a `config` broadcast, and in the LeaseGrant of a node whose heartbeat
    shows another revision."""

    revision: int
    settings: dict[str, Any] = field(default_factory=dict)
    term: int = 0  # the sending leader's term (torua.leadership.accept_term)


@dataclass(frozen=True)
class LeaseGrant:
    """Coordinator -> node, the reply to a heartbeat: the primaries it still assigns
    to the node, as (shard_id, shard_epoch), good for `lease_seconds` from when the
    node *sent* that heartbeat (see docs/design/replication.md, Leases)."""

    epoch: int
    lease_seconds: float
    shards: list[tuple[int, int]] = field(default_factory=list)
    term: int = 0  # the granting leader's term; a node ignores grants below the highest it has seen
    # the cluster settings, only when the heartbeat showed another settings_revision
    settings: SettingsUpdate | None = None


@dataclass(frozen=True)
class AssignedShard:
    shard_id: int
    role: MapRole = MapRole.PRIMARY
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
    # the cluster's shard count, so the node can refuse a key sent to a shard it does
    # not belong to; 0 from an older coordinator (the node then cannot check that)
    num_shards: int = 0


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
    op: KvOp
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
    # torua.Client's one-hop request (subject app.kv): its API key, which the node checks
    api_key: str = ""


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
    # where the previous answer of a release before `formats` left off (its `next`)
    after: str | None = None
    max_bytes: int = 4 << 20
    # the snapshot chunk formats the requester installs; empty (a release before them):
    # the answer comes in the old shape, key-value `rows` and `next`
    formats: list[str] = field(default_factory=list)
    # where the previous answer left off (its `cursor`); None: from the start
    cursor: bytes | None = None


@dataclass(frozen=True)
class SnapshotData:
    """A piece of a shard snapshot in one engine's format, e.g. ``kv.rows.v1`` (msgpack
    ``[[key, value, content_type], ...]``); opaque to everything but that engine."""

    format: str
    data: bytes


@dataclass(frozen=True)
class SnapshotChunk:
    shard_id: int
    # last_seq is read before the data, so the data holds at least every op up to it
    last_seq: int
    # the old shape (to a request without `formats`): key-value rows, and the last key sent
    rows: list[tuple[str, bytes, str]] = field(default_factory=list)
    next: str | None = None
    error_code: str = ""
    error_message: str = ""
    # the new shape: chunks in the formats asked for, and where to go on (None: done)
    chunks: list[SnapshotData] = field(default_factory=list)
    cursor: bytes | None = None


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
    status: NodeHealth
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
    protocol: int = 0  # the protocol version (`v`) of the node's last heartbeat; 0: none yet
    maintenance: bool = False  # takes no new copies, keeps serving what it holds
    evacuating: bool = False  # every copy moves off (POST /nodes/{id}/evacuate)
    disk_total: int = 0
    disk_used: int = 0
    disk_free: int = 0
    disk_percent: float | None = None
    disk_level: str = "ok"  # ok | above_low | above_high (against the disk watermarks)
    ops_rate: float = 0.0  # KV ops/s its copies served lately (sum of its ShardReports)
    write_rate: float = 0.0
    # shards the map counts on this node for (primary or in-sync replica) that its
    # heartbeats say it does not have (torua.coordinator.copy_reports)
    missing: list[int] = field(default_factory=list)
    # seconds until every lease this node may hold has run out (torua.replication.lease_ledger)
    lease_held: float = 0.0
    data_dir: str = ""  # where it keeps its shards on `host` (as last heard, also once it is gone)


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
    action: InSyncAction


@dataclass(frozen=True)
class NodeRequest:
    """Operator or node -> coordinator about one node: drain | undrain | handoff | evacuate | unevacuate."""

    node_id: str
    action: NodeAction


@dataclass(frozen=True)
class MaintenanceRequest:
    """Operator -> coordinator: put `nodes` in maintenance (or take them out), all or none.
    Afterwards each named node has maintenance = `maintenance` and draining = `maintenance and drain`."""

    nodes: list[str]
    maintenance: bool
    drain: bool = False


@dataclass(frozen=True)
class ExplainRequest:
    """Operator -> coordinator: why is this shard where it is (`AllocationExplanation`)?"""

    shard_id: int


@dataclass(frozen=True)
class CopyExplanation:
    node: str
    role: MapRole
    in_sync: bool
    node_status: NodeHealth
    stays: bool  # the placement plan keeps this copy where it is
    reason: str


@dataclass(frozen=True)
class NodeDecision:
    """One node seen from one shard: `decision` is holds_copy | will_take | could_take | cannot_take;
    `codes` say why it cannot (unhealthy, gone, draining, maintenance, disk_low_watermark,
    disk_high_watermark, max_shards)."""

    node: str
    decision: str
    reason: str
    codes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AllocationExplanation:
    shard_id: int
    # assigned | out_of_sync | under_replicated | moving | unavailable | unassigned
    status: str
    summary: str
    state: str  # the shard map's state of the shard
    primary: str | None
    replication_factor: int
    copies: list[CopyExplanation] = field(default_factory=list)
    nodes: list[NodeDecision] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)  # where the placement plan wants its copies, primary first
    move: MoveStatus | None = None


@dataclass(frozen=True)
class AssignRequest:
    shard_id: int
    node_id: str


@dataclass(frozen=True)
class MoveStatus:
    shard_id: int
    source: str | None
    target: str
    phase: MovePhase
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
    # how long a heartbeat reply lets a primary serve now, and how much longer than
    # noticing a silent node (unhealthy_after heartbeats) a failover would wait now
    # because of leases nodes may still hold (e.g. granted under a slower timing)
    lease_seconds: float = 0.0
    failover_hold: float = 0.0
    # shards whose primary is being changed now (a failover or a planned hand-off)
    handoffs: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class RebalanceRequest:
    """Operator -> coordinator: spread hot shards now (torua.coordinator.load_balance);
    a dry run only says what it would do."""

    dry_run: bool = False


@dataclass(frozen=True)
class LoadAction:
    """Hot `shard_id` leaves `source` for `target`; in a swap, `swap_with` goes the other way.
    how: copy (the copy moves with its data) | primary (an in-sync replica takes over)."""

    how: str
    shard_id: int
    source: str
    target: str
    swap_with: int | None = None


@dataclass(frozen=True)
class RebalanceReply:
    actions: list[LoadAction]
    reason: str  # why these actions, or why none ("balanced: ...", "busy: ...", "settling: ...")
    started: bool = False  # the actions' moves were started (not a dry run)
    loads: dict[str, float] = field(default_factory=dict)  # ops/s per node that may take part, as seen
    mean: float = 0.0
    threshold: float = 0.0  # the busiest node's load must exceed this for anything to happen
    expected: dict[str, float] = field(default_factory=dict)  # per node once the actions are done
    shard_rates: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Ack:
    ok: bool
    error_code: str = ""
    error_message: str = ""
    detail: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------- settings and broadcast


@dataclass(frozen=True)
class SettingsChange:
    """Operator -> coordinator (`torua.coordinator.config.set`): settings to change, by name."""

    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterConfig:
    """Coordinator -> operator: the settings in force (`config`); after a change
    (`config.set`) also which healthy nodes applied it and which did not answer."""

    settings: dict[str, Any]
    revision: int = 0  # of key cluster_config; 0 = never changed, the coordinator's flags
    applied_by: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BroadcastMessage:
    """Anyone allowed -> every node on `torua.cluster.broadcast`. Kinds: `ping`
    (body empty) and `config` (body: a SettingsUpdate, from the coordinator only)."""

    kind: BroadcastKind
    body: dict[str, Any] = field(default_factory=dict)
    sent_at: float = 0.0


@dataclass(frozen=True)
class BroadcastReply:
    """Node -> the broadcast's reply inbox: ok, or why not (an unknown kind is `bad_request`).
    `kind` echoes the kind asked, known or not ("" when the message did not decode)."""

    node_id: str
    ok: bool
    kind: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    error_code: str = ""
    error_message: str = ""


# ------------------------------------------------------------------- graphs
# torua.node.<id>.graph (docs/design/graph.md): one shard's part of a named graph.


@dataclass(frozen=True)
class GraphRef:
    """A graph as the catalog (JetStream bucket `torua_graphs`) has it; every graph
    request carries it, so a shard knows the graph's settings without asking. `uid`
    is new each time a graph of that name is created: rows of an older one never show."""

    name: str
    uid: str
    vector_dim: int = 0  # 0: the graph has no embeddings
    metric: VectorMetric = VectorMetric.COSINE
    text_properties: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VertexData:
    id: str
    label: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    embedding: list[float] | None = None


@dataclass(frozen=True)
class EdgeData:
    src: str
    type: str
    dst: str
    properties: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class GraphHit:
    id: str
    label: str
    score: float  # cosine similarity, -distance for l2, or BM25 with global IDF
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardHits:
    """One shard's answer within a `vector.search`, `text.search` or `text.stats` sent
    for several shards of one node (`GraphRequest.shards`): its hits, best first, or
    its text statistics, or why that shard could not answer (the sender asks that
    shard on its own then). Within an edge op sent for several shards
    (torua.node.node_mux): only the shards refused, with no hits."""

    shard: int
    hits: list[GraphHit] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""
    docs: int = 0  # text.stats: the shard's vertices with text ...
    term_docs: dict[str, int] = field(default_factory=dict)  # ... and those holding each query term


@dataclass(frozen=True)
class ImportProblem:
    """A line of an import batch that was not applied: its index among the batch's
    vertices (kind "vertex") or edges ("edge"), and why."""

    kind: str
    index: int
    error_code: str
    error_message: str


@dataclass(frozen=True)
class SupportItem:
    """A change of the chunks that support a vertex (`type` "": vertex `src`) or an
    edge (src, type, dst) of a GraphRAG corpus (`support`, sent to src's shard;
    docs/design/graphrag.md section 3). `added`: chunk id -> note (a JSON object
    of counts: what the chunk saw); `removed`: chunk ids. A vertex is made with
    `label`, `properties` and `embedding` when its first chunk comes, and deleted
    (with its edges) when its last goes (an item that changes nothing reads how many
    chunks support the target; a vertex nothing supported is left as it is); an edge is put with its weight and
    properties made from its support, and deleted when none is left."""

    src: str
    type: str = ""
    dst: str = ""
    label: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    embedding: list[float] | None = None
    added: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EdgeHalf:
    """One edge as the primaries of its two shards speak of it (`edge.attach`,
    `edge.detach`, `edge.drop`, `edge.check`, `edge.confirm`, and their answers, in the same order):
    the edge, its incarnation (`token`: the seq, in src's shard's log, of the put that
    made its out-half pending) and a state (`HalfState`). Added to the declared
    messages by the edge protocol: a message about an edge must name its incarnation,
    so that a late or repeated one changes nothing it should not."""

    src: str
    type: str
    dst: str
    token: int = 0
    state: HalfState = HalfState.ABSENT
    properties: dict[str, Any] = field(default_factory=dict)  # attach; a check's answer
    weight: float = 1.0


@dataclass(frozen=True)
class GraphRequest:
    op: GraphOp
    shard_id: int
    epoch: int
    graph: GraphRef
    vertex: VertexData | None = None  # vertex.put
    id: str = ""  # vertex.get, vertex.delete, edges
    edge: EdgeData | None = None  # edge.put, edge.delete, edge.attach|detach|drop|check|confirm
    ids: list[str] = field(default_factory=list)  # vertices, neighbours
    direction: Direction = Direction.OUT
    types: list[str] = field(default_factory=list)  # edge types to follow; empty: every type
    limit: int = 1000
    each: int = 0  # neighbours: at most this many edges of each id, its first page (0: only `limit` bounds them)
    cursor: str = ""  # edges: where the previous page ended ("" from the start)
    with_embedding: bool = False  # vertex.get, vertices: include embeddings
    vertices: list[VertexData] = field(default_factory=list)  # import
    edges: list[EdgeData] = field(default_factory=list)  # import
    vector: list[float] = field(default_factory=list)  # vector.search
    k: int = 10
    label: str = ""  # vector.search, text.search: only vertices with this label
    query: str = ""  # text.stats, text.search, cypher
    docs: int = 0  # text.search: the graph's document count over every shard ...
    term_docs: dict[str, int] = field(default_factory=dict)  # ... and each term's document frequency
    params: dict[str, Any] = field(default_factory=dict)  # cypher
    eventual: bool = False  # a read any in-sync copy may answer
    halves: list[EdgeHalf] = field(default_factory=list)  # edge.attach|detach|drop|check|confirm, in batches
    timeout: float = 0.0  # vector.search, text.*, cypher: seconds the sender waits for the answer (0: the node's default)
    request_id: str = ""  # vertex.put, edge.put: the same on every retry of one write (a retry is answered as the first attempt was)
    shards: list[int] = field(default_factory=list)  # vector.search, text.search, the edge ops between primaries: these shards of the node at once
    api_key: str = ""  # torua.Client's one-hop request (subject app.graph): its API key, which the node checks
    supports: list[SupportItem] = field(default_factory=list)  # support: changes of targets whose src is on this shard
    not_after: float = 0.0  # a write: refused (`fenced`) once the node's wall clock (Unix seconds) is past it; 0: no fence
    properties: bool = True  # vector.search, text.search: hits with their properties (False: "{}" each, neither parsed nor sent)


@dataclass(frozen=True)
class GraphReply:
    ok: bool
    epoch: int
    error_code: str = ""
    error_message: str = ""
    created: bool = False  # vertex.put: the vertex did not exist before
    vertex: VertexData | None = None  # vertex.get
    vertices: list[VertexData] = field(default_factory=list)  # vertices, neighbours: the rows found
    missing: list[str] = field(default_factory=list)  # vertices, neighbours: ids asked that do not exist
    edges: list[EdgeData] = field(default_factory=list)  # edges, neighbours
    next_cursor: str = ""  # edges: "" at the end
    hits: list[GraphHit] = field(default_factory=list)  # vector.search, text.search, best first
    docs: int = 0  # text.stats
    term_docs: dict[str, int] = field(default_factory=dict)  # text.stats
    columns: list[str] = field(default_factory=list)  # cypher
    rows: list[list[Any]] = field(default_factory=list)  # cypher
    counts: dict[str, int] = field(default_factory=dict)  # stats: vertices, edges, ...; import: applied
    problems: list[ImportProblem] = field(default_factory=list)  # import
    exists: bool = False  # edge.check
    seq: int = 0  # a write's seq in the shard's log
    halves: list[EdgeHalf] = field(default_factory=list)  # edge.attach|detach|drop|check|confirm: one per half asked
    truncated: bool = False  # neighbours: `limit` cut the edges returned
    parts: list[ShardHits] = field(default_factory=list)  # for `shards`: a search's, one per shard asked; an edge op's, one per shard refused
    support: list[int] = field(default_factory=list)  # support: how many chunks support each target after its change


@dataclass(frozen=True)
class EntityNames:
    """Entities a worker's resolver made for corpus `corpus` (subject
    ``torua.rag.names.<corpus>``, core NATS, from every worker to every worker): the
    others' resolvers learn them, so a near name another worker meets merges with
    them (torua.rag.resolution). `entities`: (entity vertex id, its name)."""

    corpus: str
    entities: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RagJob:
    """One document of a GraphRAG ingestion job, on the JetStream work queue
    ``TORUA_RAG`` (subject ``torua.rag.jobs.<corpus>``), taken by one `torua worker`
    (docs/design/graphrag.md section 4). `id`: the document's id; `job`: the job it is
    part of (its progress is the `j/<job>` vertex of the corpus graph). `task`:
    ``document`` (ingest it), or ``communities`` (a community run over the corpus;
    `id` and `text` unused)."""

    job: str
    corpus: str
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    task: RagTask = RagTask.DOCUMENT


@dataclass(frozen=True)
class RagRequest:
    """A GraphRAG call a gateway passes to the workers (subject ``torua.rag.api``, queue
    group ``torua-rag``) once the caller's API key was checked; `op`: create, get,
    documents, job, delete_document, query, communities (docs/design/graphrag.md
    section 5)."""

    op: str
    corpus: str
    settings: dict[str, Any] = field(default_factory=dict)  # create
    documents: list[dict[str, Any]] = field(default_factory=list)  # documents: {id?, text, metadata?}
    job: str = ""  # documents (the job these belong to), job
    total: int = 0  # documents: how many the whole job has (it may come in several requests)
    id: str = ""  # delete_document
    question: str = ""  # query
    mode: str = "naive"
    k: int = 10
    answer: bool = False  # query: also the corpus's chat model's answer
    metadata: dict[str, Any] = field(default_factory=dict)  # query: only documents whose metadata holds these


@dataclass(frozen=True)
class RagReply:
    ok: bool
    error_code: str = ""
    error_message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
