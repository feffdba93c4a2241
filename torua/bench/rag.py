"""`torua bench --rag`: GraphRAG's figures beside the pipeline's own components run
in one process (`torua.bench.rag_anchor`), in one run, on the documents and
questions of the frozen multi-hop set (`torua.rag.eval_set`).

On `torua up --workers 2` (3 nodes, 16 shards, one copy), over REST as a user calls it:

- ingestion documents/s: every document sent at once (one job), timed until the job
  is done and a hybrid query answers (every shard's index has caught up), against the anchor: chunk + embed + extract + resolve in one process,
  nothing written (target: >= 0.7x, the cluster costs at most 30%);
- deleting a document against ingesting it: `--rag-deletes` documents, each deleted
  (`DELETE`, timed) and then sent again alone and waited for (timed); mean seconds
  of each (target: delete / ingest <= 1);
- a community run (`POST /rag/{g}/communities` until its job is done), beside the
  ingestion's time;
- query p50 and p99 per mode (naive, local, global, hybrid) at each concurrency
  (default 1 and 16), the modes taking turns in four rounds, and hybrid p50 /
  naive p50 (target: <= 3x).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from torua.bench.load import measure_in_turns
from torua.bench.report import meets, ratio as _ratio
from torua.bench.procs import BenchError, Stack, in_own_stack, run_async

CORPUS = "bench-rag"
NODES, SHARDS = 3, 16
MODES = ("naive", "local", "global", "hybrid")
SETTINGS = {"chunk_tokens": 200, "overlap_tokens": 40}  # the defaults
JOB_S = 3600.0
# How often the bench asks whether the job is done: each ask is a call through the
# gateway to a worker and two reads on a node (`torua rag ingest` asks every 0.5 s);
# every 20 ms, as before, cost the cluster ~3% of its CPU while it ingested, and
# 0.1 s adds at most 1% to the ~10 s it times.
POLL_S = 0.1
# (figure, which way is good, target)
TARGETS = {
    "ingest": ("higher", 0.7),  # Torua documents/s / the anchor's
    "delete": ("lower", 1.0),  # delete seconds / ingest seconds, per document
    "hybrid": ("lower", 3.0),  # hybrid p50 / naive p50, at each concurrency
}


def add_rag_bench_arguments(p) -> None:
    p.add_argument("--rag", action="store_true",
                   help="instead: GraphRAG ingestion, deletion, communities and query figures beside the pipeline run in one process")
    p.add_argument("--rag-documents", type=int, default=0, help="documents of the frozen set to ingest (--rag) [default 0: all 450]")
    p.add_argument("--rag-copies", type=int, default=1,
                   help="ingest the documents this many times, each copy under ids of its own (--rag; the anchor too): a larger corpus, "
                        "where the shards' index builds at the end weigh less [default 1, at most 20]")
    p.add_argument("--rag-workers", type=int, default=2, help="torua workers (--rag) [default 2]")
    p.add_argument("--rag-queries", type=int, default=100, help="queries per mode and concurrency (--rag) [default 100]")
    p.add_argument("--rag-deletes", type=int, default=20, help="documents deleted and ingested again, one at a time (--rag) [default 20]")
    p.add_argument("--rag-concurrency", default="1,16", help="comma-separated concurrencies of the query figures (--rag) [default 1,16]")


def copies_of(documents: list[dict], copies: int) -> list[dict]:
    """`documents` `copies` times, the first as they are, each further copy's ids
    ending in ``~<copy>``: the same text, new documents (new chunk vertices; their
    entities and relations gain support).

    >>> [d["id"] for d in copies_of([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}], 2)]
    ['a', 'b', 'a~1', 'b~1']
    """
    return [{**d, "id": d["id"] if copy == 0 else f"{d['id']}~{copy}"} for copy in range(copies) for d in documents]


def met(figure: str, ratio: float | None) -> bool | None:
    """Whether `ratio` meets `figure`'s target (None: no ratio).

    >>> met("ingest", 0.75), met("ingest", 0.5), met("delete", 0.4), met("hybrid", 3.2), met("hybrid", None)
    (True, False, True, False, None)
    """
    return meets(TARGETS[figure], ratio)



class RagSide:
    """Torua's side, over REST."""

    def __init__(self, http: str, api_key: str, say: Any) -> None:
        self.http, self.say = http, say
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.session: aiohttp.ClientSession | None = None

    async def call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,), ndjson: bytes | None = None) -> Any:
        assert self.session is not None
        kwargs: dict[str, Any] = {"data": ndjson, "headers": {"Content-Type": "application/x-ndjson"}} if ndjson is not None else {"json": body}
        async with self.session.request(method, self.http + path, **kwargs) as resp:
            data = await resp.json(content_type=None) if resp.status != 204 else None
            if resp.status not in expect:
                raise BenchError(f"{method} {path}: HTTP {resp.status} {str(data)[:300]}")
            return data

    async def create(self, timeout: float = 120.0) -> None:
        """Make the corpus, once a worker answers (it loads its models after `torua up` is ready)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.call("PUT", f"/rag/{CORPUS}", SETTINGS, expect=(200, 201))
                return
            except BenchError as exc:
                if "HTTP 503" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.5)

    async def send(self, documents: list[dict]) -> list[str]:
        """Queue documents in requests that fit (as `torua rag ingest` sends them); the jobs."""
        from torua.cli.rag import in_requests

        jobs = []
        for part in in_requests(iter(documents)):
            lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in part).encode()
            jobs.append((await self.call("POST", f"/rag/{CORPUS}/documents", ndjson=lines, expect=(202,)))["job"])
        return jobs

    async def wait(self, jobs: list[str], timeout: float = JOB_S) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            states = [await self.call("GET", f"/rag/{CORPUS}/jobs/{job}") for job in jobs]
            if all(s["state"] == "done" for s in states):
                return {k: sum(s[k] for s in states) for k in ("documents", "done", "failed")}
            if time.monotonic() > deadline:
                raise BenchError(f"jobs not done within {timeout:g}s: {states}")
            await asyncio.sleep(POLL_S)

    async def searchable(self, timeout: float = 900.0) -> None:
        """A hybrid query answers (after a bulk ingest each shard's index catches up first:
        hybrid reads the vector and the full-text index)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.session is not None
            async with self.session.post(f"{self.http}/rag/{CORPUS}/query", json={"question": "ready?", "k": 1, "mode": "hybrid"}) as resp:
                if resp.status == 200:
                    return
                if resp.status not in (503, 504) or time.monotonic() > deadline:
                    raise BenchError(f"the corpus does not answer queries: HTTP {resp.status} {await resp.text()}")
            await asyncio.sleep(POLL_S)

    async def run(self, documents: list[dict], questions: list[str], deletes: int, queries: int, concurrencies: list[int]) -> dict:
        async with aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(total=600)) as self.session:
            await self.create()
            self.say(f"torua bench --rag: ingesting {len(documents)} documents")
            t0 = time.perf_counter()
            counts = await self.wait(await self.send(documents))
            done_s = time.perf_counter() - t0
            if counts["failed"] or counts["done"] != len(documents):
                raise BenchError(f"ingestion: {counts}")
            await self.searchable()
            seconds = time.perf_counter() - t0
            out: dict[str, Any] = {"ingest": {
                "documents": len(documents), "seconds": round(seconds, 3), "documents_per_s": round(len(documents) / seconds, 2),
                "job_done_s": round(done_s, 3),
            }}
            self.say(f"  ingest: {len(documents)} documents in {seconds:.1f} s ({len(documents) / seconds:.2f}/s; the job done after {done_s:.1f} s, "
                     "then the indexes caught up)")
            out["delete"] = await self.delete_and_ingest(documents[:deletes])
            self.say("torua bench --rag: a community run")
            t0 = time.perf_counter()
            job = (await self.call("POST", f"/rag/{CORPUS}/communities", expect=(202,)))["job"]
            counts = await self.wait([job])
            if counts["failed"]:
                raise BenchError("the community run failed")
            info = await self.call("GET", f"/rag/{CORPUS}")
            out["communities"] = {"seconds": round(time.perf_counter() - t0, 3), **info["communities"]}
            out["counts"] = info["counts"]
            self.say(f"  communities: {info['communities']['communities']} over {info['communities']['relations']} relations in {out['communities']['seconds']:.1f} s")
            out["queries"] = await self.query_figures(questions, queries, concurrencies)
            return out

    async def delete_and_ingest(self, documents: list[dict]) -> dict:
        """Each document deleted (timed), then sent alone and waited for (timed)."""
        deleted, ingested = [], []
        for d in documents:
            t0 = time.perf_counter()
            await self.call("DELETE", f"/rag/{CORPUS}/documents/{d['id']}", expect=(204,))
            deleted.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            counts = await self.wait(await self.send([d]))
            ingested.append(time.perf_counter() - t0)
            if counts["done"] != 1:
                raise BenchError(f"ingesting {d['id']} again: {counts}")
        mean_delete, mean_ingest = sum(deleted) / max(len(deleted), 1), sum(ingested) / max(len(ingested), 1)
        self.say(f"  delete vs ingest of one document: {1000 * mean_delete:.0f} ms vs {1000 * mean_ingest:.0f} ms (mean of {len(documents)})")
        return {"documents": len(documents), "delete_s": round(mean_delete, 4), "ingest_s": round(mean_ingest, 4)}

    async def query_figures(self, questions: list[str], n: int, concurrencies: list[int]) -> list[dict]:
        """Each mode's p50 and p99 at each concurrency, the modes taking turns
        (`measure_in_turns`): hybrid / naive compares queries asked side by side, not
        minutes apart (one run of this bench read 2.2x and the next 4.3x when naive
        was measured first and hybrid last)."""
        rows = []
        for c in concurrencies:
            def asker(mode: str) -> Callable[[int], Awaitable[None]]:
                async def ask(i: int) -> None:
                    await self.call("POST", f"/rag/{CORPUS}/query", {"question": questions[i % len(questions)], "mode": mode, "k": 10})
                return ask

            results = await measure_in_turns({mode: asker(mode) for mode in MODES}, n, c, min(10, n))
            for mode in MODES:
                r = results[mode]
                rows.append({"mode": mode, "concurrency": c, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "throughput": r.throughput, "errors": r.errors,
                             "first_error": r.first_error})
                self.say(f"  {mode:<7} c={c:<3} p50 {r.p50_ms:8.1f} ms  p99 {r.p99_ms:8.1f} ms  {r.throughput:7.1f}/s" + (f"  {r.errors} ERRORS" if r.errors else ""))
        rows.sort(key=lambda row: (MODES.index(row["mode"]), row["concurrency"]))
        return rows


def figures(torua: dict, anchor: dict, concurrencies: list[int]) -> list[dict]:
    rows = []

    def row(figure: str, label: str, t: float, a: float, unit: str, ratio: float | None) -> None:
        rows.append({"figure": figure, "label": label, "torua": t, "anchor": a, "unit": unit, "ratio": ratio, "met": met(figure, ratio)})

    row("ingest", "ingestion documents/s (anchor: the pipeline in one process)", torua["ingest"]["documents_per_s"], anchor["documents_per_s"],
        "docs/s", _ratio(torua["ingest"]["documents_per_s"], anchor["documents_per_s"]))
    d = torua["delete"]
    row("delete", "delete one document (anchor: ingest it again), mean", 1000 * d["delete_s"], 1000 * d["ingest_s"], "ms", _ratio(d["delete_s"], d["ingest_s"]))
    p50 = {(q["mode"], q["concurrency"]): q["p50_ms"] for q in torua["queries"]}
    for c in concurrencies:
        row("hybrid", f"hybrid query p50 at c={c} (anchor: naive's)", p50[("hybrid", c)], p50[("naive", c)], "ms", _ratio(p50[("hybrid", c)], p50[("naive", c)]))
    return rows


def report(rows: list[dict], torua: dict, header: str) -> str:
    lines = [header, "", f"{'figure':<62} {'Torua':>10} {'anchor':>10} {'unit':>7} {'ratio':>7} {'target':>8}  met"]
    for r in rows:
        way, target = TARGETS[r["figure"]]
        mark = {True: "yes", False: "NO", None: "-"}[r["met"]]
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        lines.append(f"{r['label']:<62} {r['torua']:>10.2f} {r['anchor']:>10.2f} {r['unit']:>7} {ratio:>7} {('>=' if way == 'higher' else '<=') + str(target):>8}  {mark}")
    lines.append("")
    lines.append(f"{'query mode':<10} {'c':>3} {'p50 ms':>9} {'p99 ms':>9} {'per s':>8} {'p50 / naive p50':>16}")
    p50 = {(q["mode"], q["concurrency"]): q["p50_ms"] for q in torua["queries"]}
    for q in torua["queries"]:
        lines.append(f"{q['mode']:<10} {q['concurrency']:>3} {q['p50_ms']:>9.1f} {q['p99_ms']:>9.1f} {q['throughput']:>8.1f} "
                     f"{_ratio(q['p50_ms'], p50[('naive', q['concurrency'])]) or 0:>16.2f}")
    m = torua["communities"]
    lines.append("")
    lines.append(f"community run: {m['communities']} communities of {m['entities']} entities over {m['relations']} relations in {m['seconds']:.1f} s, "
                 f"{_ratio(m['seconds'], torua['ingest']['seconds'])}x the ingestion's time")
    return "\n".join(lines)



def run_rag_bench(args) -> int:
    from torua.rag import eval_set

    try:
        concurrencies = sorted({int(c) for c in str(args.rag_concurrency).split(",") if c.strip()})
    except ValueError:
        concurrencies = []
    if not concurrencies or min(concurrencies) < 1 or args.rag_queries < 1 or args.rag_deletes < 0 or args.rag_documents < 0 or not 1 <= args.rag_workers <= 64 \
            or not 1 <= args.rag_copies <= 20:
        print("torua bench --rag: --rag-concurrency needs positive integers, --rag-queries >= 1, --rag-workers 1..64, --rag-copies 1..20, the rest >= 0",
              file=sys.stderr)
        return 2
    if args.nats_url is not None or args.http is not None:
        print("torua bench --rag starts its own cluster (no --nats-url/--http)", file=sys.stderr)
        return 2
    frozen = eval_set.load()
    documents = copies_of(frozen["documents"][: args.rag_documents or None], args.rag_copies)
    questions = [q["question"] for q in frozen["questions"]]

    def run(stack: Stack, workdir: Path) -> int:
        def say(text: str) -> None:
            print(text, flush=True)

        started = time.perf_counter()
        (workdir / "rag-documents.ndjson").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents))
        threads = psutil.cpu_count() or 1
        (workdir / "rag-anchor-input.json").write_text(json.dumps({"threads": threads, **SETTINGS}))
        say(f"torua bench --rag: the anchor (the pipeline in one process, embedder on {threads} threads), on an idle machine")
        stack.run_anchor("rag-anchor", "torua.bench.rag_anchor", workdir)
        anchor = json.loads((workdir / "rag-anchor-result.json").read_text())
        nats_url = stack.start_nats("nats")
        say(f"torua bench: starting torua up ({NODES} nodes, {SHARDS} shards, 1 copy, {args.rag_workers} workers, commit={args.commit})")
        http = stack.start_torua(nats_url, args.commit, nodes=NODES, shards=SHARDS, replicas=1, workers=args.rag_workers)
        say(f"torua bench: Torua ready at {http}")
        torua = run_async(RagSide(http, stack.api_key, say).run(documents, questions, min(args.rag_deletes, len(documents)), args.rag_queries, concurrencies))
        rows = figures(torua, anchor, concurrencies)
        copies = f" ({args.rag_copies} copies of each)" if args.rag_copies > 1 else ""
        header = (f"torua bench --rag: {len(documents)} documents of the frozen multi-hop set{copies} ({anchor['chunks']} chunks), {len(questions)} questions; "
                  f"{NODES} nodes, {SHARDS} shards, 1 copy, {args.rag_workers} workers (1 embedder thread each), commit={args.commit}; "
                  f"anchor: the pipeline in one process, embedder on {anchor['threads']} threads; {psutil.cpu_count()} CPUs; "
                  f"{time.perf_counter() - started:.0f} s")
        say("\n" + report(rows, torua, header) + "\n")
        doc = {"settings": {"documents": len(documents), "copies": args.rag_copies, "workers": args.rag_workers, "queries": args.rag_queries, "deletes": args.rag_deletes,
                            "concurrency": concurrencies, "nodes": NODES, "shards": SHARDS, "commit": args.commit, **SETTINGS},
               "figures": rows, "torua": torua, "anchor": anchor, "workdir": str(workdir), "nats_url": nats_url}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        say(f"torua bench: results written to {args.json}")
        errors = sum(q["errors"] for q in torua["queries"])
        if errors:
            print(f"torua bench: {errors} queries failed", file=sys.stderr)
            return 1
        return 0

    return in_own_stack("torua-bench-rag-", getattr(args, "insecure", False), run)
