"""An outside anchor for `torua rag eval`: LightRAG (`lightrag-hku==1.5.7`, the extra
`torua[lightrag]`) run offline in one process on the frozen multi-hop set
(`torua.rag.eval_set`), scored exactly as `torua rag eval` scores Torua:

    python -m torua.bench.lightrag_anchor [--half test|dev|all] [--limit N] [--json OUT]

What LightRAG is given, so that retrieval is compared and not extraction:

- Embeddings: Torua's embedder (`OnnxEmbedder`, all-MiniLM-L6-v2 int8, 384-d,
  256 tokens read), for chunks, entities, relations and queries.
- Tokenizer: one token per whitespace-separated word (a vocabulary grown as words
  come), so that LightRAG downloads no tiktoken encoding. It sizes LightRAG's chunks
  (`CHUNK_WORDS` words, `OVERLAP_WORDS` of overlap: about Torua's 200 and 40 MiniLM
  tokens; every document of the set is shorter than one chunk) and its context budgets.
- The LLM is faked, deterministically, by reading the prompt LightRAG sends
  (recognised by stable phrases of its templates, `MARKERS`, checked against
  `lightrag.prompt.PROMPTS` before anything runs):
  - entity extraction: the chunk's text is cut out of the prompt and run through
    Torua's spaCy extractor (`SpacyExtractor`); the answer is its mentions as entity
    rows (name, spaCy type, description: the sentences the name occurs in) and its
    triples (keywords: the predicate) and sentence co-occurrences (keywords:
    "co-occurs", as in `torua.rag.pipeline`) as relation rows, in the record format of
    `PROMPTS["entity_extraction_system_prompt"]` (`<|#|>` between fields,
    `<|COMPLETE|>` at the end). Gleaning is off (`entity_extract_max_gleaning=0`);
    a continue prompt would get the completion delimiter alone;
  - query keywords: the question through the same spaCy model; low level: the names
    of its mentions (the types Torua keeps); high level: its noun chunks without
    determiners and pronouns, but for those inside a name (its content words when
    none is left), as the JSON `{"high_level_keywords": [...], "low_level_keywords": [...]}`;
  - summaries of merged descriptions: the descriptions it is given, joined, cut at
    `SUMMARY_CHARS` (about what the embedder reads of an entity);
  - anything else (never asked for here: retrieval uses `aquery_data`, which
    generates no answer): the first 200 characters of the prompt.

LightRAG keeps its defaults otherwise (as it reads them: its environment variables
and a `.env` of the working directory may change those not set here): local
storages (JSON, NanoVectorDB, NetworkX) in a temporary directory removed at the
end, `top_k` 40 and `chunk_top_k` 20 (`TOP_K`, `CHUNK_TOP_K`, set explicitly: at
least the 10 documents scored), no reranker.

Ingestion (one `ainsert` of every document, with the document ids as ids and as
file paths, "/" made "__": `file_path_of`) is timed, the models loaded and warmed
up before; the time spent in the fake LLM and the embedder is reported apart. Then
each question of the half is asked in each mode (`MODES`) with `aquery_data`, one
at a time, timed (p50 as `torua rag eval` takes it). A question's chunks, in
LightRAG's order, become their documents (each at its first chunk's place:
`torua.rag.evaluation`) and are scored against its two supporting documents. The
fake LLM's work (spaCy) is inside both timings, as extraction is inside Torua's.

This is a bench anchor, not product code: LightRAG is imported only inside the
functions that run it, so the pure parts are tested without it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torua.rag import eval_set, evaluation
from torua.rag.extraction import ENTITY_TYPES, Extraction
from torua.rag.pipeline import COOCCURS

LIGHTRAG_VERSION = "1.5.7"
MODES = ("naive", "local", "global", "hybrid", "mix")
TOP_K = 40  # LightRAG's default: entities (local) and relations (global) searched
CHUNK_TOP_K = 20  # LightRAG's default: chunks kept for the context
CHUNK_WORDS = 150  # about Torua's 200 MiniLM tokens a chunk
OVERLAP_WORDS = 30  # about its 40 of overlap
THREADS = 2  # the embedder's
SUMMARY_CHARS = 1000
OTHER_CHARS = 200
INSTALL = "pip install 'torua[lightrag]'"

TUPLE = "<|#|>"  # PROMPTS["DEFAULT_TUPLE_DELIMITER"]
COMPLETE = "<|COMPLETE|>"  # PROMPTS["DEFAULT_COMPLETION_DELIMITER"]
INPUT_OPEN, INPUT_CLOSE = "---Input Text---\n```\n", "\n```\n\n---Output---"
QUERY_OPEN, QUERY_CLOSE = "User Query: ", "\n\n---Output---"
LIST_OPEN, LIST_CLOSE = "Description List:\n\n```\n", "\n```\n\n---Output---"
# what each kind of prompt says (and the PROMPTS template it comes from), checked first
MARKERS = {
    "keywords": ("keywords_extraction", "You are an expert keyword extractor"),
    "continue": ("entity_continue_extraction_user_prompt", "Based on the last extraction task, identify and extract any missed"),
    "extract": ("entity_extraction_user_prompt", "Extract entities and relationships from the `---Input Text---` section below."),
    "summary": ("summarize_entity_descriptions", "synthesize a list of descriptions of a given entity or relation"),
}
# the slots the fake LLM reads its input from, as they stand in the templates
SLOTS = {
    "entity_extraction_user_prompt": INPUT_OPEN + "{input_text}" + INPUT_CLOSE,
    "keywords_extraction": QUERY_OPEN + "{query}" + QUERY_CLOSE,
    "summarize_entity_descriptions": LIST_OPEN + "{description_list}" + LIST_CLOSE,
}
DROPPED_POS = frozenset({"DET", "PRON", "PUNCT", "SPACE"})
CONTENT_POS = frozenset({"NOUN", "PROPN", "ADJ", "VERB", "NUM"})


class WhitespaceTokens:
    """LightRAG's tokenizer here: one token per whitespace-separated word, its id from
    a vocabulary grown as words come. LightRAG counts tokens in threads and deep-copies
    its configuration: new words are added under a lock, and a copy is this object."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._words: list[str] = []
        self._lock = threading.Lock()

    def encode(self, content: str) -> list[int]:
        words = content.split()
        missing = [w for w in words if w not in self._ids]
        if missing:
            with self._lock:
                for word in missing:
                    if word not in self._ids:
                        self._words.append(word)
                        self._ids[word] = len(self._words) - 1
        return [self._ids[w] for w in words]

    def decode(self, tokens: Sequence[int]) -> str:
        return " ".join(self._words[t] for t in tokens)

    def __deepcopy__(self, memo: dict) -> "WhitespaceTokens":
        return self


def check_prompts(prompts: Mapping[str, Any]) -> None:
    """`ValueError` unless LightRAG's templates still hold what the fake LLM reads."""
    wanted = [(key, marker) for key, marker in MARKERS.values()] + list(SLOTS.items())
    wanted += [("DEFAULT_TUPLE_DELIMITER", TUPLE), ("DEFAULT_COMPLETION_DELIMITER", COMPLETE)]
    missing = [key for key, text in wanted if text not in str(prompts.get(key, ""))]
    if missing:
        raise ValueError(f"LightRAG's prompts changed ({', '.join(missing)}): this anchor reads lightrag-hku=={LIGHTRAG_VERSION}")


def prompt_kind(prompt: str) -> str:
    """Which prompt LightRAG sent: "keywords", "continue", "extract", "summary" or "other"."""
    return next((kind for kind, (_, marker) in MARKERS.items() if marker in prompt), "other")


def between(text: str, start: str, end: str) -> str:
    """What `text` holds after the first `start` and before the last `end` ("" if either is missing)."""
    first, last = text.find(start), text.rfind(end)
    return text[first + len(start) : last] if first >= 0 and last >= first + len(start) else ""


def field_text(text: str) -> str:
    """`text` as one field of a record: on one line, without the delimiters."""
    return " ".join(text.replace(TUPLE, " ").replace(COMPLETE, " ").split())


def extraction_records(text: str, found: Extraction, sentences: Sequence[tuple[int, int]]) -> str:
    """The answer of an LLM that extracted `found` from `text` (its sentences' spans):
    an entity row per distinct name, then a relation row per distinct (source, target,
    keywords) of the triples and co-occurrences, then the completion delimiter."""

    def sentence_at(offset: int) -> str:
        return next((field_text(text[s:e]) for s, e in sentences if s <= offset < e), field_text(text))

    names = [field_text(m.text) for m in found.mentions]
    entities: dict[str, tuple[str, list[str]]] = {}
    for mention, name, (start, _) in zip(found.mentions, names, found.offsets):
        if name:
            said = entities.setdefault(name, (field_text(mention.type), []))[1]
            if (sentence := sentence_at(start)) not in said:
                said.append(sentence)
    relations: dict[tuple[str, str, str], str] = {}
    pairs = [(t.subject, t.object, t.predicate) for t in found.triples] + [(a, b, COOCCURS) for a, b in found.cooccurrences]
    for a, b, predicate in pairs:
        if names[a] and names[b] and names[a] != names[b]:
            relations.setdefault((names[a], names[b], field_text(predicate)), sentence_at(found.offsets[a][0]))
    rows = [TUPLE.join(("entity", name, kind, " ".join(said))) for name, (kind, said) in entities.items()]
    rows += [TUPLE.join(("relation", src, dst, keywords, said)) for (src, dst, keywords), said in relations.items()]
    return "\n".join(rows + [COMPLETE])


def keywords_json(names: Sequence[str], phrases: Sequence[str], words: Sequence[str]) -> str:
    """The keyword-extraction answer: `names` (of entities) as low-level keywords,
    `phrases` that are not names nor words of one as high-level ones, or `words`
    (likewise) when no phrase is left."""
    low = list(dict.fromkeys(n for n in names if n))

    def free(keys: Sequence[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k and not any(f" {k} " in f" {n} " for n in low)]

    return json.dumps({"high_level_keywords": free(phrases) or free(words), "low_level_keywords": low})


def phrase(tokens: Sequence[tuple[str, str]]) -> str:
    """A noun chunk's (text, part of speech) tokens as a keyword: without determiners and pronouns."""
    return " ".join(text for text, pos in tokens if pos not in DROPPED_POS)


def summary_of(prompt: str) -> str:
    """The summary answer: the descriptions listed in the prompt (one JSON object a
    line), distinct, joined and cut at `SUMMARY_CHARS`."""
    said = []
    for line in between(prompt, LIST_OPEN, LIST_CLOSE).splitlines():
        try:
            description = json.loads(line).get("Description", "")
        except (ValueError, AttributeError):
            description = line
        if description and description not in said:
            said.append(description)
    return " ".join(said)[:SUMMARY_CHARS] or prompt[:OTHER_CHARS]


def file_path_of(document_id: str) -> str:
    """The file path a document is inserted with: LightRAG keeps a path's basename
    and takes two documents of one basename for one, so no "/" (geo/ABW -> geo__ABW)."""
    return document_id.replace("/", "__")


def chunk_documents(chunks: Sequence[Mapping[str, Any]], document_of: Mapping[str, str]) -> list[str]:
    """The document of each chunk LightRAG returned, in its order: `document_of` maps
    chunk ids, and file paths, to document ids; by chunk id where known, else by the
    chunk's file path."""
    out = []
    for c in chunks:
        path = str(c.get("file_path", ""))
        out.append(document_of.get(str(c.get("chunk_id", ""))) or document_of.get(path) or path)
    return out


def p50_ms(seconds: Sequence[float]) -> float:
    """The median as `torua rag eval` takes it."""
    return 1000 * sorted(seconds)[len(seconds) // 2] if seconds else 0.0


def table(results: Mapping[str, Mapping[str, float]], questions: int, half: str) -> list[str]:
    """The lines `torua rag eval` prints, for LightRAG's modes."""
    lines = [
        f"lightrag {LIGHTRAG_VERSION}: {questions} questions ({half} half of {eval_set.FROZEN.name}); documents ranked by their first chunk, k = 10",
        f"{'mode':<8} {'both@5':>7} {'both@10':>8} {'recall@10':>10} {'MRR':>6} {'p50 ms':>8}",
    ]
    for m, r in results.items():
        lines.append(f"{m:<8} {r['both@5']:>7.3f} {r['both@10']:>8.3f} {r['recall@10']:>10.3f} {r['rr']:>6.3f} {r['p50_ms']:>8.1f}")
    return lines


class FakeLLM:
    """The deterministic stand-in for LightRAG's LLM (see the module's docstring),
    with LightRAG's `llm_model_func` signature."""

    def __init__(self, extractor: Any, nlp: Any) -> None:
        self.extractor, self.nlp = extractor, nlp
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    async def __call__(self, prompt: str, system_prompt: str | None = None, history_messages: list | None = None, **kwargs: Any) -> str:
        kind = prompt_kind(prompt)
        started = time.perf_counter()
        try:
            return self.answer(kind, prompt)
        finally:
            self.calls[kind] = self.calls.get(kind, 0) + 1
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - started

    def answer(self, kind: str, prompt: str) -> str:
        if kind == "extract":
            text = between(prompt, INPUT_OPEN, INPUT_CLOSE)
            return extraction_records(text, self.extractor.extract([text])[0], self.extractor.sentence_spans(text))
        if kind == "continue":
            return COMPLETE
        if kind == "keywords":
            return self.keywords(between(prompt, QUERY_OPEN, QUERY_CLOSE))
        if kind == "summary":
            return summary_of(prompt)
        return prompt[:OTHER_CHARS]

    def keywords(self, question: str) -> str:
        doc = self.nlp(question)
        names = [e.text for e in doc.ents if e.label_ in ENTITY_TYPES]
        phrases = [phrase([(t.text, t.pos_) for t in chunk]) for chunk in doc.noun_chunks]
        words = [t.text for t in doc if t.pos_ in CONTENT_POS and not t.is_stop]
        return keywords_json(names, phrases, words)

    def __deepcopy__(self, memo: dict) -> "FakeLLM":
        return self  # LightRAG deep-copies its configuration; the models are shared


def embedding_function(embedder: Any, tally: dict[str, float]) -> Callable[..., Awaitable[Any]]:
    """LightRAG's embedding function: `embedder` on the texts, counted in `tally`
    ("texts", "seconds")."""

    async def embed(texts: list[str], **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return embedder.embed(list(texts))
        finally:
            tally["texts"] = tally.get("texts", 0) + len(texts)
            tally["seconds"] = tally.get("seconds", 0.0) + time.perf_counter() - started

    return embed


async def build(workdir: str, embedder: Any, llm: FakeLLM, tally: dict[str, float]) -> Any:
    """LightRAG with Torua's embedder, the whitespace tokenizer and the fake LLM, its storages initialised."""
    from lightrag import LightRAG
    from lightrag.utils import EmbeddingFunc, Tokenizer

    rag = LightRAG(
        working_dir=workdir,
        workspace="",
        embedding_func=EmbeddingFunc(embedding_dim=embedder.dim, max_token_size=embedder.max_tokens, func=embedding_function(embedder, tally), model_name=embedder.name),
        llm_model_func=llm,
        llm_model_name="fake-spacy",
        tokenizer=Tokenizer("whitespace", WhitespaceTokens()),
        chunk_token_size=CHUNK_WORDS,
        chunk_overlap_token_size=OVERLAP_WORDS,
        entity_extract_max_gleaning=0,
        top_k=TOP_K,
        chunk_top_k=CHUNK_TOP_K,
    )
    await rag.initialize_storages()
    return rag


async def ingest(rag: Any, documents: Sequence[Mapping[str, str]]) -> tuple[dict, dict[str, str]]:
    """Insert every document (timed); its figures and each chunk's document."""
    ids = [d["id"] for d in documents]
    paths = [file_path_of(i) for i in ids]
    started = time.perf_counter()
    await rag.ainsert([d["text"] for d in documents], ids=ids, file_paths=paths)
    seconds = time.perf_counter() - started
    statuses = await rag.doc_status.get_by_ids(ids)
    by_chunk = {c: i for i, s in zip(ids, statuses) for c in ((s or {}).get("chunks_list") or [])}
    processed = sum(1 for s in statuses if s and str(s.get("status", "")).lower().endswith("processed"))
    graph = rag.chunk_entity_relation_graph
    figures = {
        "documents": len(ids), "processed": processed, "chunks": len(by_chunk),
        "entities": len(await graph.get_all_nodes()), "relations": len(await graph.get_all_edges()),
        "seconds": round(seconds, 3), "documents_per_s": round(len(ids) / seconds, 2),
    }
    return figures, {**dict(zip(paths, ids)), **by_chunk}


async def ask(rag: Any, questions: Sequence[Mapping[str, Any]], modes: Sequence[str], document_of: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Each question in each mode, one at a time: the means of the scores, p50 ms and
    how many questions got no chunk at all."""
    from lightrag import QueryParam

    rows: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    empty = dict.fromkeys(modes, 0)
    for q in questions:
        for mode in modes:
            param = QueryParam(mode=mode, top_k=TOP_K, chunk_top_k=CHUNK_TOP_K, enable_rerank=False)
            started = time.perf_counter()
            answer = await rag.aquery_data(q["question"], param)
            seconds[mode].append(time.perf_counter() - started)
            chunks = ((answer.get("data") or {}).get("chunks") or []) if answer.get("status") == "success" else []
            empty[mode] += not chunks
            rows[mode].append(evaluation.question_scores(chunk_documents(chunks, document_of), q["support"]))
    return {m: {**evaluation.mean_scores(rows[m]), "p50_ms": p50_ms(seconds[m]), "no_chunks": empty[m]} for m in modes}


async def run(documents: Sequence[Mapping[str, str]], questions: Sequence[Mapping[str, Any]], modes: Sequence[str]) -> dict:
    """Load the models, build LightRAG in a temporary directory, ingest, ask; the figures."""
    import lightrag
    import spacy
    from lightrag.prompt import PROMPTS

    from torua.rag.model_files import SPACY_MODEL
    from torua.rag.onnx_embedder import OnnxEmbedder
    from torua.rag.spacy_extractor import SpacyExtractor

    check_prompts(PROMPTS)
    for name in ("lightrag", "nano-vectordb"):
        logging.getLogger(name).setLevel(logging.ERROR)
    embedder, extractor = OnnxEmbedder(threads=THREADS), SpacyExtractor()
    llm = FakeLLM(extractor, spacy.load(SPACY_MODEL))
    embedder.embed(["warm up"])
    extractor.extract(["Warm up in Paris."])
    llm.keywords("Warm up in Paris?")
    workdir = tempfile.mkdtemp(prefix="torua-lightrag-")
    try:
        embedded: dict[str, float] = {}
        rag = await build(workdir, embedder, llm, embedded)
        try:
            ingested, document_of = await ingest(rag, documents)
            # of its seconds, those of the fake LLM (spaCy) by prompt kind, and of the embedder
            ingested["llm_seconds"] = {k: round(v, 3) for k, v in llm.seconds.items()}
            ingested["embedder"] = {"texts": int(embedded.get("texts", 0)), "seconds": round(embedded.get("seconds", 0.0), 3)}
            print(f"lightrag ingest: {ingested['documents']} documents ({ingested['processed']} processed), {ingested['chunks']} chunks, "
                  f"{ingested['entities']} entities, {ingested['relations']} relations in {ingested['seconds']:.1f} s "
                  f"({ingested['documents_per_s']} documents/s)", file=sys.stderr, flush=True)
            results = await ask(rag, questions, modes, document_of)
        finally:
            await rag.finalize_storages()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "lightrag": lightrag.__version__, "ingest": ingested, "results": results, "llm_calls": llm.calls,
        "settings": {"top_k": TOP_K, "chunk_top_k": CHUNK_TOP_K, "chunk_words": CHUNK_WORDS, "overlap_words": OVERLAP_WORDS,
                     "gleaning": 0, "rerank": False, "embedder": embedder.name, "threads": THREADS},
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m torua.bench.lightrag_anchor", description="LightRAG on the frozen multi-hop set, scored as torua rag eval scores")
    parser.add_argument("--half", choices=("test", "dev", "all"), default="test", help="the questions asked (default: test)")
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N questions of the half")
    parser.add_argument("--modes", default=",".join(MODES), help=f"LightRAG modes, comma-separated (default: {','.join(MODES)})")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if importlib.util.find_spec("lightrag") is None:
        print(f"torua.bench.lightrag_anchor: lightrag is not installed: {INSTALL}", file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        print(f"torua.bench.lightrag_anchor: unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}", file=sys.stderr)
        return 2
    frozen = eval_set.load()
    questions = [q for q in frozen["questions"] if args.half == "all" or q["half"] == args.half]
    if args.limit:
        questions = questions[: args.limit]
    out = asyncio.run(run(frozen["documents"], questions, modes))
    out.update(half=args.half, questions=len(questions))
    print("\n".join(table(out["results"], len(questions), args.half)))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
