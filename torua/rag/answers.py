"""What a corpus's chat model is asked, and what its answers are read for
(docs/design/graphrag.md section 8): answers to queries, citing the chunk ids of
the evidence they use, and community summaries. Pure: `torua.rag.openai_compat`
does the asking.

>>> citations("Lima [c/peru/ab12], and [c/x/zz] [c/peru/ab12]", ["c/peru/ab12", "c/chile/9f"])
['c/peru/ab12']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

ANSWER_SYSTEM = (
    "Answer the question from the passages only. Each passage starts with its id in square brackets. "
    "Cite every passage you use by its id in square brackets, e.g. [c/report/0a1b2c3d4e5f6a7b]. "
    "If the passages do not hold the answer, say so."
)
SUMMARY_SYSTEM = "Summarise in at most three sentences what the passages say about these entities and how they are connected."
PASSAGE_CHARS = 2000  # of each chunk, in a prompt
_CITED = re.compile(r"\[([^\[\]\s]+)\]")


def answer_prompt(question: str, chunks: Sequence[dict[str, Any]]) -> str:
    """The passages (each `[id] text`), then the question."""
    passages = "\n\n".join(f"[{c['id']}] {c['text'][:PASSAGE_CHARS]}" for c in chunks)
    return f"Passages:\n\n{passages}\n\nQuestion: {question}"


def citations(answer: str, chunk_ids: Sequence[str]) -> list[str]:
    """The evidence's chunk ids the answer cites, in the order it first cites them
    (anything else in brackets is not a citation)."""
    known = set(chunk_ids)
    return list(dict.fromkeys(c for c in _CITED.findall(answer) if c in known))


def summary_prompt(names: Sequence[str], texts: Sequence[str]) -> str:
    passages = "\n\n".join(t[:PASSAGE_CHARS] for t in texts)
    return f"Entities: {', '.join(names)}\n\nPassages:\n\n{passages}"
