"""A worker's models, per corpus settings: the offline MiniLM embedder and spaCy
extractor, made once (loading them takes a second, so a worker loads them before
it says it is ready), and the ones over a corpus's OpenAI-compatible endpoint
(`torua.rag.llm_extractor`), made when a corpus first needs them.
"""

from __future__ import annotations

import threading
from typing import Any

from torua.rag.corpus import LLM_EXTRACTOR, REMOTE_EMBEDDER, CorpusSettings
from torua.rag.openai_compat import OpenAiCompatible


class Engines:
    def __init__(self, threads: int = 1, load: bool = True) -> None:
        self.threads = threads
        self._embedder: Any = None
        self._extractor: Any = None
        self._remote: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        if load:
            self.embedder, self.extractor  # noqa: B018  (made now)

    @property
    def embedder(self) -> Any:
        with self._lock:
            if self._embedder is None:
                from torua.rag.onnx_embedder import OnnxEmbedder

                self._embedder = OnnxEmbedder(threads=self.threads)
            return self._embedder

    @property
    def extractor(self) -> Any:
        with self._lock:
            if self._extractor is None:
                from torua.rag.spacy_extractor import SpacyExtractor

                self._extractor = SpacyExtractor()
            return self._extractor

    def _made(self, key: tuple[str, ...], make: Any) -> Any:
        with self._lock:
            if key not in self._remote:
                self._remote[key] = make()
            return self._remote[key]

    def embedder_for(self, settings: CorpusSettings) -> Any:
        if settings.embedder != REMOTE_EMBEDDER:
            return self.embedder
        from torua.rag.llm_extractor import RemoteEmbedder

        key = ("embedder", settings.llm_url, settings.embedding_model, str(settings.dim))
        return self._made(key, lambda: RemoteEmbedder(OpenAiCompatible(settings.llm_url), settings.embedding_model, settings.dim))

    def extractor_for(self, settings: CorpusSettings) -> Any:
        if settings.extractor != LLM_EXTRACTOR:
            return self.extractor
        from torua.rag.llm_extractor import LlmExtractor

        key = ("extractor", settings.llm_url, settings.llm_model)
        return self._made(key, lambda: LlmExtractor(OpenAiCompatible(settings.llm_url), settings.llm_model))

    def llm_for(self, settings: CorpusSettings) -> OpenAiCompatible | None:
        """The corpus's chat endpoint, or None when it has no `llm_model`."""
        if not settings.answers():
            return None
        return self._made(("llm", settings.llm_url), lambda: OpenAiCompatible(settings.llm_url))
