"""The GraphRAG calls, as the workers serve them (docs/design/graphrag.md section 5):
a gateway checks the caller's API key and passes each call on as a `RagRequest`
(subject ``torua.rag.api``, queue group ``torua-rag``: any worker answers), and
`RagService` answers with the worker's own `torua.Client` (one hop to the nodes for
vertices, edges and support; the gateways' NATS API for searches and graph
creation). The workers hold the embedder and extractor a query needs, so the
gateway stays light and queries scale with the workers.

`CorpusService` is one corpus: create, settings, queue documents (a job), a job's
progress, delete a document, query.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from torua.protocol.errors import ToruaError
from torua.protocol.messages import RagJob, RagRequest, SupportItem
from torua.protocol.vocabulary import RagTask
from torua.rag import answers, community_build, queue, resolution, retrieval, schema
from torua.rag.claim_store import ClaimStore
from torua.rag.claims import delete_version
from torua.rag.corpus import CorpusSettings
from torua.rag.engines import Engines
from torua.rag.ingest import CorpusWriter

from torua.rag.rules import FILTERED_CANDIDATES, GLOBAL_COMMUNITIES, MAX_DOCUMENTS, MAX_K, MAX_QUESTION_CHARS, MODES

if TYPE_CHECKING:
    from torua.client import Client

DELETE_WAIT_S = 3.0  # a delete waits this long at most for the version of its document being written


def document_job(job: str, corpus: str, n: int, document: Any) -> RagJob:
    """Document `n` (from 0) of a job as its queue message, checked: `bad_request` naming
    it (by its number, from 1) when it is not ``{"id"?, "text", "metadata"?}``."""
    if not isinstance(document, dict):
        raise ToruaError("bad_request", f"document {n + 1} must be an object {{id?, text, metadata?}}")
    unknown = sorted(set(document) - {"id", "text", "metadata"})
    if unknown:
        raise ToruaError("bad_request", f"document {n + 1}: unknown field(s) {', '.join(unknown)}")
    text = document.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ToruaError("bad_request", f"document {n + 1}: text must be non-empty text")
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ToruaError("bad_request", f"document {n + 1}: metadata must be an object")
    given = document.get("id")
    try:
        id = schema.validate_document_id(given) if given is not None else schema.document_id_of_text(text)
    except ToruaError as exc:
        raise ToruaError("bad_request", f"document {n + 1}: {exc.message}") from None
    return RagJob(job, corpus, id, text, metadata)


class CorpusService:
    def __init__(self, client: "Client", name: str, engines: Any = None, claims: ClaimStore | None = None) -> None:
        """`engines`: the worker's models (`torua.rag.engines.Engines`); None: made
        when a query first needs them. `claims`: the documents' (torua.rag.claims);
        None: a delete does not wait for a version being written."""
        self.client = client
        self.graph = client.graph(name)
        self.name = self.graph.name
        self.engines = engines if engines is not None else Engines(load=False)
        self.claims = claims

    async def create(self, **settings: Any) -> dict[str, Any]:
        """Create the corpus (its graph, with the corpus vertex holding `settings`);
        `created` False when it exists with these settings, `conflict` with others."""
        wanted = CorpusSettings.of(settings)
        try:
            graph = await self.graph.info()
        except ToruaError as exc:
            if exc.code != "not_found":
                raise
            # a gateway makes the graph before it asks a worker: made here only when called otherwise (with a key that may)
            await self.graph.create(vector_dim=wanted.dim, metric="cosine", text_properties=schema.TEXT_PROPERTIES)
        else:
            if (graph.get("vector_dim"), graph.get("metric"), sorted(graph.get("text_properties") or [])) != (wanted.dim, "cosine", sorted(schema.TEXT_PROPERTIES)):
                raise ToruaError("conflict", f"{self.name!r} is a graph with other settings than a corpus needs: {graph}")
        held = await self.graph.get_vertex(schema.CORPUS_VERTEX)
        if held is not None:
            if CorpusSettings.of(held["properties"]) != wanted:
                raise ToruaError("conflict", f"corpus {self.name!r} exists with other settings: {held['properties']}")
            return {"name": self.name, "settings": wanted.properties(), "created": False}
        await self.graph.put_vertex(schema.CORPUS_VERTEX, schema.CORPUS, wanted.properties())
        return {"name": self.name, "settings": wanted.properties(), "created": True}

    async def settings(self) -> CorpusSettings:
        held = await self.graph.get_vertex(schema.CORPUS_VERTEX)
        if held is None:
            raise ToruaError("not_found", f"{self.name!r} is not a corpus (create it with PUT /rag/{self.name})")
        return CorpusSettings.of(held["properties"])

    async def add(self, documents: list[dict[str, Any]], job: str = "", total: int = 0, first: int = 0) -> str:
        """Queue documents (``{"id"?, "text", "metadata"?}``; an id defaults to the text's
        hash); answers the job's id. Every document is checked before any is queued. A
        job sent in parts (a gateway splits a big one) names its `job`, its `total`
        documents and where this part starts (`first`, for the line numbers of errors)."""
        await self.settings()
        if not isinstance(documents, list) or not documents:
            raise ToruaError("bad_request", "documents must be a non-empty list")
        if len(documents) > MAX_DOCUMENTS:
            raise ToruaError("bad_request", f"at most {MAX_DOCUMENTS} documents at once")
        if job and (len(job) > 64 or not job.isalnum()):
            raise ToruaError("bad_request", "a job id is 1-64 letters and digits")
        job = job or uuid.uuid4().hex[:16]
        jobs = [self._job(job, first + n, d) for n, d in enumerate(documents)]
        ids = [j.id for j in jobs]
        if len(set(ids)) != len(ids):
            raise ToruaError("bad_request", "a document id is named twice in one job")
        return await self._queue(job, jobs, max(total, len(jobs)))

    async def _queue(self, job: str, jobs: list[RagJob], total: int) -> str:
        await self.graph.put_vertex(schema.job_vertex(job), schema.JOB, {"documents": total})
        nc = self.client._nc
        assert nc is not None
        js = nc.jetstream()
        await queue.ensure_stream(js)
        for item in jobs:
            await queue.publish(js, item)
        return job

    async def build_communities(self) -> str:
        """Queue a community run over the corpus (a job of one task; a worker runs
        `torua.rag.community_build.build`); answers the job's id."""
        await self.settings()
        job = uuid.uuid4().hex[:16]
        return await self._queue(job, [RagJob(job, self.name, "communities", "", task=RagTask.COMMUNITIES)], 1)

    async def community_run(self) -> dict[str, Any] | None:
        """The community run in use (`torua.rag.community_build`), or None before the first."""
        held = await self.graph.get_vertex(schema.COMMUNITIES_VERTEX)
        return None if held is None else held["properties"]

    def _job(self, job: str, n: int, document: Any) -> RagJob:
        return document_job(job, self.name, n, document)

    async def job(self, job: str) -> dict[str, Any]:
        """``{"job", "documents", "done", "failed", "state": "running"|"done", "first_error"?}``."""
        held = await self.graph.get_vertex(schema.job_vertex(job))
        if held is None:
            raise ToruaError("not_found", f"no job {job!r} in corpus {self.name!r}")
        done, failed = await self.graph.support([SupportItem(schema.job_vertex(job)), SupportItem(schema.job_vertex(job) + "/failed")])
        total = int(held["properties"].get("documents", 0))
        out: dict[str, Any] = {"job": job, "documents": total, "done": done, "failed": failed, "state": "done" if done + failed >= total else "running"}
        if failed:
            failures = await self.graph.get_vertex(schema.job_vertex(job) + "/failed")
            if failures is not None:
                out["first_error"] = failures["properties"].get("first_error", "")
        return out

    async def delete_document(self, document_id: str) -> bool:
        """Remove the document, its chunks and its share of every entity and relation
        (no re-index); False when there was no such document. In the queue's order
        (torua.rag.claims): after the version being written, if any (waiting at most
        `DELETE_WAIT_S`), and before any version sent after it; one sent before it and
        not written yet is then not written. When a version sent after it is written
        (or being written) already, that one stands."""
        await self.settings()
        document_id = schema.validate_document_id(document_id)
        if self.claims is None:
            return await CorpusWriter(self.graph).delete(document_id)
        version = delete_version(await self.claims.last_version())
        decision = await self.claims.claim_waiting(self.name, document_id, version, time.monotonic() + DELETE_WAIT_S)
        if decision == "wait":
            raise ToruaError("unavailable", f"a version of document {document_id!r} is still being written; try again")
        if decision == "superseded":
            return False  # a version sent after this delete is there, or on its way: it stands
        deleted = False
        try:
            async with self.claims.keeping([(self.name, document_id, version)]) as fence:  # its writes fenced as a worker's
                found = await CorpusWriter(self.graph.fenced(fence)).delete(document_id)
            deleted = True
        finally:
            await self.claims.release(self.name, document_id, version, written=deleted)
        return found

    async def query(self, question: str, mode: str = "naive", k: int = 10, answer: bool = False, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"chunks": [{"id", "document_id", "text", "score", "start", "end"}], "entities",
        "relations", "communities"}``, best first (torua.rag.retrieval): `naive` ranks
        chunks by vector similarity; `local` by the entities they mention, from the
        question's entities and their relations; `global` by the communities whose
        summaries are nearest the question; `hybrid` fuses vector, BM25 and local
        rankings with a second hop. `answer`: also the corpus's chat model's answer from
        the chunks, with the chunk ids it cites (``"answer"``, ``"citations"``).
        `metadata`: only chunks of documents whose metadata holds each of these keys
        with these values (among the best `FILTERED_CANDIDATES` x k of the ranking: a
        narrow filter may leave fewer than k)."""
        if not isinstance(question, str) or not question.strip() or len(question) > MAX_QUESTION_CHARS:
            raise ToruaError("bad_request", f"question must be non-empty text of at most {MAX_QUESTION_CHARS} characters")
        if mode not in MODES:
            raise ToruaError("bad_request", f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ToruaError("bad_request", f"k must be 1 to {MAX_K}")
        if metadata is not None and not isinstance(metadata, dict):
            raise ToruaError("bad_request", "metadata must be an object of key: value the documents' metadata must hold")
        settings = await self.settings()
        if answer and not settings.answers():
            raise ToruaError("bad_request", f"corpus {self.name!r} has no chat model: answers need its llm_url and llm_model settings")
        # the question's embedding, awaited only where a step needs it: BM25 and the
        # question's entities do not, so they start at once (beside the embedder)
        embedding = asyncio.ensure_future(asyncio.to_thread(self._embed, question, settings))
        wide = min(1000, (FILTERED_CANDIDATES if metadata else 4) * k)
        try:
            ranked, entities, relations, communities = await self._ranked(question, mode, k, wide, settings, embedding)
        finally:
            if not embedding.done():
                embedding.cancel()  # a step failed before it needed it
            elif not embedding.cancelled():
                embedding.exception()  # its failure was either raised above or does not matter now
        chunks = await self._visible(ranked[:wide], k, metadata or {})
        out = {"chunks": chunks, "entities": entities, "relations": relations, "communities": communities}
        if answer:
            out.update(await self._answer(question, chunks, settings))
        return out

    async def _ranked(
        self, question: str, mode: str, k: int, wide: int, settings: CorpusSettings, embedding: Awaitable[list[float]],
    ) -> tuple[list[tuple[str, float]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """`mode`'s ranking of chunks (id, score), best first (`wide` of them from each
        search), and its entities, relations and communities."""
        if mode == "global":
            ranked, communities, entities = await self._global(await embedding)
            return ranked, entities, [], communities
        if mode == "naive":
            hits = await self.graph.vector_search(await embedding, k=wide, label=schema.CHUNK, properties=False)
            return [(h["id"], float(h["score"])) for h in hits], [], [], []
        if mode == "local":
            ranked, entities, relations = await self._local(question, embedding, settings)
            return ranked, entities, relations, []

        # hybrid: the local ranking's entities, BM25, and vector then the entities of the
        # vector's best (the bridge), at once; then the chunks that mention the entities
        # of both, in one read
        async def vector_and_bridge() -> tuple[list[str], dict[str, int]]:
            # the bridge needs only the vector's hits: it does not wait for BM25's two rounds
            vector_ids = [h["id"] for h in await self.graph.vector_search(await embedding, k=wide, label=schema.CHUNK, properties=False)]
            return vector_ids, await self._bridge_entities(vector_ids[: retrieval.BRIDGE_FROM])

        (seed_scores, top, edges), (vector_ids, bridging), text_hits = await asyncio.gather(
            self._local_entities(question, embedding, settings), vector_and_bridge(),
            self.graph.text_search(question, k=wide, label=schema.CHUNK, properties=False),
        )
        mentioned = await self._mentioned([*top, *bridging])
        local, entities, relations = retrieval.local_ranking(seed_scores, top, edges, mentioned)
        bridged = retrieval.bridge(bridging, {e: mentioned[e] for e in bridging}, set(vector_ids[: retrieval.BRIDGE_FROM]))
        text_ids = [h["id"] for h in text_hits]
        fused = retrieval.rrf([vector_ids, text_ids, [c for c, _ in local[:wide]]])
        return retrieval.first_and_second_hop(fused, bridged, k), entities, relations, []

    async def _global(self, vector: list[float]) -> tuple[list[tuple[str, float]], list[dict[str, Any]], list[dict[str, Any]]]:
        """The communities whose summaries are nearest the question (of the run in use),
        their representative chunks (torua.rag.retrieval.community_chunks) and their
        most central entities."""
        run = await self.community_run()
        if run is None:
            raise ToruaError("conflict", f"corpus {self.name!r} has no communities yet: build them (POST /rag/{self.name}/communities, torua rag communities {self.name})")
        prefix = community_build.run_prefix(str(run.get("run", "")))
        hits = await self.graph.vector_search(vector, k=4 * GLOBAL_COMMUNITIES, label=schema.COMMUNITY)
        best = [h for h in hits if h["id"].startswith(prefix)][:GLOBAL_COMMUNITIES]
        communities = [
            {"id": h["id"], "score": float(h["score"]), "summary": h["properties"].get("summary", ""), "size": h["properties"].get("size", 0),
             "entities": h["properties"].get("entities", [])}
            for h in best
        ]
        ranked = retrieval.community_chunks([(c["score"], h["properties"].get("chunks", [])) for c, h in zip(communities, best)])
        entities = [{"id": e, "community": c["id"]} for c in communities for e in c["entities"]]
        return ranked, communities, entities

    async def _local(self, question: str, embedding: Awaitable[list[float]], settings: CorpusSettings) -> tuple[list[tuple[str, float]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Chunks ranked by the entities they mention, from the question's entities out
        (torua.rag.retrieval), with the entities and relations that ranked them."""
        seed_scores, top, edges = await self._local_entities(question, embedding, settings)
        return retrieval.local_ranking(seed_scores, top, edges, await self._mentioned(list(top)))

    async def _local_entities(
        self, question: str, embedding: Awaitable[list[float]], settings: CorpusSettings,
    ) -> tuple[dict[str, float], dict[str, float], dict[tuple[str, str], dict[str, Any]]]:
        """A local query's seeds (scores), its entities (the seeds and their neighbours,
        best first, with scores) and the relations between them, by (src, dst)."""
        async def by_name() -> tuple[list[str], list[Any]]:
            mentions = await asyncio.to_thread(self._mentions, question, settings)
            named = [resolution.entity_id(m.type, m.text) for m in mentions]
            found = await self.graph.get_vertices(named)
            return named, [found[id] for id in named]

        # the question's named entities and the entities nearest it, at once
        async def nearest_entities() -> list[dict[str, Any]]:
            return await self.graph.vector_search(await embedding, k=retrieval.SEEDS, label=schema.ENTITY, properties=False)

        (named, present), nearest = await asyncio.gather(by_name(), nearest_entities())
        seed_scores = retrieval.seeds([id for id, v in zip(named, present) if v is not None], [(h["id"], float(h["score"])) for h in nearest])
        related = await self.graph.edges_of(list(seed_scores), direction="both", type=schema.RELATED, limit=100)
        edges = {(e["src"], e["dst"]): e for id in seed_scores for e in related[id]}
        scores = retrieval.expand(seed_scores, [(src, dst, float(e["weight"])) for (src, dst), e in edges.items()])
        top = dict(sorted(scores.items(), key=lambda item: -item[1])[: 4 * retrieval.SEEDS])
        return seed_scores, top, edges

    async def _mentioned(self, entities: list[str]) -> dict[str, list[str]]:
        """The chunks that mention each of `entities` (at most 1000 each), in one read."""
        pages = await self.graph.edges_of(list(dict.fromkeys(entities)), direction="in", type=schema.MENTIONS, limit=1000)
        return {id: [e["src"] for e in page] for id, page in pages.items()}

    async def _bridge_entities(self, first: list[str]) -> dict[str, int]:
        """The entities the chunks found first mention, each with the rank of the best
        such chunk: where the second hop starts (torua.rag.retrieval.bridge)."""
        pages = await self.graph.edges_of(first, direction="out", type=schema.MENTIONS, limit=100)
        entities: dict[str, int] = {}
        for rank, chunk in enumerate(dict.fromkeys(first), start=1):
            for e in pages[chunk]:
                entities.setdefault(e["dst"], rank)  # the best chunk that mentions it
        return entities

    async def _visible(self, ranked: list[tuple[str, float]], k: int, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """The first `k` of `ranked` (chunk id, score) whose document is complete and holds
        them now (not one being written, deleted or replaced) and whose metadata holds
        `metadata`, with their text. Read a page at a time (twice what is still wanted):
        most queries need only their first page, not every candidate. A page's chunks
        and the documents their ids name are read at once, one request per node (a
        chunk's own `document_id` is the one checked: one its id does not name is read
        after)."""
        chunks: list[dict[str, Any]] = []
        held: dict[str, Any] = {}
        start = 0
        while start < len(ranked) and len(chunks) < k:
            page = ranked[start : start + 2 * (k - len(chunks))]
            start += len(page)
            named = list(dict.fromkeys(d for id, _ in page if (d := schema.chunk_document(id)) is not None and d not in held))
            found = await self.graph.get_vertices([id for id, _ in page] + [schema.document_vertex(d) for d in named])
            vertices = [found[id] for id, _ in page]
            held.update((d, found[schema.document_vertex(d)]) for d in named)
            docs = list({v["properties"].get("document_id") for v in vertices if v is not None} - held.keys())
            if docs:
                more = await self.graph.get_vertices([schema.document_vertex(d) for d in docs])
                held.update((d, more[schema.document_vertex(d)]) for d in docs)
            for (id, score), vertex in zip(page, vertices):
                if vertex is None:
                    continue
                p = vertex["properties"]
                doc = held.get(p.get("document_id"))
                if doc is None or doc["properties"].get("status") != "complete" or id.rsplit("/", 1)[1] not in doc["properties"].get("chunks", []):
                    continue
                held_metadata = doc["properties"].get("metadata") or {}
                if any(held_metadata.get(key) != value for key, value in metadata.items()):
                    continue
                chunks.append({"id": id, "document_id": p["document_id"], "text": p.get("text", ""), "score": score, "start": p.get("start"), "end": p.get("end")})
                if len(chunks) == k:
                    break
        return chunks

    def _embed(self, text: str, settings: CorpusSettings) -> list[float]:
        return [float(x) for x in self.engines.embedder_for(settings).embed([text])[0]]

    def _mentions(self, text: str, settings: CorpusSettings) -> Sequence[Any]:
        """The question's mentions: from the extractor's `mentions` where it has one (spaCy:
        its entity recognizer alone), else from a whole extraction."""
        extractor = self.engines.extractor_for(settings)
        mentions = getattr(extractor, "mentions", None)
        return mentions(text) if mentions is not None else extractor.extract([text])[0].mentions

    async def _answer(self, question: str, chunks: list[dict[str, Any]], settings: CorpusSettings) -> dict[str, Any]:
        """The chat model's answer from the chunks, and the chunk ids it cites."""
        llm = self.engines.llm_for(settings)
        if llm is None:
            raise ToruaError("bad_request", f"corpus {self.name!r} has no chat model: answers need its llm_url and llm_model settings")
        text = await asyncio.to_thread(llm.chat, settings.llm_model, answers.ANSWER_SYSTEM, answers.answer_prompt(question, chunks))
        return {"answer": text.strip(), "citations": answers.citations(text, [c["id"] for c in chunks])}


class RagService:
    """A worker's answers to `RagRequest`s."""

    def __init__(self, client: "Client", engines: Any = None, claims: ClaimStore | None = None) -> None:
        self.client = client
        self.engines = engines if engines is not None else Engines(load=False)
        self.claims = claims

    def corpus(self, name: str) -> CorpusService:
        return CorpusService(self.client, name, self.engines, self.claims)  # light: made for each call, nothing kept per corpus

    async def answer(self, request: RagRequest) -> dict[str, Any]:
        corpus = self.corpus(request.corpus)
        if request.op == "create":
            return await corpus.create(**request.settings)
        if request.op == "get":
            settings = await corpus.settings()
            info, run = await asyncio.gather(corpus.graph.info(), corpus.community_run())
            return {"name": corpus.name, "settings": settings.properties(), "counts": info.get("counts", {}), "communities": run}
        if request.op == "communities":
            return {"job": await corpus.build_communities(), "documents": 1}
        if request.op == "documents":
            job = await corpus.add(request.documents, request.job, request.total)
            return {"job": job, "documents": max(request.total, len(request.documents))}
        if request.op == "job":
            return await corpus.job(request.job)
        if request.op == "delete_document":
            return {"deleted": await corpus.delete_document(request.id)}
        if request.op == "query":
            return await corpus.query(request.question, request.mode, request.k, request.answer, request.metadata or None)
        raise ToruaError("bad_request", f"unknown GraphRAG call {request.op!r}")

