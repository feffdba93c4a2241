"""One document through the pipeline (docs/design/graphrag.md section 1): chunk,
embed and extract the chunks that are new, resolve their mentions, and say what
the corpus graph gains and loses. No I/O: a worker writes what this returns; the
benchmark's baseline runs it in one process.

A document sent again with the same id is compared by chunk hashes with what it
held (`previous`): chunks whose text is unchanged keep their vertex, embedding and
evidence; only new ones are embedded and extracted; the ones gone are named so
that their support can be removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from torua.rag.chunking import Chunk, ChunkSettings, chunk_text
from torua.rag.embedding import Embedder
from torua.rag.extraction import Extraction
from torua.rag.resolution import Resolver

COOCCURS = "co-occurs"  # the predicate of a relation seen only as two names in one sentence


class Extractor(Protocol):
    name: str

    def sentence_spans(self, text: str) -> list[tuple[int, int]]: ...

    def extract(self, texts: Sequence[str]) -> list[Extraction]: ...


@dataclass
class ChunkEvidence:
    """A new chunk, its embedding, the entities it mentions (id -> times) and the
    relations it supports ((src id, dst id) -> predicate -> times). A relation from
    a triple goes subject to object; a co-occurrence goes from the lower id to the
    higher, so the same pair seen twice is one relation."""

    chunk: Chunk
    embedding: np.ndarray
    mentions: Counter[str] = field(default_factory=Counter)
    relations: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)


@dataclass
class DocumentPlan:
    document_id: str
    chunks: list[Chunk]  # every chunk of the document now, in order
    new: list[ChunkEvidence]  # those to embed and extract (done)
    kept: list[Chunk]  # unchanged since `previous`
    gone: list[str]  # hashes of chunks the document held and no longer does
    entities: dict[str, tuple[str, str]]  # id -> (type, name) of every entity the new chunks mention


def plan_document(
    document_id: str, text: str, settings: ChunkSettings, embedder: Embedder, extractor: Extractor, resolver: Resolver,
    previous: Iterable[str] = (),
) -> DocumentPlan:
    """What ingesting `text` as document `document_id` writes; `previous` are the
    hashes of the chunks it held (none for a new document)."""
    chunks = chunk_text(text, extractor.sentence_spans(text), embedder.token_spans, settings.check(embedder.max_tokens))
    held = set(previous)
    new = [c for c in chunks if c.hash not in held]
    kept = [c for c in chunks if c.hash in held]
    now = {c.hash for c in chunks}
    gone = sorted(h for h in held if h not in now)
    vectors = embedder.embed([c.text for c in new])
    extractions = extractor.extract([c.text for c in new])
    entities: dict[str, tuple[str, str]] = {}
    evidence = []
    for chunk, vector, found in zip(new, vectors, extractions):
        ids = [resolver.resolve(m.type, m.text) for m in found.mentions]
        for id, m in zip(ids, found.mentions):
            entities.setdefault(id, (m.type, m.text))
        item = ChunkEvidence(chunk, vector, Counter(ids))
        for t in found.triples:
            _relate(item, ids[t.subject], ids[t.object], t.predicate)
        for a, b in found.cooccurrences:
            low, high = sorted((ids[a], ids[b]))
            _relate(item, low, high, COOCCURS)
        evidence.append(item)
    return DocumentPlan(document_id, chunks, evidence, kept, gone, entities)


def _relate(item: ChunkEvidence, src: str, dst: str, predicate: str) -> None:
    if src != dst:
        item.relations.setdefault((src, dst), Counter())[predicate] += 1
