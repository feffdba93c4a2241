"""`torua.Client.rag(name)`: one GraphRAG corpus from Python (BRIEF section 10,
docs/design/graphrag.md section 5), through the gateways' NATS API
(``torua.api.rag.*``, each call with the client's API key), which pass it on to the
workers.

    async with Client("nats://127.0.0.1:4222") as db:
        notes = db.rag("notes")
        await notes.create(chunk_tokens=200)
        job = await notes.add([{"id": "a", "text": "Marie Curie was born in Warsaw."}])
        print(await notes.wait(job))
        print(await notes.query("Where was Marie Curie born?", mode="hybrid"))

Documents are queued (`add` answers a job id at once) and ingested by `torua
worker` processes; `job` shows a job's progress.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from torua.graph import rules
from torua.protocol.errors import ToruaError

if TYPE_CHECKING:
    from torua.client import Client


class Corpus:
    def __init__(self, client: "Client", name: str) -> None:
        self.client = client
        self.name = rules.validate_graph_name(name)

    async def _api(self, call: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.client._api(f"rag.{call}", {"graph": self.name, **{k: v for k, v in payload.items() if v is not None}})

    async def create(self, **settings: Any) -> dict[str, Any]:
        """Create the corpus (`chunk_tokens`, `overlap_tokens`, `embedder`, `extractor`, `dim`,
        `llm_url`, `llm_model`, `embedding_model`); `created` False when it exists with these
        settings, `conflict` with others."""
        return await self._api("create", settings)

    async def info(self) -> dict[str, Any]:
        """``{"name", "settings", "counts", "communities"}`` (`communities`: the run in use, or None)."""
        return await self._api("get", {})

    async def build_communities(self) -> str:
        """Queue a community run (Louvain over the entity graph, summaries; what a
        `global` query reads); answers the job's id (`wait` for it)."""
        return (await self._api("communities", {}))["job"]

    async def add(self, documents: list[dict[str, Any]]) -> str:
        """Queue documents (``{"id"?, "text", "metadata"?}``); answers the job's id."""
        lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents)
        return (await self._api("documents", {"ndjson": lines}))["job"]

    async def job(self, job: str) -> dict[str, Any]:
        """``{"job", "documents", "done", "failed", "state": "running"|"done", "first_error"?}``."""
        return await self._api("job", {"job": job})

    async def wait(self, job: str, timeout: float = 600.0, every: float = 0.2) -> dict[str, Any]:
        """The job's progress once it is done and what it wrote is queryable (a query
        answers: right after many writes each shard's index catches up first, and a
        query meanwhile answers `unavailable`, "try again"); `timeout` (ToruaError) if
        not within `timeout` s. A poll that meets a node failing over (`unavailable`,
        `timeout`) is tried again."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] | str = "no answer yet"
        done: dict[str, Any] | None = None
        while True:
            try:
                if done is None:
                    status = await self.job(job)
                    if status["state"] == "done":
                        done = status
                if done is not None:
                    await self.indexed()
                    return done
            except ToruaError as exc:
                if exc.code not in ("unavailable", "timeout"):
                    raise
                status = f"{exc.code}: {exc.message}"
            if time.monotonic() > deadline:
                raise ToruaError("timeout", f"job {job} not done within {timeout:g}s: {status}")
            await asyncio.sleep(every)

    async def indexed(self) -> None:
        """Returns once every shard's index holds the corpus's writes so far (a text
        search over all shards answers; no model is called); `unavailable` or `timeout`
        while one is still catching up."""
        await self.client.graph(self.name).text_search("ready", k=1)

    async def document(self, document_id: str) -> dict[str, Any] | None:
        """The document's vertex properties (`status`, `chunks`, `metadata`), or None."""
        from torua.rag import schema

        vertex = await self.client.graph(self.name).get_vertex(schema.document_vertex(document_id))
        return None if vertex is None else vertex["properties"]

    async def delete_document(self, document_id: str) -> None:
        """Remove the document, its chunks and its share of every entity and relation
        (idempotent: no such document is no error)."""
        await self._api("delete_document", {"id": document_id})

    async def query(
        self, question: str, mode: str = "naive", k: int = 10, answer: bool = False, metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``{"chunks": [{"id", "document_id", "text", "score", "start", "end"}], "entities", "relations", "communities"}``;
        `answer`: also ``"answer"`` and ``"citations"`` from the corpus's chat model; `metadata`: only
        chunks of documents whose metadata holds these keys and values."""
        return await self._api("query", {"question": question, "mode": mode, "k": k, "answer": answer or None, "metadata": metadata or None})
