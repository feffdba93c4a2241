"""A client for an OpenAI-compatible HTTP endpoint (`POST {url}/chat/completions`,
`POST {url}/embeddings`), as vLLM, llama.cpp's server, Ollama, LM Studio and
OpenAI itself serve them: what a corpus's LLM extractor, answers, community
summaries and remote embedder call (docs/design/graphrag.md section 8).

Synchronous on purpose: the pipeline runs in a worker's thread. The API key is the
worker's (`TORUA_LLM_API_KEY` in its environment), never a corpus setting: a
corpus's settings are readable by anyone who may read its graph. Every call has a
deadline; a failure is `ToruaError("unavailable")` naming the endpoint, which a
worker takes as "try this document again later".

>>> first_json_object('Sure! {"entities": [{"name": "Ada"}]} Hope it helps.')
{'entities': [{'name': 'Ada'}]}
>>> first_json_object("no JSON here") is None
True
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from torua.protocol.errors import ToruaError

API_KEY_ENV = "TORUA_LLM_API_KEY"
TIMEOUT_S = 120.0
MAX_REPLY_BYTES = 16 << 20


def first_json_object(text: str) -> Any:
    """The first JSON object in `text` (models wrap JSON in prose or code fences), or None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
            if isinstance(value, dict):
                return value
        except ValueError:
            pass
        start = text.find("{", start + 1)
    return None


class OpenAiCompatible:
    def __init__(self, url: str, timeout: float = TIMEOUT_S, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                data = resp.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", "replace")
            raise ToruaError("unavailable", f"the LLM endpoint {self.url}{path} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:  # refused, unreachable, timed out
            raise ToruaError("unavailable", f"the LLM endpoint {self.url}{path} does not answer: {getattr(exc, 'reason', exc)}") from None
        if len(data) > MAX_REPLY_BYTES:
            raise ToruaError("unavailable", f"the LLM endpoint {self.url}{path} answered more than {MAX_REPLY_BYTES} bytes")
        try:
            reply = json.loads(data)
        except ValueError:
            raise ToruaError("unavailable", f"the LLM endpoint {self.url}{path} answered no JSON: {data[:200]!r}") from None
        if not isinstance(reply, dict):
            raise ToruaError("unavailable", f"the LLM endpoint {self.url}{path} answered {type(reply).__name__}, not an object")
        return reply

    def chat(self, model: str, system: str, user: str, max_tokens: int = 1024) -> str:
        """The model's answer to one exchange, at temperature 0."""
        reply = self._post("/chat/completions", {
            "model": model, "temperature": 0, "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        })
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ToruaError("unavailable", f"the LLM endpoint {self.url} answered no choices[0].message.content: {str(reply)[:300]}") from None
        return str(content or "")

    def embeddings(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        reply = self._post("/embeddings", {"model": model, "input": list(texts)})
        try:
            rows = sorted(reply["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ToruaError("unavailable", f"the embeddings endpoint {self.url} answered no data[].embedding: {str(reply)[:300]}") from None
        if len(vectors) != len(texts):
            raise ToruaError("unavailable", f"the embeddings endpoint {self.url} answered {len(vectors)} vectors for {len(texts)} texts")
        return vectors
