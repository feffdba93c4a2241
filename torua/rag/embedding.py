"""What the pipeline needs from an embedder (docs/design/graphrag.md section 1), and
the parts of embedding that do not depend on which one.

An embedder turns texts into L2-normalised vectors of `dim` floats (so cosine
similarity is a dot product), and tells the chunker where its tokens are, so that
a chunk never holds more than the embedder reads. A corpus records the embedder's
`name` and `dim` it was built with: a query embedded by another model would
compare vectors of different spaces.

>>> batches_by_length([5, 1, 3, 2, 4], batch_size=2)
[[1, 3], [2, 4], [0]]
>>> [round(float(x), 3) for x in mean_pooled(np.array([[[1.0, 0.0], [3.0, 4.0], [9.0, 9.0]]]), np.array([[1, 1, 0]]))[0]]
[0.707, 0.707]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    name: str  # recorded with a corpus, e.g. "all-MiniLM-L6-v2-int8"
    dim: int
    max_tokens: int  # what one text may hold (more is cut)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised, in the order given."""
        ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """The character span of each token of `text` (no special tokens, no limit)."""
        ...


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indexes of texts in batches of similar length (shortest first): a batch is
    padded to its longest text, so sorting cut the embedder's work about threefold
    (~220 against ~70 sentences/s on 2 cores, measured for the issue)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence-transformers' pooling for all-MiniLM-L6-v2: the mean of the token
    vectors under the attention mask, then L2-normalised. `hidden` is (batch,
    tokens, dim), `mask` (batch, tokens)."""
    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return (pooled / norms).astype(np.float32)
