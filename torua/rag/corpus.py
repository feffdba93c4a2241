"""A corpus's settings, kept as the `corpus` vertex of its graph
(docs/design/graphrag.md section 3): how its documents are chunked, which
embedder and extractor built it, and its LLM endpoint if any. A corpus is read
with the embedder it was built with (a query embedded by another model would
compare vectors of two spaces), so the embedder's name and dimension are recorded
and checked.

The default pipeline runs offline (MiniLM, spaCy). An OpenAI-compatible endpoint
(`llm_url`, e.g. ``http://127.0.0.1:11434/v1``) adds: `extractor: "llm"` (with
`llm_model`), `embedder: "openai"` (with `embedding_model` and its `dim`), and,
whenever `llm_model` is set, answers to queries that ask for one and community
summaries written by the model. The endpoint's API key is the worker's
(`TORUA_LLM_API_KEY`), never a setting: settings are readable by the graph's readers.

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

REMOTE_EMBEDDER, LLM_EXTRACTOR = "openai", "llm"
REMOTE_MAX_TOKENS = 512  # a chunk for a remote embedder, in MiniLM's tokens
# name -> (dimension, tokens it reads); a remote embedder's dimension is the corpus's `dim`
EMBEDDERS: dict[str, tuple[int | None, int]] = {MINILM: (MINILM_DIM, MINILM_MAX_TOKENS), REMOTE_EMBEDDER: (None, REMOTE_MAX_TOKENS)}
EXTRACTORS = (SPACY, LLM_EXTRACTOR)
MAX_DIM = 4096


@dataclass(frozen=True)
class CorpusSettings:
    chunk_tokens: int = 200
    overlap_tokens: int = 40
    embedder: str = MINILM
    dim: int = MINILM_DIM
    extractor: str = SPACY
    llm_url: str = ""  # an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1
    llm_model: str = ""  # its chat model: the LLM extractor, answers, community summaries
    embedding_model: str = ""  # its embeddings model (embedder "openai")

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
        try:
            settings = cls(**given)
        except TypeError as exc:
            raise ToruaError("bad_request", f"corpus settings: {exc}") from None
        if "dim" not in given and EMBEDDERS.get(settings.embedder, (None, 0))[0] is not None:
            settings = cls(**{**given, "dim": EMBEDDERS[settings.embedder][0]})
        return settings.check()

    def check(self) -> "CorpusSettings":
        for name in ("embedder", "extractor", "llm_url", "llm_model", "embedding_model"):
            if not isinstance(getattr(self, name), str) or len(getattr(self, name)) > 500:
                raise ToruaError("bad_request", f"{name} must be text of at most 500 characters")
        if self.embedder not in EMBEDDERS:
            raise ToruaError("bad_request", f"embedder must be one of {', '.join(EMBEDDERS)}, not {self.embedder!r}")
        dim, max_tokens = EMBEDDERS[self.embedder]
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or (dim is not None and self.dim != dim) or not 1 <= self.dim <= MAX_DIM:
            raise ToruaError("bad_request", f"embedder {self.embedder} makes {dim}-d vectors, not {self.dim}" if dim else f"dim must be 1..{MAX_DIM}")
        if self.extractor not in EXTRACTORS:
            raise ToruaError("bad_request", f"extractor must be one of {', '.join(EXTRACTORS)}, not {self.extractor!r}")
        if self.llm_url and not self.llm_url.startswith(("http://", "https://")):
            raise ToruaError("bad_request", f"llm_url must be an http(s) URL, e.g. http://127.0.0.1:11434/v1, not {self.llm_url!r}")
        needs = {"llm_url": self.extractor == LLM_EXTRACTOR or self.embedder == REMOTE_EMBEDDER or bool(self.llm_model),
                 "llm_model": self.extractor == LLM_EXTRACTOR, "embedding_model": self.embedder == REMOTE_EMBEDDER}
        missing = [name for name, needed in needs.items() if needed and not getattr(self, name)]
        if missing:
            raise ToruaError("bad_request", f"these settings need {', '.join(missing)}: extractor {self.extractor!r}, embedder {self.embedder!r}")
        try:
            self.chunking().check(max_tokens)
        except (ValueError, TypeError) as exc:
            raise ToruaError("bad_request", str(exc)) from None
        return self

    def chunking(self) -> ChunkSettings:
        return ChunkSettings(self.chunk_tokens, self.overlap_tokens)

    def properties(self) -> dict[str, Any]:
        return asdict(self)

    def answers(self) -> bool:
        """Whether the corpus has a chat model: answers, LLM summaries."""
        return bool(self.llm_url and self.llm_model)
