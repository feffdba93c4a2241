"""A corpus in its graph: vertex ids, labels and edge types (BRIEF section 10,
docs/design/graphrag.md section 3). Ids are made from content, so every write of a
job is idempotent and a redelivered job writes the same vertices again.

>>> document_vertex("report 7"), job_vertex("4f2a")
('d/report 7', 'j/4f2a')
>>> document_id_of_text("Some text.")
'auto-13b4c5aecd1b6d74'
"""

from __future__ import annotations

import hashlib

from torua.graph import rules
from torua.protocol.errors import ToruaError

# labels
CORPUS, DOCUMENT, CHUNK, ENTITY, COMMUNITY, JOB = "Corpus", "Document", "Chunk", "Entity", "Community", "Job"
COMMUNITY_RUN = "CommunityRun"
# edge types
HAS_CHUNK, MENTIONS, RELATED, IN_COMMUNITY = "HAS_CHUNK", "MENTIONS", "RELATED", "IN_COMMUNITY"

CORPUS_VERTEX = "corpus"  # its settings (torua.rag.corpus.CorpusSettings)
COMMUNITIES_VERTEX = "communities"  # the community run in use (torua.rag.community_build)
TEXT_PROPERTIES = ("text", "name")  # what the corpus's full-text index reads: chunks' text, entities' names
MAX_DOCUMENT_ID_BYTES = 900  # a document's vertex id is "d/" + it, a chunk's "c/" + it + "/" + 16 hex: all within the id rule's 1024


def document_vertex(document_id: str) -> str:
    return f"d/{document_id}"


def chunk_document(chunk_vertex: str) -> str | None:
    """The document id a chunk's vertex id names (`c/<document id>/<hash>`, as
    `torua.rag.chunking.Chunk.vertex_id` makes it), None for another id.

    >>> chunk_document("c/notes/a/1f2e3d4c5b6a7980"), chunk_document("e/person/ada")
    ('notes/a', None)
    """
    if not chunk_vertex.startswith("c/") or chunk_vertex.count("/") < 2:
        return None
    return chunk_vertex[2:].rsplit("/", 1)[0]


def job_vertex(job: str) -> str:
    return f"j/{job}"


def document_id_of_text(text: str) -> str:
    """The id of a document sent without one: its text's hash (sending it again is the same document)."""
    return "auto-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def validate_document_id(document_id: object) -> str:
    """A document id: the vertex id rules, and short enough for its chunks' ids."""
    checked = rules.validate_vertex_id(document_id, "document id")
    if len(checked.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_ID_BYTES:
        raise ToruaError("bad_request", f"a document id is at most {MAX_DOCUMENT_ID_BYTES} bytes")
    return checked
