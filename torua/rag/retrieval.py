"""How a query's evidence is ranked (docs/design/graphrag.md section 5), as pure
functions over what the graph answered; `torua.rag.client.Corpus.query` asks the
graph and calls these.

- `local`: the question's entities (its named entities found by name, and the
  entities whose name embeddings are nearest the question's) are the seeds; their
  `RELATED` neighbours join at `NEIGHBOUR_SHARE` of the score of the seed that
  reached them times the relation's share of that seed's relation weight; a chunk
  scores the sum of the entities it mentions.
- `hybrid`: reciprocal-rank fusion (`RRF_K`) of the naive ranking (vector), the
  BM25 ranking of the chunks' text and the local ranking: a chunk near the top of
  any of them, or fairly high in several, comes first.

>>> rrf([["a", "b", "c"], ["c", "a"], []], k=60)[:2]
[('a', 0.03252247488101534), ('c', 0.032266458495966696)]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

RRF_K = 60
NEIGHBOUR_SHARE = 0.5
SEEDS = 8  # entities a local query starts from at most


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion: each id scores the sum of 1 / (k + rank) over the rankings
    it is in (rank from 1); best first, ties by id."""
    scores: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for rank, id in enumerate(ranking, start=1):
            scores[id] += 1.0 / (k + rank)
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
