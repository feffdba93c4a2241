"""The LLM extractor and the remote embedder: the alternatives to spaCy and MiniLM
over an OpenAI-compatible endpoint (`torua.rag.openai_compat`; docs/design/graphrag.md
section 8). A corpus chooses them with `extractor: "llm"` and `embedder: "openai"`.

The extractor asks the model, chunk by chunk, for the chunk's named entities (of
`ENTITY_TYPES`) and the relations between them as JSON, and turns the answer into
the `Extraction` the spaCy adapter makes: mentions (found in the chunk's text for
their offsets), triples, and co-occurrences of two mentions found in one sentence.
An answer that holds no such JSON yields nothing for its chunk (logged), so one bad
answer never stops a document. Sentences for chunking still come from spaCy's
rule-based sentencizer (no model).

>>> e = extraction_of('{"entities": [{"name": "Ada Lovelace", "type": "PERSON"}, {"name": "London", "type": "GPE"}, '
...                   '{"name": "1815", "type": "DATE"}], "relations": [{"source": "Ada Lovelace", "predicate": "born in", "target": "London"}]}',
...                   "Ada Lovelace was born in London.", [(0, 32)])
>>> [(m.text, m.type) for m in e.mentions], e.offsets, e.triples, e.cooccurrences
([('Ada Lovelace', 'PERSON'), ('London', 'GPE')], ((0, 12), (25, 31)), (Triple(subject=0, predicate='born in', object=1),), ((0, 1),))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from torua.rag.extraction import ENTITY_TYPES, MAX_NAME_CHARS, Extraction, Mention, Triple
from torua.rag.openai_compat import OpenAiCompatible, first_json_object

log = logging.getLogger("torua.rag")

EXTRACTOR = "llm"
EMBEDDER = "openai"
EMBEDDER_MAX_TOKENS = 512  # what a chunk may hold, counted with MiniLM's tokenizer (the remote model's is not known here)
EMBED_BATCH = 64
SYSTEM = (
    "You extract a knowledge graph from text. Answer with one JSON object and nothing else: "
    '{"entities": [{"name": "...", "type": "..."}], "relations": [{"source": "...", "predicate": "...", "target": "..."}]}. '
    f"Entity types: {', '.join(sorted(ENTITY_TYPES))}. Names exactly as the text writes them. "
    "A relation joins two of the entities; its predicate is a short verb phrase in lower case."
)


def extraction_of(answer: str, text: str, sentences: Sequence[tuple[int, int]]) -> Extraction:
    """What the model's `answer` says about `text` (whose sentences span `sentences`)."""
    found = first_json_object(answer) or {}
    mentions: list[Mention] = []
    offsets: list[tuple[int, int]] = []
    index: dict[str, int] = {}
    lowered = text.lower()
    for item in _objects(found.get("entities")):
        name, kind = str(item.get("name") or "").strip(), str(item.get("type") or "").strip().upper()
        if not name or len(name) > MAX_NAME_CHARS or kind not in ENTITY_TYPES or name.lower() in index:
            continue
        at = lowered.find(name.lower())
        span = (at, at + len(name)) if at >= 0 else (-1, -1)
        index[name.lower()] = len(mentions)
        mentions.append(Mention(text[span[0]:span[1]] if at >= 0 else name, kind, *span))
        offsets.append(span)
    triples = []
    for item in _objects(found.get("relations")):
        source, target = (index.get(str(item.get(k) or "").strip().lower()) for k in ("source", "target"))
        predicate = " ".join(str(item.get("predicate") or "").lower().split())[:80]
        if source is not None and target is not None and source != target and predicate:
            triples.append(Triple(source, predicate, target))

    def sentence(span: tuple[int, int]) -> int:
        return next((n for n, (start, end) in enumerate(sentences) if start <= span[0] < end), -1)

    placed = [sentence(span) if span[0] >= 0 else -1 for span in offsets]
    pairs = sorted({(a, b) for a, b in combinations(range(len(mentions)), 2) if placed[a] >= 0 and placed[a] == placed[b]})
    return Extraction(tuple(mentions), tuple(offsets), tuple(triples), tuple(pairs))


def _objects(value: object) -> list[dict]:
    """The JSON objects of a list (anything else the model wrote: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class LlmExtractor:
    def __init__(self, client: OpenAiCompatible, model: str) -> None:
        import spacy

        self.client, self.model = client, model
        self.name = f"{EXTRACTOR}:{model}"
        self._sentences = spacy.blank("en")
        self._sentences.add_pipe("sentencizer")
        self._sentences.max_length = 20_000_000
        self._lock = threading.Lock()

    def sentence_spans(self, text: str) -> list[tuple[int, int]]:
        with self._lock:
            doc = self._sentences(text)
        return [(s.start_char, s.end_char) for s in doc.sents]

    def extract(self, texts: Sequence[str]) -> list[Extraction]:
        out = []
        for text in texts:
            answer = self.client.chat(self.model, SYSTEM, text)
            extraction = extraction_of(answer, text, self.sentence_spans(text))
            if not extraction.mentions and "{" not in answer:
                log.warning("the LLM extractor (%s) answered no JSON for a chunk: %r", self.model, answer[:200])
            out.append(extraction)
        return out


class RemoteEmbedder:
    """Embeddings from the endpoint, L2-normalised; chunks are cut with MiniLM's tokenizer."""

    def __init__(self, client: OpenAiCompatible, model: str, dim: int) -> None:
        from torua.rag.onnx_embedder import token_counter

        self.client, self.model, self.dim = client, model, dim
        self.name = f"{EMBEDDER}:{model}"
        self.max_tokens = EMBEDDER_MAX_TOKENS
        self._tokenizer = token_counter()

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [tuple(span) for span in self._tokenizer.encode(text, add_special_tokens=False).offsets]  # type: ignore[misc]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            rows += self.client.embeddings(self.model, texts[start : start + EMBED_BATCH])
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1) if rows else np.zeros((0, self.dim), np.float32)
        if matrix.shape[1] != self.dim:
            from torua.protocol.errors import ToruaError

            raise ToruaError("bad_request", f"the embeddings endpoint answered {matrix.shape[1]}-d vectors; the corpus was made for {self.dim}")
        norms = np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None)
        return (matrix / norms).astype(np.float32)
