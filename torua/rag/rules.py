"""What a GraphRAG call may ask, for gateway, client and worker alike (BRIEF section
10): query modes, bounds, and the embedders and extractors a corpus may be built
with.

>>> MODES
('naive', 'local', 'global', 'hybrid')
"""

from __future__ import annotations

from torua.rag.corpus import EMBEDDERS, EXTRACTORS

MODES = ("naive", "local", "global", "hybrid")
FILTERED_CANDIDATES = 20  # x k: the ranked chunks a metadata filter chooses among
GLOBAL_COMMUNITIES = 3  # communities a global query answers from
MAX_K = 100
MAX_QUESTION_CHARS = 4096
MAX_DOCUMENTS = 10000  # per request to a worker
EMBEDDER_NAMES = tuple(EMBEDDERS)
EXTRACTOR_NAMES = tuple(EXTRACTORS)
