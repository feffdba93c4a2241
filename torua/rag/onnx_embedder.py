"""The default embedder: all-MiniLM-L6-v2 (384-d, cosine) as int8 ONNX, run with
onnxruntime on the CPU, tokenised with Hugging Face `tokenizers`; no torch. The one
module that imports onnxruntime and tokenizers (docs/design/graphrag.md sections 1
and 2): another runtime replaces this file, not its callers.

Its files are checked against their recorded sha256 (`torua.rag.model_files`)
before the first use. The model reads at most 256 tokens of a text (sentence-
transformers' `max_seq_length` for it); the chunker keeps chunks shorter.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from torua.rag.embedding import batches_by_length, mean_pooled
from torua.rag.model_files import MINILM_ONNX, MINILM_TOKENIZER, checked

NAME = "all-MiniLM-L6-v2-int8"
DIM = 384
MAX_TOKENS = 256
BATCH = 32


def token_counter() -> "Any":
    """MiniLM's tokenizer without truncation or padding: where every token of a text is
    (the chunker counts with it; a remote embedder's chunks too)."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_file(str(checked(MINILM_TOKENIZER)))
    counter.no_truncation()
    counter.no_padding()
    return counter


class OnnxEmbedder:
    name = NAME
    dim = DIM
    max_tokens = MAX_TOKENS

    def __init__(self, threads: int = 1, batch_size: int = BATCH) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        if threads < 1 or batch_size < 1:
            raise ValueError("threads and batch_size must be at least 1")
        self.batch_size = batch_size
        tokenizer_path = str(checked(MINILM_TOKENIZER))
        self._tokenizer = Tokenizer.from_file(tokenizer_path)
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self._counter = token_counter()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(checked(MINILM_ONNX)), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()  # one run at a time: the session's threads are the budget

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [tuple(span) for span in self._counter.encode(text, add_special_tokens=False).offsets]  # type: ignore[misc]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        for batch in batches_by_length([len(e.ids) for e in encodings], self.batch_size):
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            with self._lock:
                (hidden,) = self._session.run(["last_hidden_state"], feeds)
            out[batch] = mean_pooled(hidden, mask)
        return out
