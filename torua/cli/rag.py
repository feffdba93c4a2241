"""`torua rag`: GraphRAG corpora from the shell (via `torua.Client.rag`, through the
gateways' NATS API).

`torua rag ingest CORPUS PATH...` reads files (.txt and .md: one document each,
its id the path as given, or relative to a directory given; .ndjson and .jsonl:
one `{"id"?, "text", "metadata"?}` per line) and directories (their .txt, .md,
.ndjson and .jsonl files, recursively), sends them in requests that fit a NATS
message (each a job), then waits for the workers with a progress bar on a
terminal, or one line per change otherwise. Exit code 1 when any document failed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from torua.client import Client
from torua.protocol.errors import ToruaError

TEXT_SUFFIXES = (".txt", ".md")
LINE_SUFFIXES = (".ndjson", ".jsonl")
REQUEST_BYTES = 800 << 10  # documents per request, about (a NATS message of at most 1 MiB)


def add_rag_arguments(rag, common) -> None:
    subs = rag.add_subparsers(dest="rag_command", required=True, metavar="OP")

    def sub(name: str, text: str):
        p = subs.add_parser(name, help=text, description=text)
        common(p)
        p.add_argument("corpus", help="the corpus's name (a graph)")
        return p

    p = sub("create", "create a corpus (every setting optional)")
    p.add_argument("--chunk-tokens", type=int, default=None, help="tokens per chunk [default 200]")
    p.add_argument("--overlap-tokens", type=int, default=None, help="tokens of whole sentences repeated from the chunk before [default 40]")
    p.add_argument("--extractor", default=None, help="spacy-en_core_web_sm-3.8.0 (offline, the default) or llm (--llm-model at --llm-url)")
    p.add_argument("--embedder", default=None, help="all-MiniLM-L6-v2-int8 (offline, the default) or openai (--embedding-model at --llm-url, --dim)")
    p.add_argument("--dim", type=int, default=None, help="the openai embedder's dimension")
    p.add_argument("--llm-url", default=None, help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 (the workers send TORUA_LLM_API_KEY)")
    p.add_argument("--llm-model", default=None, help="its chat model: the llm extractor, answers (query --answer), community summaries")
    p.add_argument("--embedding-model", default=None, help="its embeddings model (--embedder openai)")
    sub("info", "a corpus's settings and counts")
    p = sub("ingest", "send files, directories or NDJSON documents, and wait for the workers")
    p.add_argument("paths", nargs="+", help=".txt/.md files (one document each), .ndjson/.jsonl files (one per line), directories")
    p.add_argument("--no-wait", action="store_true", help="print the jobs and return without waiting")
    p.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto", help="a progress bar, plain lines, or auto: a bar on a terminal [default auto]")
    p.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds to wait for the workers [default 3600]")
    p = sub("query", "ask a corpus; prints the answer as JSON")
    p.add_argument("question")
    p.add_argument("--mode", choices=["naive", "local", "global", "hybrid"], default="hybrid", help="[default hybrid]")
    p.add_argument("-k", type=int, default=5, help="chunks [default 5]")
    p.add_argument("--answer", action="store_true", help="also the corpus's chat model's answer, citing chunk ids")
    p.add_argument("--metadata", type=json.loads, default=None, help='only documents whose metadata holds these, as JSON: \'{"lang": "en"}\'')
    p = sub("eval", "retrieval recall and MRR per mode on the frozen multi-hop set (torua/rag/eval_set.py), beside vector, BM25 and their fusion")
    p.add_argument("--half", choices=["dev", "test", "all"], default="test", help="which questions [default test: report; choose settings on dev]")
    p.add_argument("--ingest", action="store_true", help="create the corpus, send it the set's documents and build its communities first (idempotent)")
    p.add_argument("--limit", type=int, default=0, help="at most this many questions (0: all of the half)")
    p.add_argument("--documents", type=int, default=None,
                   help="with --ingest: only the questions' supporting documents and this many others (a quick run; scores are higher with fewer distractors) [default: all]")
    p.add_argument(
        "--modes", default="vector,bm25,fusion,local,global,hybrid",
        help="comma-separated: vector (naive), bm25, fusion (vector and BM25 by RRF, no graph), local, global (left out while the corpus has no communities), hybrid",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p = sub("communities", "find the corpus's communities again (what global queries read), and wait for the run")
    p.add_argument("--no-wait", action="store_true", help="print the job and return")
    p.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds to wait for the run [default 3600]")
    p = sub("job", "a job's progress")
    p.add_argument("job")
    p = sub("rm", "delete a document: its chunks and its share of every entity and relation")
    p.add_argument("id")


def documents(paths: list[str]) -> Iterator[dict[str, Any]]:
    """The documents of `paths`, in order; `ToruaError` for a path that is none."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + LINE_SUFFIXES):
                yield from _file(file, file.relative_to(path).as_posix())
        elif path.is_file():
            yield from _file(path, given)
        else:
            raise ToruaError("bad_request", f"{given}: no such file or directory")


def _file(path: Path, name: str) -> Iterator[dict[str, Any]]:
    if path.suffix.lower() in LINE_SUFFIXES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    raise ToruaError("bad_request", f"{path}:{number}: not JSON") from None
    else:
        yield {"id": name, "text": path.read_text(encoding="utf-8"), "metadata": {"path": name}}


def in_requests(docs: Iterator[dict[str, Any]], max_bytes: int = REQUEST_BYTES) -> Iterator[list[dict[str, Any]]]:
    """`docs` in lists of about `max_bytes` of JSON each (a larger one alone)."""
    part: list[dict[str, Any]] = []
    size = 0
    for doc in docs:
        n = len(json.dumps(doc, ensure_ascii=False).encode())
        if part and size + n > max_bytes:
            yield part
            part, size = [], 0
        part.append(doc)
        size += n
    if part:
        yield part


async def run_rag(args) -> int:
    async with Client(args.nats_url, timeout=args.timeout) as db:
        corpus = db.rag(args.corpus)
        command = args.rag_command
        if command == "create":
            given = {"chunk_tokens": args.chunk_tokens, "overlap_tokens": args.overlap_tokens, "extractor": args.extractor, "embedder": args.embedder,
                     "dim": args.dim, "llm_url": args.llm_url, "llm_model": args.llm_model, "embedding_model": args.embedding_model}
            _print(await corpus.create(**{k: v for k, v in given.items() if v is not None}))
        elif command == "info":
            _print(await corpus.info())
        elif command == "query":
            _print(await corpus.query(args.question, args.mode, args.k, answer=args.answer, metadata=args.metadata))
        elif command == "job":
            _print(await corpus.job(args.job))
        elif command == "communities":
            job = await corpus.build_communities()
            if args.no_wait:
                print(job)
                return 0
            status = await corpus.wait(job, timeout=args.wait_timeout)
            if status["failed"]:
                print(f"torua rag: the community run failed: {status.get('first_error', '')}", file=sys.stderr)
                return 1
            _print((await corpus.info())["communities"])
        elif command == "rm":
            await corpus.delete_document(args.id)
        elif command == "ingest":
            return await _ingest(corpus, args)
        elif command == "eval":
            return await _eval(db, corpus, args)
    return 0


async def _ingest(corpus, args) -> int:
    jobs = []
    for part in in_requests(documents(args.paths)):
        jobs.append(await corpus.add(part))
    if args.no_wait:
        for job in jobs:
            print(job)
        return 0
    bar = args.progress == "bar" or (args.progress == "auto" and sys.stderr.isatty())
    started, deadline, last = time.monotonic(), time.monotonic() + args.wait_timeout, ""
    while True:
        states = [await corpus.job(job) for job in jobs]
        total, done, failed = (sum(s[k] for s in states) for k in ("documents", "done", "failed"))
        rate = done / max(time.monotonic() - started, 1e-6)
        line = f"{done + failed}/{total} documents: {done} done, {failed} failed ({rate:,.1f}/s)"
        if bar:
            filled = int(30 * (done + failed) / max(total, 1))
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {line}\x1b[K", end="", file=sys.stderr, flush=True)
        elif line != last:
            print(line, file=sys.stderr, flush=True)
        last = line
        if done + failed >= total:
            break
        if time.monotonic() > deadline:
            print(file=sys.stderr)
            raise ToruaError("timeout", f"the workers did not finish within {args.wait_timeout:g}s: {line}")
        await asyncio.sleep(0.5)
    if bar:
        print(file=sys.stderr)
    for state in states:
        if state.get("first_error"):
            print(f"torua rag: job {state['job']}: {state['failed']} failed, the first: {state['first_error']}", file=sys.stderr)
    if done:  # what was ingested is queryable when this returns
        await _searchable(corpus, deadline, say=lambda: print("torua rag: the shards' indexes are catching up with the ingest; waiting until a query answers",
                                                              file=sys.stderr, flush=True))
    print(json.dumps({"jobs": jobs, "documents": total, "done": done, "failed": failed}))
    return 1 if failed else 0


def _print(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2))


EVAL_MODES = ("vector", "bm25", "fusion", "local", "global", "hybrid")


async def _eval(db: Client, corpus, args) -> int:
    from torua.rag import evaluation, eval_set, retrieval

    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(EVAL_MODES))
    if unknown:
        raise ToruaError("bad_request", f"unknown eval mode(s) {', '.join(unknown)}; known: {', '.join(EVAL_MODES)}")
    if args.documents is not None and not args.ingest:
        raise ToruaError("bad_request", "--documents picks what --ingest sends: give both")
    frozen = eval_set.load()
    questions = [q for q in frozen["questions"] if args.half == "all" or q["half"] == args.half]
    if args.limit:
        questions = questions[: args.limit]
    documents = frozen["documents"] if args.documents is None else evaluation.documents_for(frozen["documents"], questions, max(0, args.documents))
    if args.ingest:
        await corpus.create()
        job = await corpus.add(documents)
        status = await corpus.wait(job, timeout=3600)
        print(f"torua rag eval: {status['done']} documents ingested, {status['failed']} failed", file=sys.stderr)
        await corpus.wait(await corpus.build_communities(), timeout=3600)
    await _searchable(corpus)
    if "global" in modes and (await corpus.info())["communities"] is None:
        modes.remove("global")
        print(f"torua rag eval: global left out: {corpus.name} has no communities yet (torua rag communities {corpus.name})", file=sys.stderr)
    graph = db.graph(corpus.name)
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    for q in questions:
        answers: dict[str, list[str]] = {}
        chunk_doc: dict[str, str] = {}

        async def ranked(mode: str) -> list[str]:
            started = time.monotonic()
            if mode == "bm25" or mode == "fusion" and "bm25" not in answers:
                hits = await graph.text_search(q["question"], k=10, label="Chunk")
                chunk_doc.update({h["id"]: h["properties"].get("document_id", "") for h in hits})
                answers["bm25"] = [h["id"] for h in hits]
            if mode in ("vector", "fusion") and "vector" not in answers:
                chunks = (await corpus.query(q["question"], "naive", 10))["chunks"]
                chunk_doc.update({c["id"]: c["document_id"] for c in chunks})
                answers["vector"] = [c["id"] for c in chunks]
            if mode in ("local", "global", "hybrid"):
                chunks = (await corpus.query(q["question"], mode, 10))["chunks"]
                chunk_doc.update({c["id"]: c["document_id"] for c in chunks})
                answers[mode] = [c["id"] for c in chunks]
            if mode == "fusion":
                answers["fusion"] = [c for c, _ in retrieval.rrf([answers["vector"], answers["bm25"]])][:10]
            seconds[mode].append(time.monotonic() - started)
            return answers[mode]

        for mode in modes:
            chunks = await ranked(mode)
            rows[mode].append(evaluation.question_scores([chunk_doc[c] for c in chunks], q["support"]))
    results = {m: {**evaluation.mean_scores(rows[m]), "p50_ms": 1000 * sorted(seconds[m])[len(seconds[m]) // 2] if seconds[m] else 0.0} for m in modes}
    if args.json:
        print(json.dumps({"half": args.half, "questions": len(questions), "documents": len(documents) if args.ingest else None, "results": results}, indent=2))
        return 0
    subset = "" if args.documents is None else f", a corpus of {len(documents)} of its documents (--documents)"
    print(f"torua rag eval: {len(questions)} questions ({args.half} half of {eval_set.FROZEN.name}{subset}); documents ranked by their first chunk, k = 10")
    print(f"{'mode':<8} {'both@5':>7} {'both@10':>8} {'recall@10':>10} {'MRR':>6} {'p50 ms':>8}")
    for m in modes:
        r = results[m]
        print(f"{m:<8} {r['both@5']:>7.3f} {r['both@10']:>8.3f} {r['recall@10']:>10.3f} {r['rr']:>6.3f} {r['p50_ms']:>8.1f}")
    return 0


SEARCHABLE_S = 600.0


async def _searchable(corpus, deadline: float | None = None, say: Any = None) -> None:
    """Wait until a query answers (at most until `deadline`, monotonic; `say()` once
    if it does not at first): after a bulk ingest each shard's index catches up first
    (docs/design/graph.md section 1), and a query meanwhile answers 503 or times out."""
    deadline = time.monotonic() + SEARCHABLE_S if deadline is None else deadline
    while True:
        try:
            await corpus.indexed()
            return
        except ToruaError as exc:
            if exc.code not in ("timeout", "unavailable") or time.monotonic() > deadline:
                raise
            if say is not None:
                say()
                say = None
        await asyncio.sleep(0.2)
