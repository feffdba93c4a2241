"""The gateway's GraphRAG operations (BRIEF section 10; docs/design/graphrag.md
section 5): the `Gateway` methods that `torua.gateway.endpoints` declares for
``/rag/...`` and ``torua.api.rag.*``.

The gateway checks the call (its params, the caller's API key: the front-ends do)
and passes it on as a `RagRequest` on ``torua.rag.api`` to the workers, which hold
the embedder and extractor; any worker answers. Documents are read here (JSON
lines, every one checked before any is passed on), given a job id, and passed on
in parts that fit a NATS message; the workers queue them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from nats.errors import Error as NatsError, NoRespondersError, TimeoutError as NatsTimeout

from torua.gateway.params import NdjsonBody
from torua.graph.imports import LineSplitter
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import RagReply, RagRequest
from torua.rag import schema
from torua.rag.corpus import CorpusSettings
from torua.rag.queue import MAX_DOCUMENT_BYTES
from torua.rag.service import document_job

API_SUBJECT = "torua.rag.api"
PART_BYTES = 900 << 10  # documents per message to a worker, about
ANSWER_TIMEOUT_S = 150.0  # a query that asks for an answer (the model's time; torua.rag.openai_compat allows 120 s)
NO_WORKER = "no torua worker answers: start one (torua worker, or torua up --workers N)"


class RagEndpoints:
    """The GraphRAG half of `torua.gateway.service.Gateway` (mixed into it)."""

    nc: Any
    config: Any

    async def _rag(self, request: RagRequest, timeout: float | None = None) -> dict[str, Any]:
        try:
            msg = await self.nc.request(API_SUBJECT, encode(request), timeout=timeout or self.config.request_timeout)
        except NoRespondersError:
            raise ToruaError("unavailable", NO_WORKER, retry_after=1.0) from None
        except NatsTimeout:
            raise ToruaError("timeout", f"no worker answered {request.op} within {timeout or self.config.request_timeout:g}s") from None
        except NatsError as exc:
            raise ToruaError("unavailable", f"NATS: {exc or type(exc).__name__}") from None
        reply = decode(RagReply, msg.data)
        if not reply.ok:
            raise ToruaError(reply.error_code or "internal", reply.error_message)
        return reply.result

    async def rag_create(self, graph: str, chunk_tokens: int | None = None, overlap_tokens: int | None = None,
                         embedder: str | None = None, extractor: str | None = None, dim: int | None = None, llm_url: str | None = None,
                         llm_model: str | None = None, embedding_model: str | None = None) -> dict[str, Any]:
        given = {"chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens, "embedder": embedder, "extractor": extractor, "dim": dim,
                 "llm_url": llm_url, "llm_model": llm_model, "embedding_model": embedding_model}
        settings = {k: v for k, v in given.items() if v is not None}
        # The corpus's graph is made here, where the caller's key was checked for it: the
        # workers' own key may only read and write corpora (role write), not make graphs.
        wanted = CorpusSettings.of(settings)
        await self.graph_create(graph, vector_dim=wanted.dim, metric="cosine", text_properties=list(schema.TEXT_PROPERTIES))  # type: ignore[attr-defined]
        return await self._rag(RagRequest("create", graph, settings=settings))

    async def rag_get(self, graph: str) -> dict[str, Any]:
        return await self._rag(RagRequest("get", graph))

    async def rag_job(self, graph: str, job: str) -> dict[str, Any]:
        return await self._rag(RagRequest("job", graph, job=job))

    async def rag_delete_document(self, graph: str, id: str) -> None:
        await self._rag(RagRequest("delete_document", graph, id=id))

    async def rag_communities(self, graph: str) -> dict[str, Any]:
        answer = await self._rag(RagRequest("communities", graph))
        return {**answer, "accepted": True}

    async def rag_query(self, graph: str, question: str, mode: str = "naive", k: int = 10, answer: bool = False,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        # an answer waits for the chat model: the longer deadline of the LLM endpoint's
        return await self._rag(RagRequest("query", graph, question=question, mode=mode, k=k, answer=answer, metadata=metadata or {}),
                               timeout=ANSWER_TIMEOUT_S if answer else None)

    async def rag_documents(self, graph: str, ndjson: NdjsonBody) -> dict[str, Any]:
        """Every line read and checked first (a bad one is `bad_request` naming it, and
        nothing is queued), then passed on in parts; answers the job (202)."""
        limit = self.config.max_import_bytes
        job = uuid.uuid4().hex[:16]
        documents: list[dict[str, Any]] = []
        sizes: list[int] = []
        ids: set[str] = set()
        splitter, size = LineSplitter(), 0

        def take(number: int, line: bytes) -> None:
            if not line.strip():
                return
            try:
                document = json.loads(line)
            except ValueError:
                raise ToruaError("bad_request", f"line {number}: not JSON") from None
            checked = document_job(job, graph, len(documents), document)
            if checked.id in ids:
                raise ToruaError("bad_request", f"line {number}: document {checked.id!r} is named twice in one job")
            ids.add(checked.id)
            if len(checked.text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
                raise ToruaError("value_too_large", f"line {number}: a document holds at most {MAX_DOCUMENT_BYTES} bytes of text")
            documents.append(document)
            sizes.append(len(line))

        async for chunk in ndjson.chunks():
            size += len(chunk)
            if size > limit:
                raise ToruaError("value_too_large", f"the documents are larger than the limit of {limit} bytes (max_import_bytes); send them in parts")
            for number, line in splitter.feed(chunk):
                take(number, line)
        for number, line in splitter.finish():
            take(number, line)
        if not documents:
            raise ToruaError("bad_request", "no documents: one JSON object {id?, text, metadata?} per line")
        part_size = 0
        parts: list[list[dict[str, Any]]] = [[]]
        for document, n in zip(documents, sizes):
            if parts[-1] and part_size + n > PART_BYTES:
                parts.append([])
                part_size = 0
            parts[-1].append(document)
            part_size += n
        for part in parts:
            await self._rag(RagRequest("documents", graph, documents=part, job=job, total=len(documents)))
        return {"job": job, "documents": len(documents), "accepted": True}
