"""A graph split into shards as plain dicts, answering the requests of the pure
planners (`torua.graph.traversal`) the way a node answers `neighbours` and
`vertices`: the rows of the ids it holds, the ids it does not hold, and their
edge halves in the direction asked, at most `limit` (more is a cut)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import networkx as nx

from torua.graph.rules import vertex_shard
from torua.graph.traversal import ShardAnswer, ShardCall, edge_key
from torua.protocol.messages import EdgeData, VertexData
from torua.protocol.vocabulary import Direction, GraphOp


class ShardedGraph:
    def __init__(self, name: str, num_shards: int, vertices: Iterable[VertexData], edges: Iterable[EdgeData]) -> None:
        self.name, self.num_shards = name, num_shards
        self.vertices: list[dict[str, VertexData]] = [{} for _ in range(num_shards)]
        self.out: list[dict[str, list[EdgeData]]] = [defaultdict(list) for _ in range(num_shards)]
        self.into: list[dict[str, list[EdgeData]]] = [defaultdict(list) for _ in range(num_shards)]
        for v in vertices:
            self.vertices[self.shard_of(v.id)][v.id] = v
        for e in edges:
            self.out[self.shard_of(e.src)][e.src].append(e)  # the out-half, on src's shard
            self.into[self.shard_of(e.dst)][e.dst].append(e)  # the in-half, on dst's shard
        self.rounds: list[list[ShardCall]] = []

    def shard_of(self, vertex_id: str) -> int:
        return vertex_shard(self.name, vertex_id, self.num_shards)

    @classmethod
    def of(cls, graph: nx.DiGraph, name: str = "g", num_shards: int = 8) -> "ShardedGraph":
        """A networkx graph's nodes as vertices (label from the node's "label"), its
        edges with their "type" (default "link")."""
        vertices = [VertexData(str(n), graph.nodes[n].get("label", ""), {"n": str(n)}) for n in graph.nodes]
        edges = [EdgeData(str(a), data.get("type", "link"), str(b)) for a, b, data in graph.edges(data=True)]
        return cls(name, num_shards, vertices, edges)

    def answer(self, call: ShardCall) -> ShardAnswer:
        assert all(self.shard_of(vid) == call.shard for vid in call.ids), "an id sent to a shard that does not hold it"
        rows = self.vertices[call.shard]
        found = tuple(rows[vid] for vid in call.ids if vid in rows)
        missing = tuple(vid for vid in call.ids if vid not in rows)
        if call.op == GraphOp.VERTICES:
            return ShardAnswer(found, missing)
        edges: dict[Any, EdgeData] = {}
        for vid in call.ids:
            halves = []
            if call.direction in (Direction.OUT, Direction.BOTH):
                halves += self.out[call.shard].get(vid, [])
            if call.direction in (Direction.IN, Direction.BOTH):
                halves += self.into[call.shard].get(vid, [])
            for e in halves:
                if not call.types or e.type in call.types:
                    edges[edge_key(e)] = e
        every = sorted(edges.values(), key=edge_key)
        return ShardAnswer(found, missing, tuple(every[: call.limit]), cut=len(every) > call.limit)

    def run(self, planner, stop_after: int | None = None):
        """Drive `planner` to its end (or stop it after `stop_after` rounds), recording
        each round's calls; its result."""
        while not planner.done:
            if stop_after is not None and len(self.rounds) >= stop_after:
                planner.stop()
                break
            calls = planner.calls()
            shards = [c.shard for c in calls]
            assert len(shards) == len(set(shards)), "one request per shard per hop"
            self.rounds.append(calls)
            planner.take({c.shard: self.answer(c) for c in calls})
        return planner.result()
