"""Traversal and shortest path across shards (torua.graph.traversal), pure: tables
of small cases, then generated graphs (random, power-law, with Unicode and slash
ids) split into shards as plain dicts, with networkx as the oracle."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from tests.support.graph_shards import ShardedGraph
from torua.graph.traversal import PathSearch, ShardAnswer, Traversal, by_shard, steps
from torua.protocol.messages import EdgeData, VertexData
from torua.protocol.vocabulary import Direction, GraphOp

OUT, IN, BOTH = Direction.OUT, Direction.IN, Direction.BOTH


def small(edges: list[tuple[str, str, str]], extra: tuple[str, ...] = (), num_shards: int = 4) -> ShardedGraph:
    ids = sorted({x for a, _, b in edges for x in (a, b)} | set(extra))
    return ShardedGraph("g", num_shards, [VertexData(i, "L") for i in ids], [EdgeData(a, t, b) for a, t, b in edges])


CHAIN = [("a", "t", "b"), ("b", "t", "c"), ("c", "t", "d"), ("x", "t", "a")]


def walk(graph: ShardedGraph, seeds, direction=OUT, types=(), max_hops=6, limit=1000, edges=False, **more):
    planner = Traversal(seeds, direction, types, max_hops, limit, graph.shard_of, want_edges=edges, **more)
    return graph.run(planner)


def hops(result) -> dict[str, int]:
    return {v.id: h for v, h in result.vertices}


@pytest.mark.parametrize(
    "edges,seeds,direction,types,max_hops,limit,expected,truncated",
    [
        (CHAIN, ["a"], OUT, (), 6, 1000, {"a": 0, "b": 1, "c": 2, "d": 3}, False),
        (CHAIN, ["a"], OUT, (), 2, 1000, {"a": 0, "b": 1, "c": 2}, False),
        (CHAIN, ["a"], IN, (), 6, 1000, {"a": 0, "x": 1}, False),
        (CHAIN, ["b"], BOTH, (), 1, 1000, {"a": 1, "b": 0, "c": 1}, False),
        (CHAIN, ["a", "d"], OUT, (), 6, 1000, {"a": 0, "b": 1, "c": 2, "d": 0}, False),  # hops: nearest seed
        (CHAIN, ["a"], OUT, (), 6, 2, {"a": 0, "b": 1}, True),  # limit counts the seeds
        (CHAIN, ["a"], OUT, (), 6, 4, {"a": 0, "b": 1, "c": 2, "d": 3}, False),  # exactly the limit: nothing cut
        (CHAIN, ["d"], OUT, (), 6, 1000, {"d": 0}, False),
        (CHAIN, ["nobody"], OUT, (), 6, 1000, {}, False),  # a seed that is no vertex is left out
        (CHAIN, ["a", "nobody"], OUT, (), 1, 1000, {"a": 0, "b": 1}, False),
        ([("a", "t", "b"), ("a", "u", "c")], ["a"], OUT, ("u",), 6, 1000, {"a": 0, "c": 1}, False),
        ([("a", "t", "a")], ["a"], BOTH, (), 6, 1000, {"a": 0}, False),  # a self-loop
        ([("a", "t", "b"), ("b", "t", "a")], ["a"], BOTH, (), 6, 1000, {"a": 0, "b": 1}, False),
        # within a hop the cut keeps ids in order, so the answer is the same every time
        ([("s", "t", "c"), ("s", "t", "b"), ("s", "t", "a")], ["s"], OUT, (), 6, 3, {"s": 0, "a": 1, "b": 1}, True),
    ],
)
def test_traversal_table(edges, seeds, direction, types, max_hops, limit, expected, truncated):
    graph = small(edges)
    result = walk(graph, seeds, direction, types, max_hops, limit)
    assert hops(result) == expected
    assert result.truncated is truncated
    assert [h for _, h in result.vertices] == sorted(h for _, h in result.vertices), "nearest first"


def test_each_hop_is_one_request_per_shard_and_the_last_reads_rows_only():
    graph = small([("a", "t", x) for x in "bcdefghij"] + [("b", "t", "k")], num_shards=4)
    walk(graph, ["a"], max_hops=2)
    ops = [[c.op for c in calls] for calls in graph.rounds]
    assert ops[0] == [GraphOp.NEIGHBOURS] and set(ops[1]) == {GraphOp.NEIGHBOURS} and set(ops[2]) == {GraphOp.VERTICES}
    assert len(graph.rounds) == 3
    for calls in graph.rounds:
        for call in calls:
            assert all(graph.shard_of(i) == call.shard for i in call.ids)


def test_edges_walked_are_those_between_vertices_of_the_answer():
    graph = small([("a", "t", "b"), ("b", "t", "c"), ("c", "t", "a"), ("c", "t", "d")])
    result = walk(graph, ["a"], max_hops=2, edges=True)
    assert hops(result) == {"a": 0, "b": 1, "c": 2}
    # c -> a is not walked (c is the last hop), c -> d leads out of the answer
    assert [(e.src, e.dst) for e in result.edges] == [("a", "b"), ("b", "c")]
    both = walk(small([("a", "t", "b"), ("b", "t", "c"), ("c", "t", "a")]), ["a"], BOTH, max_hops=1, edges=True)
    assert sorted((e.src, e.dst) for e in both.edges) == [("a", "b"), ("c", "a")]
    assert walk(graph, ["a"], max_hops=2).edges == []  # only when asked


def test_a_shard_with_more_edges_than_the_cap_truncates():
    graph = small([("a", "t", x) for x in "bcdef"])
    result = walk(graph, ["a"], max_hops=1, edge_limit=2)
    assert result.truncated and len(result.vertices) == 3


def test_the_deadline_stops_it_with_what_was_read():
    graph = small(CHAIN)
    result = graph.run(Traversal(["a"], OUT, (), 6, 1000, graph.shard_of), stop_after=2)
    # hops 0 and 1 were read (a's and b's rows); c was found but not read
    assert hops(result) == {"a": 0, "b": 1} and result.truncated


def test_seeds_beyond_the_limit_are_cut():
    result = walk(small(CHAIN), ["a", "b", "c"], limit=2)
    assert hops(result) == {"a": 0, "b": 0} and result.truncated


def test_by_shard_and_steps():
    assert by_shard(["b", "a", "c", "a"], lambda i: {"a": 1, "b": 0, "c": 1}[i]) == {0: ("b",), 1: ("a", "c")}
    e = EdgeData("a", "t", "b")
    assert steps(e, {"b"}, IN) == [("b", "a")] and steps(e, {"b"}, OUT) == []


# ------------------------------------------------------------ shortest path


def path(graph: ShardedGraph, source, target, direction=OUT, types=(), max_hops=6, **more):
    return graph.run(PathSearch(source, target, direction, types, max_hops, graph.shard_of, **more))


@pytest.mark.parametrize(
    "edges,source,target,direction,max_hops,expected",
    [
        (CHAIN, "a", "d", OUT, 6, ["a", "b", "c", "d"]),
        (CHAIN, "x", "d", OUT, 6, ["x", "a", "b", "c", "d"]),
        (CHAIN, "x", "d", OUT, 3, []),  # 4 hops needed
        (CHAIN, "x", "d", OUT, 4, ["x", "a", "b", "c", "d"]),
        (CHAIN, "d", "a", OUT, 6, []),
        (CHAIN, "d", "a", IN, 6, ["d", "c", "b", "a"]),
        (CHAIN, "d", "x", BOTH, 6, ["d", "c", "b", "a", "x"]),
        (CHAIN, "a", "a", OUT, 6, ["a"]),
        (CHAIN + [("a", "t", "d")], "x", "d", OUT, 6, ["x", "a", "d"]),
        ([("a", "t", "b"), ("c", "t", "d")], "a", "d", BOTH, 6, []),
    ],
)
def test_shortest_path_table(edges, source, target, direction, max_hops, expected):
    result = path(small(edges), source, target, direction, max_hops=max_hops)
    assert result.path == expected
    assert [(e.src, e.dst) if direction != IN else (e.dst, e.src) for e in result.edges] == list(zip(expected, expected[1:])) or direction == BOTH
    assert result.missing is None


@pytest.mark.parametrize("source,target,missing", [("nobody", "a", "nobody"), ("a", "nobody", "nobody"), ("nobody", "nobody", "nobody")])
def test_shortest_path_names_an_endpoint_that_does_not_exist(source, target, missing):
    graph = small(CHAIN)
    result = path(graph, source, target)
    assert not result.found and result.missing == missing


def test_shortest_path_edges_follow_the_path_in_any_direction():
    graph = small(CHAIN)
    result = path(graph, "d", "x", BOTH)
    assert [(e.src, e.dst) for e in result.edges] == [("c", "d"), ("b", "c"), ("a", "b"), ("x", "a")]


def test_a_cut_without_a_path_says_so():
    graph = small([("a", "t", x) for x in "bcdef"] + [("f", "t", "z")])
    assert path(graph, "a", "z", edge_limit=2).incomplete


# ------------------------------------------------------------- networkx as the oracle

ODD_IDS = ["v/{}", "数字/{}", "a b/{}", "ü%{}", "x?y#{}", "/lead/{}", "{}/trail/", "emoji 🚀 {}"]


def relabelled(graph: nx.DiGraph, rng: random.Random) -> nx.DiGraph:
    """Nodes as string ids with Unicode, slashes, spaces and URL characters; edges with a type."""
    out = nx.relabel_nodes(graph, {n: ODD_IDS[n % len(ODD_IDS)].format(n) for n in graph.nodes})
    for a, b in out.edges:
        out.edges[a, b]["type"] = rng.choice(["knows", "cites", "likes"])
    return out


def generated() -> list[tuple[str, nx.DiGraph]]:
    rng = random.Random(11)
    graphs = [
        ("random sparse", nx.gnp_random_graph(300, 0.008, seed=1, directed=True)),
        ("random dense", nx.gnp_random_graph(120, 0.05, seed=2, directed=True)),
        ("power-law", nx.DiGraph(nx.scale_free_graph(400, seed=3))),
        ("tree", nx.bfs_tree(nx.random_labeled_tree(200, seed=4), 0)),
    ]
    return [(name, relabelled(g, rng)) for name, g in graphs]


GRAPHS = generated()


def oracle_view(graph: nx.DiGraph, direction: Direction, types: tuple[str, ...]) -> nx.Graph:
    if types:
        kept = nx.DiGraph()
        kept.add_nodes_from(graph.nodes)
        kept.add_edges_from((a, b) for a, b, t in graph.edges(data="type") if t in types)
        graph = kept
    return {OUT: graph, IN: graph.reverse(copy=True), BOTH: graph.to_undirected(as_view=True)}[direction]


def oracle_hops(graph: nx.DiGraph, seeds, direction, types, max_hops) -> dict[str, int]:
    view = oracle_view(graph, direction, types)
    return dict(nx.multi_source_dijkstra_path_length(view, set(seeds), cutoff=max_hops))


CASES = [
    (OUT, (), 2), (OUT, (), 6), (IN, (), 3), (BOTH, (), 2), (BOTH, (), 4), (OUT, ("knows", "cites"), 3), (BOTH, ("likes",), 6),
]


@pytest.mark.parametrize("name,graph", GRAPHS, ids=[n for n, _ in GRAPHS])
@pytest.mark.parametrize("direction,types,max_hops", CASES)
def test_k_hop_sets_with_hop_counts_match_networkx(name, graph, direction, types, max_hops):
    rng = random.Random(f"{name}{direction}{types}{max_hops}")
    nodes = sorted(graph.nodes)
    sharded = ShardedGraph.of(graph, num_shards=7)
    for _ in range(12):
        seeds = rng.sample(nodes, rng.choice([1, 1, 2, 5]))
        result = walk(sharded, seeds, direction, types, max_hops, limit=100_000, edges=True)
        assert hops(result) == oracle_hops(graph, seeds, direction, types, max_hops), seeds
        assert not result.truncated
        got = hops(result)
        view = oracle_view(graph, direction, types)
        walked = set()
        for a, b in view.edges:
            for u, v in ((a, b), (b, a)) if direction == BOTH else ((a, b),):
                if got.get(u, max_hops) < max_hops and v in got:
                    walked.add(frozenset((u, v)) if direction == BOTH else (u, v) if direction == OUT else (v, u))
        seen = {frozenset((e.src, e.dst)) if direction == BOTH else (e.src, e.dst) for e in result.edges}
        assert seen == walked
        for e in result.edges:
            assert graph.has_edge(e.src, e.dst) and graph.edges[e.src, e.dst]["type"] == e.type


@pytest.mark.parametrize("name,graph", GRAPHS, ids=[n for n, _ in GRAPHS])
def test_a_limit_keeps_the_nearest_vertices_in_id_order(name, graph):
    rng = random.Random(name)
    sharded = ShardedGraph.of(graph, num_shards=5)
    for _ in range(10):
        seeds, limit = rng.sample(sorted(graph.nodes), 2), rng.randint(1, 60)
        expected = sorted(oracle_hops(graph, seeds, BOTH, (), 6).items(), key=lambda item: (item[1], item[0]))
        result = walk(sharded, seeds, BOTH, (), 6, limit)
        assert [(v.id, h) for v, h in result.vertices] == expected[:limit]
        assert result.truncated is (len(expected) > limit)


@pytest.mark.parametrize("name,graph", GRAPHS, ids=[n for n, _ in GRAPHS])
@pytest.mark.parametrize("direction,types,max_hops", [(OUT, (), 6), (BOTH, (), 6), (IN, (), 4), (OUT, ("knows", "cites"), 6), (BOTH, (), 2)])
def test_shortest_path_lengths_match_networkx(name, graph, direction, types, max_hops):
    rng = random.Random(f"{name}{direction}{max_hops}")
    nodes = sorted(graph.nodes)
    sharded = ShardedGraph.of(graph, num_shards=6)
    view = oracle_view(graph, direction, types)
    found = 0
    for i in range(40):
        source = rng.choice(nodes)
        reachable = sorted(nx.single_source_shortest_path_length(view, source, cutoff=max_hops))
        target = rng.choice(reachable if i % 2 else nodes)  # half of them with a path
        try:
            length = nx.shortest_path_length(view, source, target)
        except nx.NetworkXNoPath:
            length = None
        result = path(sharded, source, target, direction, types, max_hops)
        if length is None or length > max_hops:
            assert not result.found and result.missing is None, (source, target)
            continue
        found += 1
        assert len(result.path) - 1 == length and result.path[0] == source and result.path[-1] == target
        assert len(result.edges) == length
        for (a, b), e in zip(zip(result.path, result.path[1:]), result.edges):
            assert (e.src, e.dst) in ({(a, b)} if direction == OUT else {(b, a)} if direction == IN else {(a, b), (b, a)})
            assert not types or e.type in types
    assert found >= 5


def test_a_shard_answers_only_for_its_own_ids():
    sharded = small(CHAIN)
    answer = sharded.answer(Traversal(["a"], OUT, (), 1, 10, sharded.shard_of).calls()[0])
    assert answer == ShardAnswer((VertexData("a", "L"),), (), (EdgeData("a", "t", "b"),))


def test_a_big_part_of_a_frontier_goes_in_several_requests_and_their_answers_merge():
    from torua.graph.traversal import MAX_IDS, ShardCall
    from torua.node.graph_checks import MAX_HOP_EDGES, MAX_IDS as NODE_MAX_IDS
    from torua.graph.traversal import MAX_NEIGHBOUR_EDGES

    assert MAX_IDS == NODE_MAX_IDS and MAX_NEIGHBOUR_EDGES <= MAX_HOP_EDGES  # what a node takes
    call = ShardCall(3, GraphOp.NEIGHBOURS, tuple(f"v{i}" for i in range(25)))
    parts = call.split(10)
    assert [len(p.ids) for p in parts] == [10, 10, 5] and all(p.shard == 3 and p.op == call.op for p in parts)
    assert sum((p.ids for p in parts), ()) == call.ids
    merged = ShardAnswer.merged([ShardAnswer((VertexData("a"),), ("x",)), ShardAnswer((), (), (EdgeData("a", "t", "b"),), cut=True)])
    assert merged == ShardAnswer((VertexData("a"),), ("x",), (EdgeData("a", "t", "b"),), cut=True)
