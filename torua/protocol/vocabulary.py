"""The words of the protocol: each set of values a message field takes, as a type.

Every vocabulary is a `StrEnum`: a member *is* its wire text
(``CopyRole.PRIMARY == "primary"``; it packs, prints and hashes as "primary"), so
code compares against names rather than bare strings, and older code that
compares strings still works. The codec (`torua.protocol.codec`) checks every
field typed with one when it decodes: anything but one of its values is
`bad_request` naming the field and the values allowed, e.g.
``NodeRequest.action: 'explode' is not one of: drain, undrain, handoff, evacuate, unevacuate``.

A newer release may add a value (rolling upgrade, docs/protocol.md#vocabularies).
What an older receiver does with a text value it does not know is decided per
vocabulary: refused like any bad value, except for the vocabularies in
`READ_UNKNOWN_AS`, which read it as that safe default (a report or a display
where refusing the whole message would do harm: a refused heartbeat would fail
the node over, a refused map would stop all routing).

>>> CopyRole("frozen") is CopyRole.FROZEN, CopyRole.FROZEN == "frozen", CopyRole.FROZEN
(True, True, 'frozen')
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache


class Vocabulary(StrEnum):
    """A protocol vocabulary; its repr is its wire text, so messages print as they travel."""

    def __repr__(self) -> str:
        return repr(self.value)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return _values(cls)


@cache
def _values(vocabulary: type[Vocabulary]) -> tuple[str, ...]:
    """A vocabulary's wire texts, made once (a node checks a request's op on every message)."""
    return tuple(member.value for member in vocabulary)


class CopyRole(Vocabulary):
    """What one node's copy of a shard is (`ShardReport.role`; the node's transition
    table is torua.node.roles). A node reports every role but `absent`."""

    PRIMARY = "primary"  # serves reads and writes, and the log its replicas follow
    REPLICA = "replica"  # follows its primary's log
    FROZEN = "frozen"  # a move is about to switch the shard away: reads yes, writes `moved`
    COPYING = "copying"  # a move is filling it; serves nothing
    RETIRED = "retired"  # kept on disk, assigned elsewhere; dropped once safe
    ABSENT = "absent"  # no data here


class MapRole(Vocabulary):
    """A copy's role in the shard map, and so in a node's assignment (`AssignedShard.role`)."""

    PRIMARY = "primary"
    REPLICA = "replica"


class ShardState(Vocabulary):
    """`ShardEntry.state`, as the coordinator judges it (torua.coordinator.shardmap.shard_state)."""

    ACTIVE = "active"
    MOVING = "moving"  # a copy is moving to `target`
    UNASSIGNED = "unassigned"  # no primary yet
    UNAVAILABLE = "unavailable"  # its primary's node is not healthy, or says it lacks the shard


class MovePhase(Vocabulary):
    """The phases of a move (`MoveStatus.phase`; the table is torua.coordinator.moves)."""

    COPYING = "copying"
    FREEZING = "freezing"
    CATCHING_UP = "catching_up"
    SWITCHING = "switching"
    DROPPING = "dropping"
    DONE = "done"
    ABORTING = "aborting"
    ABORTED = "aborted"


class NodeHealth(Vocabulary):
    """A node's health as the leading coordinator judges it (torua.coordinator.health)."""

    UNKNOWN = "unknown"  # no heartbeat since this coordinator started
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # `unhealthy_after` heartbeats in a row missed


class InSyncAction(Vocabulary):
    """`InSyncChange.action`: a primary takes a replica out of its in-sync set or back in."""

    REMOVE = "remove"
    ADD = "add"


class NodeAction(Vocabulary):
    """`NodeRequest.action`: what an operator (or a stopping node) asks about one node."""

    DRAIN = "drain"
    UNDRAIN = "undrain"
    HANDOFF = "handoff"
    EVACUATE = "evacuate"
    UNEVACUATE = "unevacuate"


class BroadcastKind(Vocabulary):
    """`BroadcastMessage.kind`: what every node is asked at once."""

    CONFIG = "config"
    PING = "ping"


class KvOp(Vocabulary):
    """`KvRequest.op`."""

    GET = "get"
    PUT = "put"
    DELETE = "delete"
    LIST = "list"


class GraphOp(Vocabulary):
    """`GraphRequest.op`: what a node is asked about one shard's part of a graph
    (torua.node.graph). The last four pass between the primaries of an edge's two
    shards (docs/design/graph.md, section 4)."""

    VERTEX_PUT = "vertex.put"
    VERTEX_GET = "vertex.get"
    VERTEX_DELETE = "vertex.delete"
    EDGE_PUT = "edge.put"
    EDGE_DELETE = "edge.delete"
    EDGES = "edges"  # one vertex's edges, a page at a time
    IMPORT = "import"  # vertices and edges whose owning shard is this one, in one batch
    VERTICES = "vertices"  # the rows of some vertices of this shard
    NEIGHBOURS = "neighbours"  # one traversal hop: rows and edges of frontier vertices of this shard
    VECTOR_SEARCH = "vector.search"
    TEXT_STATS = "text.stats"  # document count and each term's document frequency, for global IDF
    TEXT_SEARCH = "text.search"
    CYPHER = "cypher"
    STATS = "stats"
    DROP = "drop"
    EDGE_ATTACH = "edge.attach"  # src's shard -> dst's shard: hold the in-half if dst exists
    EDGE_DETACH = "edge.detach"  # src's shard -> dst's shard: drop the in-half
    EDGE_DROP = "edge.drop"  # dst's shard -> src's shard: dst is gone, drop the edge
    EDGE_CHECK = "edge.check"  # dst's shard -> src's shard: does this edge (still) exist?
    EDGE_CONFIRM = "edge.confirm"  # src's shard -> dst's shard: committed, confirm the in-half
    SUPPORT = "support"  # GraphRAG: chunks that support vertices and edges (docs/design/graphrag.md section 3)


class HalfState(Vocabulary):
    """`EdgeHalf.state`, between the primaries of an edge's two shards
    (docs/design/graph.md, section 4). In an `edge.check` answer: the out-half on src's
    shard (absent, pending, committed, removing). In an `edge.attach` request:
    pending (hold it), or committed (src's shard holds it committed: keep it if
    held, never attach it anew). In an `edge.attach` answer: what dst's shard did
    (attached; missing: dst is not there; newer: it holds a newer incarnation of
    the edge; absent: not held when asked as committed, or an incarnation it was
    told to detach). In an `edge.detach` or `edge.drop` answer: done."""

    ABSENT = "absent"
    PENDING = "pending"
    COMMITTED = "committed"
    REMOVING = "removing"
    ATTACHED = "attached"
    MISSING = "missing"
    NEWER = "newer"
    DONE = "done"


class Direction(Vocabulary):
    """Which edges of a vertex: leaving it, entering it, or both."""

    OUT = "out"
    IN = "in"
    BOTH = "both"


class VectorMetric(Vocabulary):
    """How a graph's embeddings are compared (`PUT /graphs/{g}` `metric`)."""

    COSINE = "cosine"
    L2 = "l2"


class RagTask(Vocabulary):
    """What a message on the GraphRAG work queue asks a worker to do (`RagJob.task`)."""

    DOCUMENT = "document"  # ingest one document
    COMMUNITIES = "communities"  # a community run over the corpus


# A text value a vocabulary does not know (a newer peer's) is read as this; every
# other vocabulary refuses it (bad_request). See docs/protocol.md#vocabularies.
READ_UNKNOWN_AS: dict[type[Vocabulary], Vocabulary] = {
    # ShardReport.role: the coordinator neither counts on the copy (not in sync, not
    # serving) nor drops it; refusing the heartbeat would fail the whole node over.
    CopyRole: CopyRole.ABSENT,
    # ShardEntry.state: routed like an active shard (its primary answers for itself);
    # the coordinator judges every state again each tick. Refusing would stop routing.
    ShardState: ShardState.ACTIVE,
    # NodeStatus.status, CopyExplanation.node_status: shown as not known.
    NodeHealth: NodeHealth.UNKNOWN,
}
