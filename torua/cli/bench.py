"""`torua bench`: throughput and p50/p99 of Torua beside its anchors, in one run.

The anchors are measured on the same machine in the same run, so the figures to
read are ratios: a bare nats-py echo responder (the floor for a request over
NATS from Python), JetStream KV get/put with nats-py (what a user would pick
instead, at the same durability) and a bare aiohttp handler doing one NATS echo
per request (the floor for a gateway of this shape). By default everything runs
on loopback in a temp dir (its own nats-server and `torua up`) and is stopped at
the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from torua.api_keys import discovered_token
from torua.bench.load import Result, measure
from torua.bench.procs import Stack, in_own_stack, run_async
from torua.bench.report import machine_info, table, write_json
from torua.bench.targets import ANCHORS, ORDER, TORUA, Targets
from torua.cli.up import nats_server_binary


def add_bench_arguments(p) -> None:
    p.add_argument("--requests", type=int, default=2000, help="requests per measurement [default 2000]")
    p.add_argument("--concurrency", default="1,64", help="comma-separated concurrent workers to measure at [default 1,64]")
    p.add_argument("--value-size", type=int, default=100, help="bytes per value [default 100]")
    p.add_argument("--commit", choices=["relaxed", "durable"], default="relaxed",
                   help="Torua's commit policy; durable also runs the JetStream anchor with sync_interval: always [default relaxed]")
    p.add_argument("--warmup", type=int, default=100, help="unmeasured requests before each measurement [default 100]")
    p.add_argument("--json", default="bench-results.json", help="where to write the results [default bench-results.json]")
    p.add_argument("--nats-url", default=None, help="measure an existing cluster on this NATS (needs --http) instead of starting one")
    p.add_argument("--http", default=None, help="the existing cluster's gateway, e.g. http://127.0.0.1:8080")
    p.add_argument("--insecure", action="store_true",
                   help="start Torua without API keys (compare with a run without it: what authentication costs)")
    p.add_argument("--api-key", default=None, help="an existing cluster's API key [env TORUA_API_KEY; default the one in $TORUA_DATA_DIR or ./torua-data]")
    p.add_argument("--replicas", type=int, default=1, help="copies of each shard in the cluster the bench starts [default 1]")
    p.add_argument("--failover", action="store_true",
                   help="instead: start a --replicas 2 cluster, kill -9 a primary while writing, and print how long its shards were unavailable")
    p.add_argument("--failover-rounds", type=int, default=3, choices=(1, 2, 3),
                   help="nodes killed one after another (--failover), n1 first; each back in sync before the next [default 3: every node]")
    from torua.bench.graph import add_graph_bench_arguments

    add_graph_bench_arguments(p)
    from torua.bench.rag import add_rag_bench_arguments

    add_rag_bench_arguments(p)
    p.add_argument("--only", default=None, metavar="SUBSTRING",
                   help=f"only measurements whose name contains this (comma-separated: any of them) among {', '.join(ORDER)}")


def _durability(args) -> dict:
    own = args.nats_url is None
    torua = {"relaxed": "commit=relaxed (WAL written, no fsync per commit)", "durable": "commit=durable (fsync every commit)"}[args.commit]
    if not own:
        torua += " as stated by --commit for the cluster at --http"
    if args.commit == "durable":
        js, tag = "file store with sync_interval: always (fsync every write; its own nats-server)", "sync always"
    elif own:
        js, tag = "file store with the default sync_interval (2 min; no fsync per write)", "no fsync"
    else:
        js, tag = "file store on the given nats-server with its own sync_interval", "server default"
    return {"torua": torua, "jetstream": js, "torua_tag": f"commit={args.commit}", "jetstream_tag": tag}


def _start(args, stack: Stack, names: list[str]) -> dict:
    urls = {"nats_url": args.nats_url, "http_url": args.http, "js_nats_url": None, "echo_http_url": None}
    if urls["nats_url"] is None:
        urls["nats_url"] = stack.start_nats("nats")
        print(f"torua bench: nats-server at {urls['nats_url']}", flush=True)
    urls["js_nats_url"] = urls["nats_url"]
    if args.commit == "durable" and any(n.startswith("jskv") for n in names):
        urls["js_nats_url"] = stack.start_nats("nats-js-sync", sync_always=True)
        print(f"torua bench: nats-server with sync_interval: always at {urls['js_nats_url']} (JetStream anchor)", flush=True)
    if any(n in ("nats-echo", "aiohttp-echo-get", "aiohttp-echo-put") for n in names):
        stack.start_echo(urls["nats_url"])
    if any(n.startswith("aiohttp-echo") for n in names):
        urls["echo_http_url"] = stack.start_http_echo(urls["nats_url"], args.value_size)
    if urls["http_url"] is None and any(n in TORUA for n in names):
        print(f"torua bench: starting torua up (3 nodes, 16 shards, commit={args.commit})", flush=True)
        urls["http_url"] = stack.start_torua(urls["nats_url"], args.commit, replicas=args.replicas)
        print(f"torua bench: Torua ready at {urls['http_url']}", flush=True)
    elif args.nats_url is not None:  # an existing cluster: its key, or none if it runs --insecure
        stack.api_key = args.api_key if args.api_key is not None else discovered_token()
    return urls


async def _measure(args, urls: dict, names: list[str], concurrencies: list[int], api_key: str) -> tuple[list[Result], str]:
    targets = Targets(urls["nats_url"], urls["js_nats_url"], urls["http_url"], urls["echo_http_url"],
                      args.value_size, keys=min(args.requests, 1000), api_key=api_key)
    results: list[Result] = []
    try:
        await targets.open(names, max(concurrencies))
        for name in names:
            for c in concurrencies:
                r = await measure(name, targets.op(name, c), args.requests, c, min(args.warmup, args.requests))
                results.append(r)
                err = f"  {r.errors} ERRORS" if r.errors else ""
                print(f"  {name:<17} c={c:<3} {r.throughput:>9.0f} ops/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms{err}", flush=True)
    finally:
        await targets.close()
    return results, targets.client_mode


def run_bench(args) -> int:
    if args.failover:
        from torua.bench.failover import run_failover

        return run_failover(args)
    if args.graph:
        from torua.bench.graph import run_graph_bench

        return run_graph_bench(args)
    if args.rag:
        from torua.bench.rag import run_rag_bench

        return run_rag_bench(args)
    try:
        concurrencies = sorted({int(c) for c in str(args.concurrency).split(",") if c.strip()})
    except ValueError:
        concurrencies = []
    if not concurrencies or min(concurrencies) < 1 or args.requests < 1 or args.value_size < 0 or args.warmup < 0:
        print("torua bench: --concurrency needs positive integers (e.g. 1,64), --requests >= 1, --value-size and --warmup >= 0", file=sys.stderr)
        return 2
    if (args.nats_url is None) != (args.http is None):
        print("torua bench: --nats-url and --http go together (an existing cluster)", file=sys.stderr)
        return 2
    wanted = [w.strip() for w in (args.only or "").split(",") if w.strip()]
    names = [n for n in ORDER if not wanted or any(w in n for w in wanted)]
    if not names:
        print(f"torua bench: --only {args.only!r} matches none of {', '.join(ORDER)}", file=sys.stderr)
        return 2
    durability = _durability(args)

    def run(stack: Stack, workdir: Path) -> int:
        urls = _start(args, stack, names)
        version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        machine = machine_info(version, workdir)
        print(f"torua bench: Torua {durability['torua']}; JetStream anchor {durability['jetstream']}", flush=True)
        results, client_mode = run_async(_measure(args, urls, names, concurrencies, stack.api_key))
        header = (
            f"torua bench: {args.requests} requests per figure (+{min(args.warmup, args.requests)} warm-up), "
            f"{args.value_size}-byte values, loopback; {machine['cpu_count']} CPUs, Python {machine['python']}, {machine['nats_server']}, "
            f"data on {machine['workdir_filesystem']}"
        )
        if any(n.startswith("client") for n in names):
            header += f"\ntorua.Client mode: {client_mode}"
        if any(n in TORUA for n in names):
            header += "\nTorua API keys: " + ("on (every request carries one)" if stack.api_key else "off (--insecure)")
        print("\n" + table(results, durability, header) + "\n", flush=True)
        write_json(
            Path(args.json), results, machine=machine, durability=durability, client_mode=client_mode,
            settings={"requests": args.requests, "concurrency": concurrencies, "value_size": args.value_size,
                      "warmup": min(args.warmup, args.requests), "commit": args.commit, "only": args.only,
                      "anchors": [n for n in names if n in ANCHORS], "torua": [n for n in names if n in TORUA],
                      "api_keys": bool(stack.api_key)},
            workdir=str(workdir), **urls,
        )
        print(f"torua bench: results written to {args.json}", flush=True)
        if any(r.errors for r in results):
            print("torua bench: some requests failed (see ERRORS above)", file=sys.stderr)
            return 1
        return 0

    return in_own_stack("torua-bench-", args.insecure, run)
