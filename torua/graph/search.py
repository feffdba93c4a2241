"""Reads that ask every shard and merge the answers, as pure functions.

- Vector search: every shard returns its own top k (best first, by cosine
  similarity for ``cosine``, minus the distance for ``l2``: higher is better
  either way), and the merge keeps the k best overall. Exact per shard gives
  exactly the global top k: a vector of the global top k is in its shard's top k.
- Text search: BM25 weighs a term by its inverse document frequency, which one
  shard knows only for its own part of the graph; merged as they are, local
  scores rank a term common on one shard and rare on another differently from a
  single database. So it takes two rounds: every shard reports its document
  count and each query term's document frequency (`text.stats`), the sums
  (`sum_text_stats`) go to every shard with the query (`text.search`), each
  shard scores with those global figures, and the hits merge like vector hits.
  What stays local is the mean document length of BM25's length normalisation.
- Cypher: the query runs on every shard's graph; rows come back tagged with
  their shard (`concat_rows`).

>>> hits = {0: [GraphHit("a", "", 0.9), GraphHit("b", "", 0.2)], 1: [GraphHit("c", "", 0.5)]}
>>> [h.id for h in merge_hits(hits, 2)]
['a', 'c']
>>> sum_text_stats([(10, {"kuzu": 2}), (5, {"kuzu": 1, "graph": 3})])
TextStats(docs=15, term_docs={'graph': 3, 'kuzu': 3})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from torua.protocol.messages import GraphHit


def merge_hits(per_shard: Mapping[int, Sequence[GraphHit]], k: int) -> list[GraphHit]:
    """The `k` best hits of all shards, best first (ties: by id, so the order is stable)."""
    every = [hit for shard in sorted(per_shard) for hit in per_shard[shard]]
    return sorted(every, key=lambda hit: (-hit.score, hit.id))[:k]


@dataclass(frozen=True)
class TextStats:
    """The corpus figures BM25's IDF needs, over every shard."""

    docs: int
    term_docs: dict[str, int]


def sum_text_stats(per_shard: Iterable[tuple[int, Mapping[str, int]]]) -> TextStats:
    """(documents, {term: documents holding it}) of each shard, summed."""
    docs, terms = 0, {}
    for shard_docs, term_docs in per_shard:
        docs += shard_docs
        for term, count in term_docs.items():
            terms[term] = terms.get(term, 0) + count
    return TextStats(docs, dict(sorted(terms.items())))


def sum_counts(per_shard: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Per-shard counts (vertices, edges, ...) summed, by name."""
    out: dict[str, int] = {}
    for counts in per_shard:
        for name, count in counts.items():
            out[name] = out.get(name, 0) + count
    return dict(sorted(out.items()))


def concat_rows(per_shard: Mapping[int, tuple[Sequence[str], Sequence[Sequence[Any]]]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of each shard's run of one query, as one answer: the columns
    (every shard's are the query's own) and every row with its shard, shards in order.

    >>> concat_rows({1: (["n"], [[3]]), 0: (["n"], [[5], [6]])})
    (['n'], [{'shard': 0, 'values': [5]}, {'shard': 0, 'values': [6]}, {'shard': 1, 'values': [3]}])
    """
    columns: list[str] = []
    rows: list[dict[str, Any]] = []
    for shard in sorted(per_shard):
        shard_columns, shard_rows = per_shard[shard]
        columns = columns or list(shard_columns)
        rows.extend({"shard": shard, "values": list(row)} for row in shard_rows)
    return columns, rows
