"""Communities as pure functions (torua.rag.communities) and Louvain on Kuzu
(torua.rag.louvain), checked against networkx as the oracle."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from torua.rag import communities, louvain
from torua.rag.communities import Community
from torua.rag.retrieval import community_chunks


@pytest.mark.parametrize(
    "weight, copies",
    [(0.0, 1), (0.4, 1), (1.0, 1), (1.6, 2), (3.0, 3), (8.0, 8), (9.0, 8), (1e9, 8)],
)
def test_a_relation_weighs_in_louvain_as_its_weight_in_parallel_copies(weight, copies):
    assert communities.multiplicity(weight) == copies
    assert communities.louvain_edges([("a", "b", weight)]) == [("a", "b")] * copies


@pytest.mark.parametrize(
    "assignment, relations, expected",
    [
        ({}, [], []),
        ({"a": 1}, [], []),  # a lone entity is no community
        ({"a": 1, "b": 1}, [("a", "b", 1.0)], [(0, ("a", "b"), (1.0, 1.0))]),
        # the largest first; members by their weighted degree inside (the edge to another community does not count)
        ({"a": 5, "b": 5, "c": 5, "x": 2, "y": 2}, [("a", "b", 1.0), ("c", "b", 3.0), ("x", "y", 1.0), ("a", "x", 9.0)],
         [(0, ("b", "c", "a"), (4.0, 3.0, 1.0)), (1, ("x", "y"), (1.0, 1.0))]),
        # ties in size: by the most central member's id
        ({"q": 1, "r": 1, "b": 2, "c": 2}, [("q", "r", 1.0), ("b", "c", 1.0)], [(0, ("b", "c"), (1.0, 1.0)), (1, ("q", "r"), (1.0, 1.0))]),
        ({"a": 1, "b": 1}, [("a", "a", 4.0)], [(0, ("a", "b"), (0.0, 0.0))]),  # a self-loop adds nothing
    ],
)
def test_group_numbers_communities_and_ranks_their_members(assignment, relations, expected):
    assert [(c.number, c.members, c.degree) for c in communities.group(assignment, relations)] == expected


@pytest.mark.parametrize(
    "community, mentions, expected",
    [
        (Community(0, ("a", "b"), (1.0, 1.0)), {}, []),
        (Community(0, ("a", "b"), (3.0, 1.0)), {"a": ["x"], "b": ["y"]}, ["x", "y"]),  # the central member's chunk first
        (Community(0, ("a", "b"), (3.0, 1.0)), {"a": ["x"], "b": ["y", "x"]}, ["x", "y"]),  # mentioning both
        (Community(0, ("a", "b"), (1.0, 1.0)), {"a": ["y", "x", "x"]}, ["x", "y"]),  # equal: by id; a chunk counted once per member
        (Community(0, ("a", "b"), (0.0, 0.0)), {"a": ["x"], "b": ["x", "y"]}, ["x", "y"]),  # no degrees: members weigh alike
    ],
)
def test_representative_chunks_mention_the_most_central_members(community, mentions, expected):
    assert communities.representative_chunks(community, mentions) == expected


def test_representative_chunks_are_bounded():
    c = Community(0, ("a",), (1.0,))
    assert communities.representative_chunks(c, {"a": [f"c{i:03}" for i in range(100)]}, limit=5) == ["c000", "c001", "c002", "c003", "c004"]


@pytest.mark.parametrize(
    "names, texts, limit, expected",
    [
        (["A"], [], 100, "A."),
        (["A", "B"], ["One. Two.", "Three! Four.", "Five? Six.", "Seven."], 100, "A, B. One. Three! Five?"),  # at most three chunks quoted
        (["A"], ["A long first sentence here. Short."], 12, "A."),  # a sentence that does not fit is left out
        ([f"n{i}" for i in range(20)], [], 1000, ", ".join(f"n{i}" for i in range(12)) + "."),  # twelve names at most
        (["X" * 50], [], 10, "X" * 10),
    ],
)
def test_a_summary_names_the_central_entities_and_quotes_the_first_sentences(names, texts, limit, expected):
    assert communities.summary(names, texts, limit) == expected


@pytest.mark.parametrize(
    "given, expected",
    [
        ([], []),
        ([(0.5, ["a"])], [("a", 0.5)]),
        ([(0.9, ["a", "b", "c"]), (0.8, ["d", "e"])], [("a", 0.9), ("d", 0.8), ("b", 0.45), ("e", 0.4), ("c", 0.3)]),
        ([(0.4, ["a"]), (0.9, ["b", "a"])], [("b", 0.9), ("a", 0.45)]),  # a chunk keeps its best score
    ],
)
def test_a_global_query_interleaves_the_best_communities_chunks(given, expected):
    assert community_chunks(given) == expected


def _planted(seed: int, groups: int, size: int) -> nx.Graph:
    """Dense groups joined by a few edges: communities any sound Louvain finds."""
    return nx.planted_partition_graph(groups, size, 0.6, 0.01, seed=seed)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_louvain_on_kuzu_finds_planted_communities_as_networkx_does(seed):
    graph = _planted(seed, 5, 12)
    edges = [(f"n{a}", f"n{b}") for a, b in graph.edges()]
    found = louvain.detect(edges)
    assert set(found) == {f"n{n}" for n in graph.nodes() if graph.degree(n)}
    ours = [{int(n[1:]) for n, c in found.items() if c == cid} for cid in set(found.values())]
    oracle = nx.community.louvain_communities(graph, seed=seed)
    # same quality as networkx's Louvain, and every planted group recovered whole
    assert nx.community.modularity(graph, ours) >= nx.community.modularity(graph, oracle) - 0.02
    planted = graph.graph["partition"]
    assert sorted(map(sorted, ours)) == sorted(map(sorted, planted))


def test_louvain_never_joins_entities_that_are_not_connected():
    rng = random.Random(7)
    edges = [(f"a{rng.randrange(30)}", f"a{rng.randrange(30)}") for _ in range(80)] + [(f"b{rng.randrange(30)}", f"b{rng.randrange(30)}") for _ in range(80)]
    edges = [(x, y) for x, y in edges if x != y]
    found = louvain.detect(edges)
    graph = nx.Graph(edges)
    component = {n: i for i, c in enumerate(nx.connected_components(graph)) for n in c}
    for cid in set(found.values()):
        assert len({component[n] for n, c in found.items() if c == cid}) == 1


def test_louvain_of_nothing_is_nothing():
    assert louvain.detect([]) == {}


def test_the_same_graph_gives_the_same_communities():
    edges = [(f"n{a}", f"n{b}") for a, b in _planted(9, 4, 10).edges()]
    assert louvain.detect(edges) == louvain.detect(edges)
