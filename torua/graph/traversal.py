"""Traversal and shortest path over a graph split into shards, as pure planning.

A vertex's rows and its edge halves live on its shard (`torua.graph.rules.vertex_shard`),
so one hop of a breadth-first search is one request per shard that holds part of
the frontier: `neighbours` (the frontier's rows, and their edges in the direction
asked) or, for the last frontier, `vertices` (rows only). The planners here say
which requests a hop needs (`calls`) and what the answers mean (`take`); the
caller sends them, all of a hop in parallel, and stops the search when its
deadline comes (`stop`). No I/O, no clock: the gateway drives them over NATS
(`torua.gateway.graphs`), the tests over plain dicts.

>>> shard_of = lambda vid: 0
>>> walk = Traversal(["a"], Direction.OUT, (), max_hops=2, limit=10, shard_of=shard_of)
>>> [(c.op, c.ids) for c in walk.calls()]
[('neighbours', ('a',))]
>>> walk.take({0: ShardAnswer(vertices=(VertexData("a"),), edges=(EdgeData("a", "knows", "b"),))})
>>> [(c.op, c.ids) for c in walk.calls()]
[('neighbours', ('b',))]
>>> walk.take({0: ShardAnswer(vertices=(VertexData("b"),))})
>>> walk.done, [(v.id, hops) for v, hops in walk.result().vertices]
(True, [('a', 0), ('b', 1)])
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping

from torua.protocol.messages import EdgeData, GraphReply, VertexData
from torua.protocol.vocabulary import Direction, GraphOp

ShardOf = Callable[[str], int]
EdgeKey = tuple[str, str, str]

# Edges one shard returns for one hop's frontier; more is a cut (`ShardAnswer.cut`).
MAX_NEIGHBOUR_EDGES = 50_000
# Ids one request names at most (what a node takes, torua.node.graph_checks.MAX_IDS):
# a bigger part of a frontier goes in several requests (`ShardCall.split`).
MAX_IDS = 10_000

REVERSE = {Direction.OUT: Direction.IN, Direction.IN: Direction.OUT, Direction.BOTH: Direction.BOTH}


@dataclass(frozen=True)
class ShardCall:
    """One request of a hop: `op` (neighbours or vertices) about `ids`, all of `shard`."""

    shard: int
    op: GraphOp
    ids: tuple[str, ...]
    direction: Direction = Direction.OUT
    types: tuple[str, ...] = ()
    limit: int = MAX_NEIGHBOUR_EDGES

    def split(self, max_ids: int = MAX_IDS) -> list["ShardCall"]:
        """The call as requests of at most `max_ids` ids each (their answers: `ShardAnswer.merged`)."""
        return [replace(self, ids=self.ids[i : i + max_ids]) for i in range(0, len(self.ids), max_ids)] or [self]


@dataclass(frozen=True)
class ShardAnswer:
    """What a shard answered to a `ShardCall`: the rows of the ids it holds, the ids it
    does not hold, their edges, and whether it had more edges than the call's limit."""

    vertices: tuple[VertexData, ...] = ()
    missing: tuple[str, ...] = ()
    edges: tuple[EdgeData, ...] = ()
    cut: bool = False

    @classmethod
    def of(cls, reply: GraphReply) -> "ShardAnswer":
        return cls(tuple(reply.vertices), tuple(reply.missing), tuple(reply.edges), reply.truncated)

    @classmethod
    def merged(cls, answers: Iterable["ShardAnswer"]) -> "ShardAnswer":
        """The answers to the parts of one split call, as one."""
        answers = list(answers)
        return cls(
            tuple(v for a in answers for v in a.vertices), tuple(m for a in answers for m in a.missing),
            tuple(e for a in answers for e in a.edges), any(a.cut for a in answers),
        )


def edge_key(e: EdgeData) -> EdgeKey:
    return (e.src, e.type, e.dst)


def by_shard(ids: Iterable[str], shard_of: ShardOf) -> dict[int, tuple[str, ...]]:
    """The ids grouped by their shard, each group sorted, shards in order."""
    groups: dict[int, list[str]] = {}
    for vid in sorted(set(ids)):
        groups.setdefault(shard_of(vid), []).append(vid)
    return {shard: tuple(groups[shard]) for shard in sorted(groups)}


def steps(e: EdgeData, frontier: set[str] | frozenset[str], direction: Direction) -> list[tuple[str, str]]:
    """The moves `e` offers from the frontier: (from, to) pairs.

    >>> steps(EdgeData("a", "t", "b"), {"a"}, Direction.OUT), steps(EdgeData("a", "t", "b"), {"a"}, Direction.IN)
    ([('a', 'b')], [])
    >>> steps(EdgeData("a", "t", "b"), {"a", "b"}, Direction.BOTH)
    [('a', 'b'), ('b', 'a')]
    """
    out = []
    if direction in (Direction.OUT, Direction.BOTH) and e.src in frontier:
        out.append((e.src, e.dst))
    if direction in (Direction.IN, Direction.BOTH) and e.dst in frontier:
        out.append((e.dst, e.src))
    return out


@dataclass(frozen=True)
class TraversalResult:
    vertices: list[tuple[VertexData, int]]  # each with its hops (the shortest distance from the seeds), nearest first
    edges: list[EdgeData]  # the edges walked between vertices of the answer
    truncated: bool  # a bound (limit, max_hops' edge cap, the deadline) cut the answer


class Traversal:
    """Breadth-first search from `seeds`, hop by hop, at most `max_hops` hops and
    `limit` vertices (seeds included). Within a hop, vertices beyond the limit are
    cut in id order, so an answer is the same every time."""

    def __init__(
        self, seeds: Iterable[str], direction: Direction, types: Iterable[str], max_hops: int, limit: int, shard_of: ShardOf,
        want_edges: bool = False, edge_limit: int = MAX_NEIGHBOUR_EDGES,
    ) -> None:
        self.direction, self.types, self.max_hops, self.limit = direction, tuple(sorted(set(types))), max_hops, limit
        self.shard_of, self.want_edges, self.edge_limit = shard_of, want_edges, edge_limit
        seeds = sorted(set(seeds))
        self.truncated = len(seeds) > limit
        self.hop = 0
        self.frontier: list[str] = seeds[:limit]
        self.hops: dict[str, int] = dict.fromkeys(self.frontier, 0)  # every vertex found so far
        self.rows: dict[str, VertexData] = {}  # found and read
        self.walked: dict[EdgeKey, EdgeData] = {}
        self.done = not self.frontier

    def calls(self) -> list[ShardCall]:
        """The requests of the current hop (none once done)."""
        if self.done:
            return []
        op = GraphOp.NEIGHBOURS if self.hop < self.max_hops else GraphOp.VERTICES
        return [ShardCall(shard, op, ids, self.direction, self.types, self.edge_limit) for shard, ids in by_shard(self.frontier, self.shard_of).items()]

    def take(self, answers: Mapping[int, ShardAnswer]) -> None:
        """Every answer of the current hop, by shard."""
        assert not self.done, "the traversal is over"
        frontier = frozenset(self.frontier)
        for answer in answers.values():
            self.truncated |= answer.cut
            for v in answer.vertices:
                if v.id in frontier:
                    self.rows[v.id] = v
            for vid in answer.missing:
                if vid in frontier and vid not in self.rows:
                    self.hops.pop(vid, None)  # reached by an edge, or a seed, that names no vertex
        if self.hop >= self.max_hops:
            self.done = True
            return
        found: set[str] = set()
        for answer in answers.values():
            for e in answer.edges:
                if self.types and e.type not in self.types:
                    continue
                moves = steps(e, frontier, self.direction)
                if moves and self.want_edges:
                    self.walked[edge_key(e)] = e
                found.update(to for _, to in moves if to not in self.hops)
        new = sorted(found)
        room = self.limit - len(self.hops)
        if len(new) > room:
            new, self.truncated = new[: max(room, 0)], True
        self.hop += 1
        self.hops.update(dict.fromkeys(new, self.hop))
        self.frontier = new
        self.done = not new

    def stop(self) -> None:
        """The deadline: end here. Vertices found but not yet read are left out."""
        if not self.done:
            self.done = self.truncated = True

    def result(self) -> TraversalResult:
        vertices = sorted(((v, self.hops[vid]) for vid, v in self.rows.items()), key=lambda item: (item[1], item[0].id))
        edges = [e for k, e in sorted(self.walked.items()) if e.src in self.rows and e.dst in self.rows]
        return TraversalResult(vertices, edges, self.truncated)


# ------------------------------------------------------------ shortest path


@dataclass
class _Side:
    """One end of a bidirectional search: how far it got and how it got there."""

    origin: str
    direction: Direction
    depth: int = 0
    frontier: list[str] = field(default_factory=list)
    parent: dict[str, tuple[str, EdgeData] | None] = field(default_factory=dict)  # vertex -> (one step nearer the origin, edge)
    dist: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frontier = [self.origin]
        self.parent[self.origin] = None
        self.dist[self.origin] = 0

    def chain(self, vid: str) -> tuple[list[str], list[EdgeData]]:
        """The ids from `vid` back to the origin, and the edges between them."""
        ids, edges = [vid], []
        step = self.parent[vid]
        while step is not None:
            prev, e = step
            ids.append(prev)
            edges.append(e)
            step = self.parent[prev]
        return ids, edges


@dataclass(frozen=True)
class PathResult:
    path: list[str]  # from source to target; empty when none was found
    edges: list[EdgeData]  # path[i] to path[i+1], in order
    missing: str | None = None  # source or target, when it does not exist
    incomplete: bool = False  # a shard had more edges than a hop's cap: a longer or no path may be wrong

    @property
    def found(self) -> bool:
        return bool(self.path)


class PathSearch:
    """Shortest path by hops from `source` to `target`, at most `max_hops`: a
    bidirectional breadth-first search that expands, each round, whole the side
    whose frontier is smaller (from `source` along `direction`, from `target`
    against it). The first round that meets gives a shortest path: before it no
    vertex was within reach of both sides, so every path is longer than the
    depths so far; the round adds one, and the meeting vertex nearest the other
    side's origin completes a path of that length."""

    def __init__(
        self, source: str, target: str, direction: Direction, types: Iterable[str], max_hops: int, shard_of: ShardOf,
        edge_limit: int = MAX_NEIGHBOUR_EDGES,
    ) -> None:
        self.source, self.target, self.max_hops, self.shard_of = source, target, max_hops, shard_of
        self.types, self.edge_limit = tuple(sorted(set(types))), edge_limit
        self.sides = (_Side(source, direction), _Side(target, REVERSE[direction]))
        self.done = False
        self.incomplete = False
        self._expanding = 0
        self._verify = False  # the search ended without a path before the target's side ran: does it exist?
        self._result = PathResult([], [])

    def calls(self) -> list[ShardCall]:
        if self.done:
            return []
        if self.source == self.target:
            return [ShardCall(self.shard_of(self.source), GraphOp.VERTICES, (self.source,))]
        forward, backward = self.sides
        if self._verify:
            return [ShardCall(self.shard_of(self.target), GraphOp.VERTICES, (self.target,))]
        # each side once first (so a missing endpoint is named), then the smaller frontier
        if forward.depth == 0 or backward.depth == 0:
            self._expanding = 0 if forward.depth == 0 else 1
        else:
            self._expanding = 0 if len(forward.frontier) <= len(backward.frontier) else 1
        side = self.sides[self._expanding]
        return [
            ShardCall(shard, GraphOp.NEIGHBOURS, ids, side.direction, self.types, self.edge_limit)
            for shard, ids in by_shard(side.frontier, self.shard_of).items()
        ]

    def take(self, answers: Mapping[int, ShardAnswer]) -> None:
        assert not self.done, "the search is over"
        if self.source == self.target or self._verify:
            self.done = True
            vid = self.target
            found = any(v.id == vid for a in answers.values() for v in a.vertices)
            if self.source == self.target:
                self._result = PathResult([vid], []) if found else PathResult([], [], missing=vid)
            elif not found:
                self._result = PathResult([], [], missing=vid)
            return
        side, other = self.sides[self._expanding], self.sides[1 - self._expanding]
        if side.depth == 0 and any(side.origin in a.missing for a in answers.values()):
            self.done = True
            self._result = PathResult([], [], missing=side.origin)
            return
        frontier = frozenset(side.frontier)
        reached: dict[str, tuple[str, EdgeData]] = {}
        edges = sorted((e for a in answers.values() for e in a.edges), key=edge_key)
        for e in edges:
            if self.types and e.type not in self.types:
                continue
            for at, to in steps(e, frontier, side.direction):
                if to not in side.parent and to not in reached:
                    reached[to] = (at, e)
        self.incomplete |= any(a.cut for a in answers.values())
        side.depth += 1
        for vid, step in reached.items():
            side.parent[vid] = step
            side.dist[vid] = side.depth
        side.frontier = sorted(reached)
        meetings = [vid for vid in side.frontier if vid in other.dist]
        if meetings:
            meet = min(meetings, key=lambda vid: (other.dist[vid], vid))
            self.done = True
            self._result = self._path(meet)
        elif not side.frontier or self.sides[0].depth + self.sides[1].depth >= self.max_hops:
            # no path; unless the target's side never ran, read its row to say which it is
            self._verify = self.sides[1].depth == 0
            self.done = not self._verify

    def _path(self, meet: str) -> PathResult:
        forward_ids, forward_edges = self.sides[0].chain(meet)
        backward_ids, backward_edges = self.sides[1].chain(meet)
        return PathResult(forward_ids[::-1] + backward_ids[1:], forward_edges[::-1] + backward_edges, incomplete=self.incomplete)

    def stop(self) -> None:
        self.done = True

    def result(self) -> PathResult:
        if not self._result.found and self.incomplete:
            return PathResult([], [], self._result.missing, incomplete=True)
        return self._result
