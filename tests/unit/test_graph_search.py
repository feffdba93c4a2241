"""Merging what every shard answers (torua.graph.search), pure: vector hits against
an exact search over the whole set (numpy), text statistics summed into the
global figures BM25 needs, Cypher rows with their shard."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from torua.graph.client import Graph, pages_both
from torua.graph.rules import vertex_shard
from torua.graph.search import concat_rows, merge_hits, sum_counts, sum_text_stats
from torua.protocol.errors import ToruaError
from torua.protocol.messages import GraphHit


def test_merge_is_best_first_ties_by_id_and_at_most_k():
    per_shard = {
        2: [GraphHit("z", "", 0.5), GraphHit("b", "", 0.1)],
        0: [GraphHit("a", "", 0.5), GraphHit("c", "", -3.0)],
        1: [],
    }
    assert [h.id for h in merge_hits(per_shard, 3)] == ["a", "z", "b"]
    assert [h.id for h in merge_hits(per_shard, 10)] == ["a", "z", "b", "c"]
    assert merge_hits({}, 5) == []


def _scores(vectors, query, metric):
    if metric == "cosine":
        return (vectors @ query) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    return -np.linalg.norm(vectors - query, axis=1)


def _top_k(ids, scores, k):
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]
    return [(ids[i], float(scores[i])) for i in order]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("num_shards", [1, 3, 16])
def test_every_shards_top_k_merged_is_the_global_top_k(metric, num_shards):
    rng = np.random.default_rng(num_shards)
    ids = [f"doc/{i}" for i in range(2000)]
    vectors = rng.normal(size=(len(ids), 32))
    shard_of = {vid: vertex_shard("g", vid, num_shards) for vid in ids}
    for _ in range(20):
        query, k = rng.normal(size=32), int(rng.integers(1, 50))
        scores = _scores(vectors, query, metric)  # what each vector scores, wherever it lives
        per_shard = {}
        for shard in range(num_shards):
            mine = [i for i, vid in enumerate(ids) if shard_of[vid] == shard]
            top = _top_k([ids[i] for i in mine], scores[mine], k)  # the shard's exact top k
            per_shard[shard] = [GraphHit(vid, "", score) for vid, score in top]
        merged = [(h.id, h.score) for h in merge_hits(per_shard, k)]
        assert merged == _top_k(ids, scores, k)


def test_text_statistics_are_summed_per_term():
    stats = sum_text_stats([(3, {"graph": 1}), (0, {}), (7, {"graph": 2, "kuzu": 7})])
    assert stats.docs == 10 and stats.term_docs == {"graph": 3, "kuzu": 7}


def _bm25(doc: list[str], terms: list[str], docs: int, term_docs: dict[str, int], mean_length: float) -> float:
    counts, score = Counter(doc), 0.0
    for term in terms:
        if counts[term]:
            idf = math.log10((docs - term_docs[term] + 0.5) / (term_docs[term] + 0.5) + 1)
            tf = counts[term]
            score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(doc) / mean_length))
    return score


def test_global_statistics_rank_as_one_database_does():
    """Why text search takes two rounds: scored with the summed statistics, each
    shard's hits merge into the order of one database holding everything (given
    the same mean length); with local statistics they do not."""
    rng = random.Random(5)
    words = [f"w{i}" for i in range(40)]
    # a term common on one shard and rare on the others
    corpus = {f"d{i}": [rng.choice(words) for _ in range(12)] + (["rare"] * 3 if i % 4 == 0 else []) for i in range(400)}
    num_shards = 4
    shard_of = {d: (0 if "rare" in text else vertex_shard("g", d, num_shards)) for d, text in corpus.items()}
    query = ["rare", "w1", "w2"]
    mean = sum(map(len, corpus.values())) / len(corpus)

    def stats(shard):
        docs = [t for d, t in corpus.items() if shard_of[d] == shard]
        return len(docs), {term: sum(term in t for t in docs) for term in query}

    total = sum_text_stats(stats(s) for s in range(num_shards))
    single = sorted(corpus, key=lambda d: (-_bm25(corpus[d], query, len(corpus), total.term_docs, mean), d))[:10]

    def hits(shard, docs, term_docs):
        mine = [d for d in corpus if shard_of[d] == shard]
        return [GraphHit(d, "", _bm25(corpus[d], query, docs, term_docs, mean)) for d in mine]

    merged = merge_hits({s: hits(s, total.docs, total.term_docs) for s in range(num_shards)}, 10)
    assert [h.id for h in merged] == single
    local = merge_hits({s: hits(s, *stats(s)) for s in range(num_shards)}, 10)
    assert [h.id for h in local] != single


def test_counts_and_rows():
    assert sum_counts([{"vertices": 2, "edges": 1}, {}, {"vertices": 3}]) == {"edges": 1, "vertices": 5}
    columns, rows = concat_rows({0: (["a", "b"], [[1, 2]]), 1: ([], []), 2: (["a", "b"], [[3, 4], [5, 6]])})
    assert columns == ["a", "b"]
    assert rows == [{"shard": 0, "values": [1, 2]}, {"shard": 2, "values": [3, 4]}, {"shard": 2, "values": [5, 6]}]


class _GatewayBeforeProperties:
    """What a gateway of a release before the searches' `properties` field answers:
    it refuses the field it does not know (as `check_fields` does) and sends hits
    with their properties."""

    def __init__(self) -> None:
        self.asked: list[dict] = []

    async def _api(self, call: str, payload: dict) -> dict:
        self.asked.append(payload)
        if "properties" in payload:
            raise ToruaError("bad_request", "unknown field(s) properties; expected graph, vector, k, label", fields={"properties": "unknown field"})
        return {"hits": [{"id": "a", "label": "L", "score": 0.5, "properties": {"text": "long"}}]}


async def test_a_search_without_properties_through_an_older_gateway_asks_again_without_the_field() -> None:
    gateway = _GatewayBeforeProperties()
    graph = Graph(gateway, "g")  # type: ignore[arg-type]
    assert await graph.vector_search([1.0], k=1, properties=False) == [{"id": "a", "label": "L", "score": 0.5}]
    assert [("properties" in p) for p in gateway.asked] == [True, False]
    assert await graph.text_search("x", k=1) == [{"id": "a", "label": "L", "score": 0.5, "properties": {"text": "long"}}]


def _e(src: str, dst: str, type: str = "r") -> dict:
    return {"src": src, "type": type, "dst": dst}


@pytest.mark.parametrize(
    "outgoing,incoming,limit,page",
    [
        ([_e("a", "b")], [_e("x", "a")], 5, [_e("a", "b"), _e("x", "a")]),  # out-edges first
        ([_e("a", "a"), _e("a", "b")], [_e("a", "a"), _e("x", "a")], 5, [_e("a", "a"), _e("a", "b"), _e("x", "a")]),  # a loop once
        ([_e("a", "b"), _e("a", "c")], [_e("x", "a")], 2, [_e("a", "b"), _e("a", "c")]),  # cut among the out-edges
        ([_e("a", "b")], [_e("x", "a"), _e("y", "a")], 2, [_e("a", "b"), _e("x", "a")]),  # cut among the in-edges
        ([], [_e("a", "a")], 5, [_e("a", "a")]),  # a loop only the in-edges hold (its out-half not committed) stays
        ([], [], 5, []),
    ],
)
def test_a_page_in_both_directions_is_the_out_page_then_the_in_page_without_loops_twice(outgoing, incoming, limit, page):
    assert pages_both(["a"], {"a": outgoing}, {"a": incoming}, limit) == {"a": page}
