"""Retrieval metrics of `torua rag eval` (docs/design/graphrag.md section 7), pure:
ranked chunks in (each with its document), numbers out.

A question's chunks, best first, become a ranking of documents (each at its first
chunk's place). Per question: whether both (all) supporting documents are in the
first 5 and the first 10 documents; the share of supporting documents in the first
10 (per-document recall); the reciprocal rank of the first supporting document
(0 when none is in the first 10: MRR@10).

>>> question_scores(["a", "x", "a", "b"], ["a", "b"])
{'both@5': 1.0, 'both@10': 1.0, 'recall@10': 1.0, 'rr': 1.0}
>>> question_scores(["x", "y", "b"], ["a", "b"])["rr"], question_scores(["x"], ["a", "b"])["recall@10"]
(0.3333333333333333, 0.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

METRICS = ("both@5", "both@10", "recall@10", "rr")


def documents_ranked(chunk_documents: Iterable[str]) -> list[str]:
    """Documents in the order their first chunk comes."""
    return list(dict.fromkeys(chunk_documents))


def question_scores(chunk_documents: Sequence[str], support: Sequence[str]) -> dict[str, float]:
    ranked = documents_ranked(chunk_documents)
    needed = set(support)
    top5, top10 = set(ranked[:5]), set(ranked[:10])
    first = next((i for i, d in enumerate(ranked[:10], start=1) if d in needed), None)
    return {
        "both@5": float(needed <= top5),
        "both@10": float(needed <= top10),
        "recall@10": len(needed & top10) / len(needed),
        "rr": 1.0 / first if first else 0.0,
    }


def mean_scores(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over `rows` (MRR is the mean of `rr`).

    >>> mean_scores([{"both@5": 1.0, "both@10": 1.0, "recall@10": 1.0, "rr": 1.0}, {"both@5": 0.0, "both@10": 1.0, "recall@10": 0.5, "rr": 0.5}])
    {'both@5': 0.5, 'both@10': 1.0, 'recall@10': 0.75, 'rr': 0.75}
    """
    if not rows:
        return {m: 0.0 for m in METRICS}
    return {m: sum(r[m] for r in rows) / len(rows) for m in METRICS}


def documents_for(documents: Sequence[Mapping[str, str]], questions: Sequence[Mapping[str, object]], others: int) -> list[Mapping[str, str]]:
    """A smaller corpus for a quick run: the supporting documents of `questions`, and
    the first `others` of the rest (distractors), in the set's order.

    >>> docs = [{"id": i} for i in "abcdef"]
    >>> [d["id"] for d in documents_for(docs, [{"support": ["e", "b"]}], 2)]
    ['a', 'b', 'c', 'e']
    """
    needed = {str(d) for q in questions for d in q["support"]}  # type: ignore[union-attr]
    out, extra = [], 0
    for d in documents:
        if d["id"] in needed:
            out.append(d)
        elif extra < others:
            out.append(d)
            extra += 1
    return out
