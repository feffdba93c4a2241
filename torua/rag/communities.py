"""Communities of a corpus's entity graph, as pure functions over what the graph
answered (docs/design/graphrag.md section 6); `torua.rag.louvain` finds them,
`torua.rag.community_build` reads the graph and writes them.

A run reads every `RELATED` edge (src, dst, weight = its supporting chunks), finds
communities with Louvain (unweighted in Kuzu 0.11.3, so an edge is given
`multiplicity(weight)` parallel copies), keeps those of at least `MIN_SIZE`
entities, ranks each one's members by their weighted degree inside it, picks the
chunks that mention most of its central members (`representative_chunks`), and
summarises it extractively from them (`summary`). A global query ranks the
summaries by vector similarity and answers their representative chunks.

>>> found = group({"a": 7, "b": 7, "c": 7, "d": 3}, [("a", "b", 2.0), ("b", "c", 1.0), ("c", "d", 1.0)])
>>> [(c.number, c.members) for c in found]
[(0, ('b', 'a', 'c'))]
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MAX_MULTIPLICITY = 8  # parallel copies of a heavily supported relation Louvain sees at most
MIN_SIZE = 2  # entities a community has at least (a lone entity is no topic)
SUMMARY_NAMES = 12  # most central members named in a summary
REPRESENTATIVE_CHUNKS = 20  # chunks kept per community, best first
SUMMARY_CHUNKS = 3  # of which the summary quotes
SUMMARY_CHARS = 1200
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Community:
    number: int  # 0 for the largest
    members: tuple[str, ...]  # entity ids, the most central first
    degree: tuple[float, ...]  # each member's weighted degree inside the community


def multiplicity(weight: float) -> int:
    """How many parallel copies of a relation Louvain is given: its weight, rounded,
    within 1..`MAX_MULTIPLICITY`.

    >>> [multiplicity(w) for w in (0.2, 1.0, 2.6, 40.0)]
    [1, 1, 3, 8]
    """
    return max(1, min(MAX_MULTIPLICITY, round(weight)))


def louvain_edges(relations: Iterable[tuple[str, str, float]]) -> list[tuple[str, str]]:
    """The edges Louvain runs on: each relation `multiplicity(weight)` times, self-loops out.

    >>> louvain_edges([("a", "b", 2.0), ("a", "a", 5.0)])
    [('a', 'b'), ('a', 'b')]
    """
    return [(src, dst) for src, dst, weight in relations if src != dst for _ in range(multiplicity(weight))]


def group(assignment: Mapping[str, int], relations: Iterable[tuple[str, str, float]], min_size: int = MIN_SIZE) -> list[Community]:
    """Louvain's `assignment` (entity -> community id) as `Community`s of at least
    `min_size` members: the largest first (ties: by their most central member's id),
    numbered from 0; members by weighted degree inside the community, then id."""
    degree: dict[str, float] = defaultdict(float)
    for src, dst, weight in relations:
        if src != dst and src in assignment and assignment.get(src) == assignment.get(dst):
            degree[src] += weight
            degree[dst] += weight
    groups: dict[int, list[str]] = defaultdict(list)
    for entity, found in assignment.items():
        groups[found].append(entity)
    ranked = [sorted(members, key=lambda e: (-degree[e], e)) for members in groups.values() if len(members) >= min_size]
    ranked.sort(key=lambda members: (-len(members), members[0]))
    return [Community(n, tuple(members), tuple(degree[e] for e in members)) for n, members in enumerate(ranked)]


def representative_chunks(community: Community, mentions: Mapping[str, Sequence[str]], limit: int = REPRESENTATIVE_CHUNKS) -> list[str]:
    """The chunks that say most about a community: each scores the summed share of
    the community's weighted degree of the members it mentions (`mentions`: entity ->
    the chunks that mention it); best first, ties by id.

    >>> c = Community(0, ("a", "b", "c"), (3.0, 2.0, 1.0))
    >>> representative_chunks(c, {"a": ["x", "y"], "b": ["y"], "c": ["z"]})
    ['y', 'x', 'z']
    """
    total = sum(community.degree) or float(len(community.members))
    scores: dict[str, float] = defaultdict(float)
    for entity, degree in zip(community.members, community.degree):
        share = (degree or 1.0) / total
        for chunk in dict.fromkeys(mentions.get(entity, ())):
            scores[chunk] += share
    return [c for c, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def summary(names: Sequence[str], texts: Sequence[str], limit: int = SUMMARY_CHARS) -> str:
    """An extractive summary: the community's most central names, then the first
    sentences of its best chunks, within `limit` characters.

    >>> summary(["Peru", "Lima"], ["Lima is the capital of Peru. It is large.", "Peru borders Chile."], limit=60)
    'Peru, Lima. Lima is the capital of Peru. Peru borders Chile.'
    """
    out = ", ".join(names[:SUMMARY_NAMES]) + "."
    for text in texts[:SUMMARY_CHUNKS]:
        sentence = _SENTENCE_END.split(text.strip(), maxsplit=1)[0].strip()
        if sentence and len(out) + 1 + len(sentence) <= limit:
            out += " " + sentence
    return out[:limit]
