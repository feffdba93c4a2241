"""Support: the evidence that keeps a GraphRAG vertex or edge alive
(docs/design/graphrag.md section 3), as decisions over plain data. The node
(torua.node.graph_support) reads a target's support, asks these, logs what they
return and drives what they say.

An entity vertex exists while some chunk mentions it, a `RELATED` edge while some
chunk supports it. A change adds chunks (each with a note: JSON, what the chunk
saw, e.g. ``{"marry": 1, "co-occurs": 2}`` for a relation) and removes others; the
target's support after it is what decides: the first chunk makes the vertex, the
last one gone deletes it; an edge is put with its weight (the number of chunks)
and properties made from its support, or deleted when none is left. Every change
is idempotent and changes commute, so concurrent workers and a redelivered job
need no lock between them.

>>> after({"c1": "{}"}, {"c2": '{"marry": 1}'}, ["c1", "c9"])
{'c2': '{"marry": 1}'}
>>> relation({"c2": '{"marry": 1, "co-occurs": 1}', "c1": '{"co-occurs": 2}'})
({'support': 2, 'chunks': ['c1', 'c2'], 'predicates': {'co-occurs': 3, 'marry': 1}}, 2.0)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping

from torua.storage.operations import SupportChange

MAX_LISTED_CHUNKS = 16  # chunk ids a relation's properties list (its weight counts them all)
MAX_PREDICATES = 8


def after(current: Mapping[str, str], added: Mapping[str, str], removed: Iterable[str]) -> dict[str, str]:
    """The support once `removed` are gone and `added` are in (the order the op applies them)."""
    out = dict(current)
    for chunk in removed:
        out.pop(chunk, None)
    out.update(added)
    return out


def size_after(count: int, held: Mapping[str, str], added: Mapping[str, str], removed: Iterable[str]) -> int:
    """`len(after(current, added, removed))` from `count` = `len(current)` and `held`:
    the part of `current` among the chunks `added` and `removed` name (all `after`
    needs to know of a support that may hold thousands of chunks).

    >>> size_after(1800, {"c1": "{}"}, {"c1": "{}", "c2": "{}"}, ["c9"])
    1801
    """
    gone = sum(1 for c in set(removed) if c in held and c not in added)
    return count - gone + sum(1 for c in added if c not in held)


def change(uid: str, key: tuple[str, str, str], current: Mapping[str, str], added: Mapping[str, str], removed: Iterable[str]) -> SupportChange | None:
    """The op that makes `current` into `after(...)`, holding only what changes; None
    when nothing does (a repeated change logs nothing).

    >>> change("u", ("e/x", "", ""), {"c1": "{}"}, {"c1": "{}"}, ["c7"]) is None
    True
    """
    new = {c: note for c, note in added.items() if current.get(c) != note}
    gone = [c for c in dict.fromkeys(removed) if c in current and c not in added]
    if not new and not gone:
        return None
    src, type, dst = key
    return SupportChange(uid, src, type, dst, added=new, removed=gone)


def relation(support: Mapping[str, str]) -> tuple[dict[str, object], float]:
    """A supported edge's properties and weight: how many chunks support it, the first
    of them by id, and the predicates their notes count (a note that is not a JSON
    object of counts adds none)."""
    predicates: Counter[str] = Counter()
    for note in support.values():
        try:
            seen = json.loads(note)
        except ValueError:
            continue
        if isinstance(seen, dict):
            predicates.update({str(p): int(n) for p, n in seen.items() if isinstance(n, int) and not isinstance(n, bool) and n > 0})
    top = sorted(predicates.items(), key=lambda item: (-item[1], item[0]))[:MAX_PREDICATES]
    properties = {"support": len(support), "chunks": sorted(support)[:MAX_LISTED_CHUNKS], "predicates": dict(top)}
    return properties, float(len(support))
