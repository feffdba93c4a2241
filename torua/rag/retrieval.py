"""How a query's evidence is ranked (docs/design/graphrag.md section 5), as pure
functions over what the graph answered; `torua.rag.service.CorpusService.query` asks the
graph and calls these.

- `local`: the question's entities (its named entities found by name, and the
  entities whose name embeddings are nearest the question's) are the seeds; their
  `RELATED` neighbours join at `NEIGHBOUR_SHARE` of the score of the seed that
  reached them times the relation's share of that seed's relation weight; a chunk
  scores the sum of the entities it mentions.
- `global`: the communities whose summaries are nearest the question answer
  their representative chunks (`community_chunks`).
- `hybrid`: two hops. The first: reciprocal-rank fusion (`RRF_K`) of the naive
  ranking (vector), the BM25 ranking of the chunks' text and the local ranking. The
  second (`bridge`): the chunks that mention the entities of the vector's best
  `BRIDGE_FROM` chunks, a rare entity of the best chunk first. The answer's first
  half is the first hop's best, its second half the second hop's
  (`first_and_second_hop`): a multi-hop question's second document names nothing
  of the question, only the entity the first one leads to. (Chosen on the dev
  half of the eval set, docs/design/graphrag.md section 7.)

>>> rrf([["a", "b", "c"], ["c", "a"], []], k=60)[:2]
[('a', 0.03252247488101534), ('c', 0.032266458495966696)]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

RRF_K = 60
NEIGHBOUR_SHARE = 0.5
SEEDS = 8  # entities a local query starts from at most
BRIDGE_FROM = 3  # chunks, best first by vector, whose entities a hybrid query follows to other chunks
FIRST_HOP_SHARE = 0.5  # of a hybrid answer's k chunks, those of the first hop (the rest: the bridge's best)


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K, weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion: each id scores the sum of weight / (k + rank) over the
    rankings it is in (rank from 1; weights 1 unless given); best first, ties by id."""
    scores: dict[str, float] = defaultdict(float)
    for n, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[n]
        for rank, id in enumerate(ranking, start=1):
            scores[id] += weight / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def seeds(named: Iterable[str], nearest: Sequence[tuple[str, float]], limit: int = SEEDS) -> dict[str, float]:
    """The entities a local query starts from, with their scores: those the question
    names score 1; the nearest by name embedding their similarity (clipped to 0..1).

    >>> seeds(["e/person/ada lovelace"], [("e/person/ada lovelace", 0.8), ("e/place/london", 0.4)])
    {'e/person/ada lovelace': 1.0, 'e/place/london': 0.4}
    """
    out: dict[str, float] = {id: 1.0 for id in named}
    for id, score in nearest:
        if len(out) >= limit:
            break
        out[id] = max(out.get(id, 0.0), min(1.0, max(0.0, score)))
    return dict(sorted(out.items(), key=lambda item: -item[1])[:limit])


def expand(seed_scores: Mapping[str, float], relations: Iterable[tuple[str, str, float]]) -> dict[str, float]:
    """Seeds and their neighbours over `relations` (src, dst, weight; either way), each
    neighbour scoring `NEIGHBOUR_SHARE` x its best seed's score x that relation's share
    of the seed's relation weight.

    >>> expand({"a": 1.0}, [("a", "b", 3.0), ("c", "a", 1.0)])
    {'a': 1.0, 'b': 0.375, 'c': 0.125}
    """
    totals: dict[str, float] = defaultdict(float)
    edges = list(relations)
    for src, dst, weight in edges:
        for end in (src, dst):
            if end in seed_scores:
                totals[end] += weight
    out = dict(seed_scores)
    for src, dst, weight in edges:
        for seed, other in ((src, dst), (dst, src)):
            if seed in seed_scores and other not in seed_scores and totals[seed] > 0:
                score = NEIGHBOUR_SHARE * seed_scores[seed] * weight / totals[seed]
                out[other] = max(out.get(other, 0.0), score)
    return out


def chunk_scores(entity_scores: Mapping[str, float], mentions: Iterable[tuple[str, str]]) -> list[tuple[str, float]]:
    """Chunks by the summed score of the entities they mention (`mentions`: chunk id,
    entity id), best first, ties by id.

    >>> chunk_scores({"a": 1.0, "b": 0.5}, [("c1", "a"), ("c2", "b"), ("c2", "a"), ("c3", "z")])
    [('c2', 1.5), ('c1', 1.0)]
    """
    scores: dict[str, float] = defaultdict(float)
    for chunk, entity in set(mentions):
        if entity in entity_scores:
            scores[chunk] += entity_scores[entity]
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def local_ranking(
    seeds: Mapping[str, float], entities: Mapping[str, float], relations: Mapping[tuple[str, str], Mapping[str, Any]], mentions: Mapping[str, Sequence[str]],
) -> tuple[list[tuple[str, float]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A local query's answer: its chunks by the `entities` (the seeds and their
    neighbours, with scores) they mention (`mentions`: entity -> its chunks), those
    entities (`seed`: one of `seeds`), and the `relations` (edges by (src, dst)) between two of them.

    >>> ranked, ents, rels = local_ranking({"a": 1.0}, {"a": 1.0, "b": 0.5}, {("a", "b"): {"weight": 2.0, "properties": {}}, ("a", "z"): {"weight": 1.0, "properties": {}}},
    ...                                    {"a": ["c1"], "b": ["c1", "c2"]})
    >>> ranked, [(e["id"], e["seed"]) for e in ents], [(r["src"], r["dst"]) for r in rels]
    ([('c1', 1.5), ('c2', 0.5)], [('a', True), ('b', False)], [('a', 'b')])
    """
    ranked = chunk_scores(entities, [(chunk, id) for id in entities for chunk in mentions[id]])
    described = [{"id": id, "score": round(score, 6), "seed": id in seeds} for id, score in entities.items()]
    between = [
        {"src": src, "dst": dst, "weight": e["weight"], "predicates": e["properties"].get("predicates", {})}
        for (src, dst), e in relations.items() if src in entities and dst in entities
    ]
    return ranked, described, between


def bridge(entities: Mapping[str, int], mentions: Mapping[str, Sequence[str]], skip: set[str]) -> list[tuple[str, float]]:
    """The second hop of a multi-hop question: the chunks that mention an entity of the
    chunks found first (`entities`: entity -> the rank of the first such chunk that
    mentions it), each entity adding 1 / (its rank x the chunks that mention it): a rare
    entity of the best chunk is the strongest bridge. `skip`: the chunks found first.

    >>> bridge({"japan": 1, "asia": 2}, {"japan": ["c1", "c2"], "asia": ["c1", "c3", "c4", "c5"]}, {"c1"})
    [('c2', 0.5), ('c3', 0.125), ('c4', 0.125), ('c5', 0.125)]
    """
    scores: dict[str, float] = defaultdict(float)
    for entity, rank in entities.items():
        chunks = [c for c in dict.fromkeys(mentions.get(entity, ())) if c]
        if not chunks:
            continue
        for chunk in chunks:
            if chunk not in skip:
                scores[chunk] += 1.0 / (rank * len(chunks))
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def first_and_second_hop(first: Sequence[tuple[str, float]], second: Sequence[tuple[str, float]], k: int, share: float = FIRST_HOP_SHARE) -> list[tuple[str, float]]:
    """`k` chunks for a multi-hop question: the best `share` of `k` of the first hop
    (fused vector, BM25 and local), then the best of the second (`bridge`) not among
    them, then the rest of the first hop; scores fall in that order.

    >>> [c for c, _ in first_and_second_hop([("a", .9), ("b", .8), ("c", .7)], [("a", 1.0), ("x", .5)], 4)]
    ['a', 'b', 'x', 'c']
    """
    head = max(1, round(k * share))
    chosen = [c for c, _ in first[:head]]
    taken = set(chosen)
    chosen += [c for c, _ in second if c not in taken][: k - head]
    taken = set(chosen)
    chosen += [c for c, _ in first if c not in taken]
    return [(c, 1.0 / rank) for rank, c in enumerate(chosen, start=1)]


def community_chunks(communities: Sequence[tuple[float, Sequence[str]]]) -> list[tuple[str, float]]:
    """A global query's chunks: each community (its score, its representative chunks
    best first) gives its n-th chunk its score / n, so the best communities' best
    chunks lead and the rest interleave; a chunk keeps its best score.

    >>> community_chunks([(0.9, ["a", "b"]), (0.6, ["c", "a"])])
    [('a', 0.9), ('c', 0.6), ('b', 0.45)]
    """
    scores: dict[str, float] = {}
    for score, chunks in communities:
        for rank, chunk in enumerate(chunks, start=1):
            scores[chunk] = max(scores.get(chunk, 0.0), score / rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))
