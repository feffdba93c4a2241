"""The anchor of `torua bench --rag`: the GraphRAG pipeline's own components (chunk,
embed, extract, resolve, and the entities' name embeddings, as a worker does) run
in one process on the same documents, with nothing written anywhere: what the
cluster's ingestion may cost at most 30% more than. Run by the bench as its own
process, on an otherwise idle machine:

    python -m torua.bench.rag_anchor WORKDIR

It reads `WORKDIR/rag-documents.ndjson` and `WORKDIR/rag-anchor-input.json`
(`threads`: the embedder's, `chunk_tokens`, `overlap_tokens`) and writes
`WORKDIR/rag-anchor-result.json`. Loading the models is not timed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil

from torua.gc_settings import settle_gc
from torua.rag.chunking import ChunkSettings
from torua.rag.onnx_embedder import OnnxEmbedder
from torua.rag.pipeline import plan_document
from torua.rag.resolution import Resolver
from torua.rag.spacy_extractor import SpacyExtractor


def main(workdir: Path) -> None:
    given = json.loads((workdir / "rag-anchor-input.json").read_text())
    documents = [json.loads(line) for line in (workdir / "rag-documents.ndjson").read_text().splitlines() if line.strip()]
    embedder, extractor = OnnxEmbedder(threads=int(given["threads"])), SpacyExtractor()
    settings = ChunkSettings(int(given["chunk_tokens"]), int(given["overlap_tokens"]))
    resolver = Resolver()
    embedder.embed(["warm up"])
    extractor.extract(["Warm up in Paris."])
    chunks = entities = 0
    started = time.perf_counter()
    for document in documents:
        plan = plan_document(document["id"], document["text"], settings, embedder, extractor, resolver)
        names = sorted(plan.entities)
        embedder.embed([plan.entities[n][1] for n in names])
        chunks += len(plan.new)
        entities += len(names)
    seconds = time.perf_counter() - started
    result = {
        "documents": len(documents), "chunks": chunks, "entity_mentions": entities, "seconds": round(seconds, 3),
        "documents_per_s": round(len(documents) / seconds, 2), "threads": int(given["threads"]),
        "rss_mib": round(psutil.Process().memory_info().rss / 2**20, 1),
    }
    (workdir / "rag-anchor-result.json").write_text(json.dumps(result))
    print(f"pipeline in one process: {result['documents']} documents, {chunks} chunks in {seconds:.1f} s ({result['documents_per_s']} documents/s)", flush=True)


if __name__ == "__main__":
    settle_gc()  # as a Torua process does (torua.gc_settings): the ratio compares like with like
    main(Path(sys.argv[1]))
