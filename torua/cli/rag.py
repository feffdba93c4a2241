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
            given = {"chunk_tokens": args.chunk_tokens, "overlap_tokens": args.overlap_tokens}
            _print(await corpus.create(**{k: v for k, v in given.items() if v is not None}))
        elif command == "info":
            _print(await corpus.info())
        elif command == "query":
            _print(await corpus.query(args.question, args.mode, args.k))
        elif command == "job":
            _print(await corpus.job(args.job))
        elif command == "rm":
            await corpus.delete_document(args.id)
        elif command == "ingest":
            return await _ingest(corpus, args)
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
    print(json.dumps({"jobs": jobs, "documents": total, "done": done, "failed": failed}))
    return 1 if failed else 0


def _print(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2))
