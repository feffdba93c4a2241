"""`torua bench --graph`: Torua's graph figures beside one embedded Kuzu database
(`torua.bench.kuzu_anchor`, its own process) doing the same work, in one run.

On a generated graph (`torua.bench.graph_data`: by default 100k vertices and 500k
edges, plus 100k 384-d vectors) on `torua up` with 3 nodes, 16 shards and one copy:

- bulk import elements/s through `POST /graphs/{g}/import` (NDJSON requests in the
  batches `torua graph import` sends, `IMPORT_CONCURRENCY` at a time; vertices, then edges),
  against the anchor's idempotent COPY import; both import the same files a second
  time, which must change nothing (target: >= 0.3x);
- 2-hop traversal from one seed (`POST /graphs/{g}/traverse`), p50 and p99 (target:
  <= 3x the anchor's);
- vector top 10 over the vectors (`POST /graphs/{g}/search/vector`), p50 (<= 3x), and
  recall@10 of both against exact numpy search (>= 0.95);
- single-vertex GET through `torua.Client.graph(g).get_vertex` against the key-value
  GET through `torua.Client.get`, one at a time (throughput >= 0.7x);
- the RSS of each node with its shard databases open (the 16 of them spread over the
  3 nodes), beside the anchor process's.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil

from torua.bench.graph_data import exact_top_k, generate, recall, write_files
from torua.bench.load import measure_in_turns, percentile
from torua.bench.report import meets, ratio as _ratio
from torua.bench.procs import BenchError, Stack, in_own_stack, run_async
from torua.graph.kuzu_index import VECTOR_EFS

GRAPH = "bench-graph"
VECTORS = "bench-vectors"
DIM = 384
NODES, SHARDS = 3, 16
from torua.cli.graph import BATCH_BYTES as IMPORT_BYTES, BATCH_LINES as IMPORT_LINES  # the batches `torua graph import` sends

IMPORT_ATTEMPTS = 5  # tries of one import request that met 503 or 504
IMPORT_CONCURRENCY = 1
NDJSON = {"Content-Type": "application/x-ndjson"}
ANCHOR_POOL_BYTES = 2 << 30
VECTOR_READY_S = 900  # the longest wait for Torua's vector indexes after the vector import
# (figure, how Torua compares with the anchor, target); "higher": Torua / anchor >= target
TARGETS = {
    "import": ("higher", 0.3),
    "traverse_p50": ("lower", 3.0),
    "traverse_p99": ("lower", 3.0),
    "vector_p50": ("lower", 3.0),
    "get": ("higher", 0.7),
}
RECALL_TARGET = 0.95
GET_ROUNDS = 10  # the vertex and KV GETs take turns this many times


def add_graph_bench_arguments(p) -> None:
    p.add_argument("--graph", action="store_true",
                   help="instead: the graph figures (import, 2-hop traversal, vector top 10, vertex GET, node RSS) beside one embedded Kuzu database")
    p.add_argument("--graph-vertices", type=int, default=100_000, help="vertices of the generated graph (--graph) [default 100000]")
    p.add_argument("--graph-edges", type=int, default=500_000, help="edges of the generated graph (--graph) [default 500000]")
    p.add_argument("--graph-vectors", type=int, default=100_000, help=f"{DIM}-d vectors searched (--graph) [default 100000]")
    p.add_argument("--graph-queries", type=int, default=200, help="requests per traversal and vector figure (--graph) [default 200]")


def met(figure: str, ratio: float | None) -> bool | None:
    """Whether Torua / anchor = `ratio` meets `figure`'s target (None: no ratio).

    >>> met("import", 0.31), met("import", 0.2), met("traverse_p50", 2.5), met("traverse_p50", 3.5), met("get", None)
    (True, False, True, False, None)
    """
    return meets(TARGETS[figure], ratio)


def _lines_in_requests(path: Path) -> list[bytes]:
    bodies, lines, size = [], [], 0
    with open(path, "rb") as f:
        for line in f:
            if lines and (len(lines) >= IMPORT_LINES or size + len(line) > IMPORT_BYTES):
                bodies.append(b"".join(lines))
                lines, size = [], 0
            lines.append(line)
            size += len(line)
    if lines:
        bodies.append(b"".join(lines))
    return bodies


class ToruaSide:
    """Torua's side of every figure, over REST and torua.Client."""

    def __init__(self, http: str, nats_url: str, api_key: str = "") -> None:
        self.http, self.nats_url = http, nats_url
        self.api_key = api_key  # every request carries it ("": Torua runs without API keys)
        self.session: aiohttp.ClientSession | None = None

    async def _json(self, method: str, path: str, body: object = None, expect: tuple[int, ...] = (200, 201)) -> tuple[int, dict]:
        assert self.session is not None
        async with self.session.request(method, self.http + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status not in expect:
                raise BenchError(f"{method} {path}: HTTP {resp.status} {str(data)[:300]}")
            return resp.status, data

    async def import_files(self, graph: str, paths: list[Path]) -> dict:
        """Every file's lines over REST, file by file (vertices before edges), some requests at a time."""
        assert self.session is not None
        totals = {"vertices": 0, "edges": 0, "errors": 0, "requests": 0, "retried": 0, "first_error": None}
        t0 = time.perf_counter()
        for path in paths:
            bodies = _lines_in_requests(path)
            queue = list(reversed(bodies))

            async def worker() -> None:
                while queue:
                    body = queue.pop()
                    for attempt in range(IMPORT_ATTEMPTS):
                        async with self.session.post(f"{self.http}/graphs/{graph}/import", data=body, headers=NDJSON) as resp:
                            data = await resp.json(content_type=None)
                            totals["requests"] += 1
                        # an import is idempotent: a request that timed out (504), met a busy shard (503) or had lines
                        # refused (a shard that did not answer in time) is sent again; the last answer counts
                        if (resp.status in (503, 504) or (resp.status == 200 and data["errors"])) and attempt + 1 < IMPORT_ATTEMPTS:
                            totals["retried"] += 1
                            continue
                        if resp.status != 200:
                            raise BenchError(f"import into {graph}: HTTP {resp.status} {str(data)[:300]}")
                        totals["vertices"] += data["vertices"]
                        totals["edges"] += data["edges"]
                        totals["errors"] += len(data["errors"])
                        totals["first_error"] = totals["first_error"] or (data["errors"][0] if data["errors"] else None)
                        break

            await asyncio.gather(*(worker() for _ in range(IMPORT_CONCURRENCY)))
        seconds = time.perf_counter() - t0
        elements = totals["vertices"] + totals["edges"]
        return {**totals, "elements": elements, "seconds": round(seconds, 3), "elements_per_s": round(elements / seconds, 1) if seconds else 0.0}

    async def wait_ready(self, path: str, body: dict, timeout: float = 1800) -> None:
        """POST `body` to `path` until it answers 200: 503 while a shard's index catches up
        after a bulk import, 504 when the gateway's deadline passed meanwhile."""
        assert self.session is not None
        deadline = time.monotonic() + timeout
        while True:
            async with self.session.post(self.http + path, json=body) as resp:
                text = await resp.read()
                if resp.status == 200:
                    return
                if resp.status not in (503, 504) or time.monotonic() > deadline:
                    raise BenchError(f"POST {path}: HTTP {resp.status} {text[:300]!r}")
            await asyncio.sleep(0.5)

    async def counts(self, graph: str) -> dict:
        return (await self._json("GET", f"/graphs/{graph}", expect=(200,)))[1]

    async def timed(self, fn, n: int, warmup: int) -> tuple[list[float], list]:
        for i in range(warmup):
            await fn(i)
        times, answers = [], []
        for i in range(n):
            t0 = time.perf_counter()
            answers.append(await fn(i))
            times.append(time.perf_counter() - t0)
        return sorted(times), answers

    async def run(self, data, paths: tuple[Path, Path, Path], requests: int, say) -> dict:
        out: dict = {}
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300), headers=auth)
        try:
            await self._json("PUT", f"/graphs/{GRAPH}", {})
            await self._json("PUT", f"/graphs/{VECTORS}", {"vector_dim": DIM, "metric": "cosine"})
            for name in ("import", "reimport"):
                out[name] = await self.import_files(GRAPH, [paths[0], paths[1]])
                say(f"  Torua {name}: {out[name]['elements']} elements in {out[name]['seconds']} s "
                    f"({out[name]['elements_per_s']:.0f}/s, {out[name]['retried']} requests sent again after 503/504, {out[name]['errors']} errors{'; first: ' + str(out[name]['first_error']) if out[name]['errors'] else ''})")
            out["counts"] = (await self.counts(GRAPH)).get("counts", {})

            # the shards' indexes catch up after a bulk import: measure on a quiet cluster
            t0 = time.perf_counter()
            await self.wait_ready(f"/graphs/{GRAPH}/cypher", {"query": "MATCH (v:Vertex) RETURN count(*)"})
            out["import"]["indexed_after_s"] = round(time.perf_counter() - t0, 3)
            seeds = data.seeds

            async def traverse(i: int) -> list:
                body = {"from": [seeds[i % len(seeds)]], "direction": "out", "max_hops": 2, "limit": 1000}
                return (await self._json("POST", f"/graphs/{GRAPH}/traverse", body, expect=(200,)))[1]["vertices"]

            times, answers = await self.timed(traverse, requests, min(20, requests))
            out["traverse"] = {**_figure(times), "sizes": [sum(1 for v in a if v["hops"] > 0) for a in answers[: len(seeds)]]}
            say(f"  Torua 2-hop traversal: p50 {out['traverse']['p50_ms']} ms, p99 {out['traverse']['p99_ms']} ms")

            t0 = time.perf_counter()
            out["vector_import"] = await self.import_files(VECTORS, [paths[2]])
            queries = data.queries
            if len(data.vector_ids):
                try:
                    await self.wait_ready(f"/graphs/{VECTORS}/search/vector", {"vector": queries[0].tolist(), "k": 10}, VECTOR_READY_S)
                except BenchError as exc:
                    out["vector_error"] = f"not searchable {VECTOR_READY_S} s after the import: {exc}"
                    say(f"  Torua vectors: {out['vector_error']}")
            if len(data.vector_ids) and "vector_error" not in out:
                out["vector_import"]["searchable_after_s"] = round(time.perf_counter() - t0, 3)
                say(f"  Torua vectors: {out['vector_import']['vertices']} imported in {out['vector_import']['seconds']} s, "
                    f"searchable after {out['vector_import']['searchable_after_s']} s")

                async def search(i: int) -> list:
                    body = {"vector": queries[i % len(queries)].tolist(), "k": 10}
                    return [h["id"] for h in (await self._json("POST", f"/graphs/{VECTORS}/search/vector", body, expect=(200,)))[1]["hits"]]

                times, answers = await self.timed(search, len(queries), min(10, len(queries)))
                out["vector"] = {**_figure(times), "hits": answers}
                say(f"  Torua vector top 10: p50 {out['vector']['p50_ms']} ms")
        finally:
            await self.session.close()
        out["get"] = await self.gets(data, requests * 5)
        return out

    async def gets(self, data, requests: int) -> dict:
        from torua.client import Client

        value = b"v" * 100
        rng = random.Random(5)
        async with Client(self.nats_url, api_key=self.api_key) as db:
            for _ in range(100):  # one hop to the node once the client holds the map
                if db._direct():  # noqa: SLF001 (the bench reports the mode it measured)
                    break
                await asyncio.sleep(0.1)
            keys = [f"bench/graph-get/{i}" for i in range(1000)]
            for start in range(0, len(keys), 64):
                await asyncio.gather(*(db.put(k, value) for k in keys[start : start + 64]))
            graph = db.graph(GRAPH)
            ids = [rng.choice(data.vertex_ids) for _ in range(1000)]

            async def kv(i: int) -> None:
                if await db.get(keys[i % len(keys)]) is None:
                    raise BenchError("kv get: not found")

            async def vertex(i: int) -> None:
                if await graph.get_vertex(ids[i % len(ids)]) is None:
                    raise BenchError("vertex get: not found")

            # Ten turns each, taking turns: what drifts during the run (an index catching up
            # after the import, another process waking) weighs on both alike.
            results = await measure_in_turns({"kv-get": kv, "vertex-get": vertex}, requests, 1, min(100, requests), rounds=GET_ROUNDS)
            mode = "direct to the shard's node" if db._direct() else "fallback via the gateway's NATS API"  # noqa: SLF001
        merged = {name: {"requests": r.requests, "errors": r.errors, "throughput": r.throughput, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                         "first_error": r.first_error} for name, r in results.items()}
        return {"mode": mode, **merged}


def _figure(times: list[float]) -> dict:
    total = sum(times)
    return {"requests": len(times), "p50_ms": round(percentile(times, 0.5) * 1000, 3), "p99_ms": round(percentile(times, 0.99) * 1000, 3),
            "throughput": round(len(times) / total, 1) if total else 0.0}


def node_memory(stack: Stack, http_shards: list[dict]) -> list[dict]:
    """Each node process of `torua up`: its RSS and the shards (graph databases) it holds."""
    up = next(p for name, p in stack.procs if name == "torua-up")
    held: dict[str, int] = {}
    for shard in http_shards:
        for node in shard.get("copies") or [shard.get("primary")]:
            if node:
                held[node] = held.get(node, 0) + 1
    out = []
    for child in psutil.Process(up.pid).children():
        cmd = child.cmdline()
        if "node" in cmd and "--id" in cmd:
            node = cmd[cmd.index("--id") + 1]
            out.append({"node": node, "rss_bytes": child.memory_info().rss, "shards": held.get(node, 0)})
    return sorted(out, key=lambda n: n["node"])


def figures(torua: dict, anchor: dict, truth: list[list[str]]) -> list[dict]:
    """Every figure with its anchor, the ratio and whether the target is met."""
    rows = []

    def row(key: str, label: str, unit: str, t: float, a: float) -> None:
        ratio = _ratio(t, a)
        rows.append({"figure": key, "label": label, "unit": unit, "torua": t, "anchor": a, "ratio": ratio,
                     "target": f"{'>=' if TARGETS[key][0] == 'higher' else '<='} {TARGETS[key][1]:g}x", "met": met(key, ratio)})

    row("import", "bulk import (idempotent)", "elements/s", torua["import"]["elements_per_s"], anchor["import"]["elements_per_s"])
    row("traverse_p50", "2-hop traversal p50", "ms", torua["traverse"]["p50_ms"], anchor["traverse"]["p50_ms"])
    row("traverse_p99", "2-hop traversal p99", "ms", torua["traverse"]["p99_ms"], anchor["traverse"]["p99_ms"])
    if "vector" in torua and "vector" in anchor:
        row("vector_p50", "vector top 10 p50", "ms", torua["vector"]["p50_ms"], anchor["vector"]["p50_ms"])
        torua["vector"]["recall"] = round(recall(torua["vector"]["hits"], truth), 4)
        anchor["vector"]["recall"] = round(recall(anchor["vector"]["hits"], truth), 4)
    row("get", "vertex GET vs KV GET (torua.Client)", "ops/s", torua["get"]["vertex-get"]["throughput"], torua["get"]["kv-get"]["throughput"])
    return rows


def report(rows: list[dict], torua: dict, anchor: dict, nodes: list[dict], header: str) -> str:
    lines = [header, "", f"{'figure':<38}{'Torua':>14} {'anchor':>14}  {'ratio':>7}  {'target':<9} met"]
    for r in rows:
        anchor_label = "KV GET" if r["figure"] == "get" else "Kuzu"
        lines.append(f"{r['label']:<38}{r['torua']:>11.1f} {r['unit'][:2]:<2} {r['anchor']:>11.1f} {r['unit'][:2]:<2} {r['ratio'] if r['ratio'] is not None else 'n/a':>6}x  "
                     f"{r['target']:<9} {'yes' if r['met'] else 'NO' if r['met'] is not None else '?'}  ({anchor_label}; {r['unit']})")
    if "vector_error" in torua:
        lines.append(f"vector top 10: Torua {torua['vector_error']}")
    if "vector" in torua and "vector" in anchor:
        t, a = torua["vector"]["recall"], anchor["vector"]["recall"]
        lines.append(f"{'vector recall@10 vs exact numpy':<38}{t:>14.3f} {a:>14.3f}  {'':>7}  >= {RECALL_TARGET:<6} "
                     f"{'yes' if min(t, a) >= RECALL_TARGET else 'NO'}")
    ti, ai = torua["reimport"], anchor["reimport"]
    lines.append(f"{'re-import of the same files':<38}{ti['elements_per_s']:>11.1f} /s {ai['elements_per_s']:>11.1f} /s  "
                 f"{_ratio(ti['elements_per_s'], ai['elements_per_s'])}x  (no target; counts after: Torua {torua['counts']}, Kuzu {anchor['counts']})")
    if "vector_import" in torua and torua["vector_import"].get("searchable_after_s") is not None:
        lines.append(f"{'vectors imported and searchable':<38}{torua['vector_import']['searchable_after_s']:>12.1f} s {anchor['vector_import']['seconds']:>12.1f} s  "
                     f"{_ratio(torua['vector_import']['searchable_after_s'], anchor['vector_import']['seconds'])}x  (no target; seconds)")
    sizes = list(zip(torua["traverse"]["sizes"], anchor["traverse"]["sizes"]))
    lines.append(f"2-hop answers: same vertex count from {sum(t == a for t, a in sizes)} of {len(sizes)} seeds "
                 f"(mean {np.mean([t for t, _ in sizes]) if sizes else 0:.1f} vertices; at most 1000)")
    total = sum(n["rss_bytes"] for n in nodes)
    per = ", ".join(f"{n['node']} {n['rss_bytes'] / 2**20:.0f} MiB ({n['shards']} shards)" for n in nodes)
    lines.append(f"node RSS with the {sum(n['shards'] for n in nodes)} shard databases open: {per}; total {total / 2**20:.0f} MiB "
                 f"(anchor process: {anchor['rss_bytes'] / 2**20:.0f} MiB)")
    lines.append(f"torua.Client mode: {torua['get']['mode']}")
    return "\n".join(lines)


def run_graph_bench(args) -> int:
    if min(args.graph_vertices, args.graph_queries) < 1 or args.graph_edges < 0 or args.graph_vectors < 0:
        print("torua bench: --graph-vertices and --graph-queries >= 1, --graph-edges and --graph-vectors >= 0", file=sys.stderr)
        return 2
    if args.nats_url is not None or args.http is not None:
        print("torua bench --graph starts its own cluster (no --nats-url/--http)", file=sys.stderr)
        return 2

    def run(stack: Stack, workdir: Path) -> int:
        def say(text: str) -> None:
            print(text, flush=True)

        started = time.perf_counter()
        say(f"torua bench --graph: generating {args.graph_vertices} vertices, {args.graph_edges} edges, {args.graph_vectors} {DIM}-d vectors")
        data = generate(args.graph_vertices, args.graph_edges, args.graph_vectors, DIM, queries=args.graph_queries, seeds=args.graph_queries)
        paths = write_files(data, workdir)
        np.save(workdir / "queries.npy", data.queries)
        (workdir / "anchor-input.json").write_text(json.dumps({
            "seeds": data.seeds, "requests": args.graph_queries, "dim": DIM, "efs": VECTOR_EFS, "buffer_pool_bytes": ANCHOR_POOL_BYTES}))
        truth = exact_top_k(data.vectors, data.queries, data.vector_ids, 10) if args.graph_vectors else []
        nats_url = stack.start_nats("nats")
        say(f"torua bench: nats-server at {nats_url}")
        say(f"torua bench: starting torua up ({NODES} nodes, {SHARDS} shards, 1 copy, commit={args.commit})")
        http = stack.start_torua(nats_url, args.commit, nodes=NODES, shards=SHARDS, replicas=1)
        say(f"torua bench: Torua ready at {http}")
        torua = run_async(ToruaSide(http, nats_url, stack.api_key).run(data, paths, args.graph_queries, say))
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(f"{http}/shards", headers=stack.auth_headers), timeout=10) as resp:
            shards = json.loads(resp.read())["shards"]
        nodes = node_memory(stack, shards)
        say("torua bench: the Kuzu anchor (one embedded database, one process)")
        stack.run_anchor("kuzu-anchor", "torua.bench.kuzu_anchor", workdir)
        anchor = json.loads((workdir / "anchor-result.json").read_text())
        rows = figures(torua, anchor, truth)
        cpus = psutil.cpu_count()
        header = (f"torua bench --graph: {args.graph_vertices} vertices, {len(data.edges)} edges, {args.graph_vectors} {DIM}-d vectors; "
                  f"{NODES} nodes, {SHARDS} shards, 1 copy, commit={args.commit}; {args.graph_queries} requests per latency figure, one at a time; "
                  f"anchor: Kuzu {anchor['kuzu']} embedded, one process, COPY FROM pyarrow, vector index efs {VECTOR_EFS} (Torua's HNSW efs); "
                  f"{cpus} CPUs; {time.perf_counter() - started:.0f} s")
        say("\n" + report(rows, torua, anchor, nodes, header) + "\n")
        for side in (torua, anchor):
            if "vector" in side:
                side["vector"].pop("hits", None)
        doc = {"settings": {"vertices": args.graph_vertices, "edges": len(data.edges), "vectors": args.graph_vectors, "dim": DIM,
                            "queries": args.graph_queries, "nodes": NODES, "shards": SHARDS, "commit": args.commit, "efs": VECTOR_EFS},
               "figures": rows, "torua": torua, "anchor": anchor, "nodes": nodes, "workdir": str(workdir), "nats_url": nats_url}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        say(f"torua bench: results written to {args.json}")
        errors = torua["import"]["errors"] + torua["reimport"]["errors"] + torua["get"]["kv-get"]["errors"] + torua["get"]["vertex-get"]["errors"]
        if errors or "vector_error" in torua:
            print(f"torua bench: {errors} requests or lines failed" if errors else f"torua bench: vector search {torua['vector_error']}", file=sys.stderr)
            return 1
        return 0

    return in_own_stack("torua-bench-graph-", getattr(args, "insecure", False), run)
