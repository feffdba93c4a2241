"""A small OpenAI-compatible server for the tests (no network, no model): what
`torua.rag.openai_compat` calls. Deterministic:

- chat with the LLM extractor's system prompt answers spaCy's own reading of the
  text as the extractor's JSON (named entities and dependency triples), so a corpus
  built by the LLM extractor can be compared with one built by spaCy;
- chat with the answer prompt answers "From [<first passage id>]: <its first
  sentence>"; with the summary prompt, "Summary: <the entities line>";
- embeddings: a hashed bag of words in `DIM` dimensions;
- model "broken" answers HTTP 500, and so does extraction of a text that says POISON.

Runs on its own thread and event loop; `calls` counts requests per kind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections import Counter

from aiohttp import web

from torua.ports import free_port
from torua.rag.answers import ANSWER_SYSTEM, SUMMARY_SYSTEM
from torua.rag.llm_extractor import SYSTEM as EXTRACT_SYSTEM

DIM = 64


def embedding(text: str) -> list[float]:
    vector = [0.0] * DIM
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
    return vector


class FakeLlm:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.calls: Counter[str] = Counter()
        self._extractor = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "FakeLlm":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fake LLM server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def _extract(self, text: str) -> dict:
        if self._extractor is None:
            from torua.rag.spacy_extractor import SpacyExtractor

            self._extractor = SpacyExtractor()
        found = self._extractor.extract([text])[0]
        return {
            "entities": [{"name": m.text, "type": m.type} for m in found.mentions],
            "relations": [{"source": found.mentions[t.subject].text, "predicate": t.predicate, "target": found.mentions[t.object].text} for t in found.triples],
        }

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("model") == "broken":
            self.calls["broken"] += 1
            return web.json_response({"error": {"message": "the model is broken"}}, status=500)
        system, user = (m["content"] for m in body["messages"])
        if system == EXTRACT_SYSTEM and "POISON" in user:
            self.calls["poisoned"] += 1
            return web.json_response({"error": {"message": "this text poisons the model"}}, status=500)
        if system == EXTRACT_SYSTEM:
            self.calls["extract"] += 1
            content = "Here is the graph:\n" + json.dumps(await asyncio.to_thread(self._extract, user))
        elif system == ANSWER_SYSTEM:
            self.calls["answer"] += 1
            first = re.search(r"^\[([^\]]+)\] ([^.]*\.)", user, re.M)
            content = f"From [{first.group(1)}]: {first.group(2)}" if first else "The passages do not say."
        elif system == SUMMARY_SYSTEM:
            self.calls["summary"] += 1
            content = "Summary: " + user.splitlines()[0]
        else:
            content = "?"
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls["embed"] += 1
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return web.json_response({"data": [{"index": i, "embedding": embedding(t)} for i, t in enumerate(texts)]})
