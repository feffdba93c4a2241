"""Sentence-aware chunks of a document, measured in the embedder's tokens
(docs/design/graphrag.md section 1). Pure: the sentences' spans and the tokens'
spans come in (`torua.rag.spacy_extractor.sentence_spans`, `Embedder.token_spans`),
chunks go out.

Sentences are packed whole into chunks of at most `chunk_tokens` tokens; a chunk
after the first starts with the last sentences of the one before that fit in
`overlap_tokens` (whole sentences: an overlap never starts mid-sentence). A
sentence longer than a chunk is cut at token boundaries into pieces that fit.
Each chunk is a slice of the document, `text[start:end]`, with the hash of its
text: a chunk whose text is unchanged keeps its hash, so a document sent again is
embedded and extracted again only where its chunks changed.

>>> import re
>>> words = lambda t: [(m.start(), m.end()) for m in re.finditer(r"\\S+", t)]
>>> text = "One two three. Four five. Six seven eight nine."
>>> spans = [(0, 14), (15, 25), (26, 48)]
>>> [(c.start, c.end, c.tokens) for c in chunk_text(text, spans, words, ChunkSettings(chunk_tokens=6, overlap_tokens=2))]
[(0, 25, 5), (15, 47, 6)]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TokenSpans = Callable[[str], list[tuple[int, int]]]

MIN_CHUNK_TOKENS = 16


@dataclass(frozen=True)
class ChunkSettings:
    """A corpus's chunking: tokens per chunk and of overlap (of the embedder's tokenizer)."""

    chunk_tokens: int = 200
    overlap_tokens: int = 40

    def check(self, max_tokens: int) -> "ChunkSettings":
        """These settings, or `ValueError` saying which is out of range for an embedder
        reading `max_tokens` tokens (two of them are its markers).

        >>> ChunkSettings(300, 40).check(256)
        Traceback (most recent call last):
        ValueError: chunk_tokens must be between 16 and 254 (the embedder reads 256 tokens), not 300
        """
        if not (isinstance(self.chunk_tokens, int) and MIN_CHUNK_TOKENS <= self.chunk_tokens <= max_tokens - 2):
            raise ValueError(f"chunk_tokens must be between {MIN_CHUNK_TOKENS} and {max_tokens - 2} (the embedder reads {max_tokens} tokens), not {self.chunk_tokens}")
        if not (isinstance(self.overlap_tokens, int) and 0 <= self.overlap_tokens <= self.chunk_tokens // 2):
            raise ValueError(f"overlap_tokens must be between 0 and half of chunk_tokens ({self.chunk_tokens // 2}), not {self.overlap_tokens}")
        return self


@dataclass(frozen=True)
class Chunk:
    index: int  # its place in the document, from 0
    start: int  # character offsets in the document: text[start:end]
    end: int
    text: str
    tokens: int
    hash: str  # of its text: 16 hex digits of sha256

    def vertex_id(self, document_id: str) -> str:
        """The chunk's vertex in the corpus graph (docs/design/graphrag.md section 3)."""
        return f"c/{document_id}/{self.hash}"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Unit:
    """A sentence, or a piece of one too long for a chunk."""

    start: int
    end: int
    tokens: int


def chunk_text(text: str, sentences: Sequence[tuple[int, int]], token_spans: TokenSpans, settings: ChunkSettings) -> list[Chunk]:
    """`text` in chunks along `sentences` (character spans, in order; whitespace-only
    ones are skipped), each at most `settings.chunk_tokens` tokens by `token_spans`."""
    units = [u for start, end in sentences for u in _units(text, start, end, token_spans, settings.chunk_tokens)]
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and size + unit.tokens > settings.chunk_tokens:
            groups.append(current)
            current = _overlap(current, settings.overlap_tokens, settings.chunk_tokens - unit.tokens)
            size = sum(u.tokens for u in current)
        current.append(unit)
        size += unit.tokens
    if current:
        groups.append(current)
    chunks = []
    for index, group in enumerate(groups):
        start, end = group[0].start, group[-1].end
        piece = text[start:end]
        chunks.append(Chunk(index, start, end, piece, sum(u.tokens for u in group), text_hash(piece)))
    return chunks


def _units(text: str, start: int, end: int, token_spans: TokenSpans, limit: int) -> list[_Unit]:
    """The sentence `text[start:end]` without its surrounding whitespace, as one unit, or
    cut at token boundaries into units of at most `limit` tokens."""
    sentence = text[start:end]
    stripped = sentence.strip()
    if not stripped:
        return []
    start += len(sentence) - len(sentence.lstrip())
    end = start + len(stripped)
    spans = token_spans(stripped)
    if len(spans) <= limit:
        return [_Unit(start, end, max(1, len(spans)))]
    units = []
    for first in range(0, len(spans), limit):
        part = spans[first : first + limit]
        piece_end = spans[first + limit][0] if first + limit < len(spans) else len(stripped)
        piece_start = part[0][0]
        piece = stripped[piece_start:piece_end].rstrip()
        units.append(_Unit(start + piece_start, start + piece_start + len(piece), len(part)))
    return units


def _overlap(previous: list[_Unit], overlap_tokens: int, room: int) -> list[_Unit]:
    """The last whole units of `previous` that fit in `overlap_tokens` and in `room`
    (what the next unit leaves of a chunk)."""
    kept: list[_Unit] = []
    size = 0
    for unit in reversed(previous[1:]):  # never the whole previous chunk again
        if size + unit.tokens > min(overlap_tokens, room):
            break
        kept.insert(0, unit)
        size += unit.tokens
    return kept
