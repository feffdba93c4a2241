"""A corpus's settings, kept as the `corpus` vertex of its graph
(docs/design/graphrag.md section 3): how its documents are chunked, which
embedder and extractor built it. A corpus is read with the embedder it was built
with (a query embedded by another model would compare vectors of two spaces), so
the embedder's name and dimension are recorded and checked.

>>> CorpusSettings().check().properties()["chunk_tokens"]
200
>>> CorpusSettings.of({"chunk_tokens": 120, "overlap_tokens": 20}).chunking()
ChunkSettings(chunk_tokens=120, overlap_tokens=20)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from torua.protocol.errors import ToruaError
from torua.rag.chunking import ChunkSettings
from torua.rag.onnx_embedder import DIM as MINILM_DIM
from torua.rag.onnx_embedder import MAX_TOKENS as MINILM_MAX_TOKENS
from torua.rag.onnx_embedder import NAME as MINILM
from torua.rag.spacy_extractor import NAME as SPACY

EMBEDDERS = {MINILM: (MINILM_DIM, MINILM_MAX_TOKENS)}  # name -> (dimension, tokens it reads)
EXTRACTORS = (SPACY,)


@dataclass(frozen=True)
class CorpusSettings:
    chunk_tokens: int = 200
    overlap_tokens: int = 40
    embedder: str = MINILM
    dim: int = MINILM_DIM
    extractor: str = SPACY

    @classmethod
    def of(cls, given: dict[str, Any]) -> "CorpusSettings":
        """Settings from a request or a stored vertex: unknown fields are refused, absent
        ones take their defaults; `bad_request` naming what is wrong."""
        if not isinstance(given, dict):
            raise ToruaError("bad_request", "corpus settings must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ToruaError("bad_request", f"unknown corpus setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        settings = cls(**given)
        if "dim" not in given and settings.embedder in EMBEDDERS:
            settings = cls(**{**given, "dim": EMBEDDERS[settings.embedder][0]})
        return settings.check()

    def check(self) -> "CorpusSettings":
        if self.embedder not in EMBEDDERS:
            raise ToruaError("bad_request", f"embedder must be one of {', '.join(EMBEDDERS)}, not {self.embedder!r}")
        dim, max_tokens = EMBEDDERS[self.embedder]
        if self.dim != dim:
            raise ToruaError("bad_request", f"embedder {self.embedder} makes {dim}-d vectors, not {self.dim}")
        if self.extractor not in EXTRACTORS:
            raise ToruaError("bad_request", f"extractor must be one of {', '.join(EXTRACTORS)}, not {self.extractor!r}")
        try:
            self.chunking().check(max_tokens)
        except (ValueError, TypeError) as exc:
            raise ToruaError("bad_request", str(exc)) from None
        return self

    def chunking(self) -> ChunkSettings:
        return ChunkSettings(self.chunk_tokens, self.overlap_tokens)

    def properties(self) -> dict[str, Any]:
        return asdict(self)
