"""The `torua` command: run a local cluster, run one process, or talk to a cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any, Coroutine

from torua import __version__
from torua.config import DEFAULT_NATS_URL, ConfigError, CoordinatorConfig, GatewayConfig, NodeConfig, WorkerConfig, add_arguments, build
from torua.gc_settings import settle_gc


def _env(name: str, default: str) -> str:
    return os.environ.get(f"TORUA_{name}", default)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torua", description="Torua: a distributed store for GraphRAG over NATS.")
    p.add_argument("--version", action="version", version=f"torua {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run a whole local cluster (nats-server, coordinator, nodes, gateway)")
    up.add_argument("--nodes", type=int, default=int(_env("NODES", "3")), help="storage nodes to start [env TORUA_NODES; default 3]")
    up.add_argument("--shards", type=int, default=int(_env("SHARDS", "16")), help="shards when the cluster is created [env TORUA_SHARDS; default 16]")
    up.add_argument("--replicas", type=int, default=int(_env("REPLICAS", "1")), help="copies of each shard [env TORUA_REPLICAS; default 1]")
    up.add_argument("--workers", type=int, default=int(_env("WORKERS", "1")), help="GraphRAG workers to start (torua worker: ingestion and queries of /rag) [env TORUA_WORKERS; default 1]")
    up.add_argument("--coordinators", type=int, default=int(_env("COORDINATORS", "1")), help="coordinators to start: one leads, the others stand by [env TORUA_COORDINATORS; default 1]")
    up.add_argument("--data-dir", default=_env("DATA_DIR", "./torua-data"), help="where everything is stored [env TORUA_DATA_DIR; default ./torua-data]")
    up.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="HTTP listen address [env TORUA_HOST; default 127.0.0.1]")
    up.add_argument("--port", type=int, default=int(_env("PORT", "8080")), help="HTTP port of the gateway [env TORUA_PORT; default 8080]")
    up.add_argument("--nats-port", type=int, default=int(_env("NATS_PORT", "4222")), help="port of the embedded nats-server [env TORUA_NATS_PORT; default 4222]")
    up.add_argument("--nats-url", default=os.environ.get("TORUA_NATS_URL"), help="use this NATS instead of starting one [env TORUA_NATS_URL]")
    up.add_argument("--commit", default=_env("COMMIT", "durable"), choices=["durable", "relaxed"], help="node commit policy [env TORUA_COMMIT; default durable]")
    up.add_argument("--heartbeat-interval", type=float, default=float(_env("HEARTBEAT_INTERVAL", "1.0")), help="seconds between heartbeats [env TORUA_HEARTBEAT_INTERVAL; default 1.0]")
    up.add_argument("--log-level", default=_env("LOG_LEVEL", "info"), help="log level of the processes [env TORUA_LOG_LEVEL; default info]")
    up.add_argument("--log-format", default=_env("LOG_FORMAT", "text"), choices=["text", "json"], help="log format of the processes [env TORUA_LOG_FORMAT; default text]")
    up.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "0")), metavar="BASE", help="serve /metrics from each process on BASE, BASE+1, ... (coordinators, nodes, gateway) [env TORUA_METRICS_PORT; default 0 = off]")
    up.add_argument("--insecure", action="store_true", default=_env("INSECURE", "") in ("1", "true", "yes"), help="run open: the embedded nats-server takes any connection (no per-role keys), and REST and the NATS API take requests without an API key: a laptop only [env TORUA_INSECURE=1]")
    up.add_argument("--tls", action="store_true", default=_env("TLS", "") in ("1", "true", "yes"), help="HTTPS on the gateway and TLS on the embedded nats-server, with a local CA made in the data dir (secrets/tls/ca.pem is what clients trust) [env TORUA_TLS=1]")
    up.add_argument("--ready-timeout", type=float, default=60.0, help="seconds after which torua up says what the cluster still lacks (it keeps running, and says when it is ready) [default 60]")

    for name, cls, text in (
        ("coordinator", CoordinatorConfig, "run a coordinator"),
        ("node", NodeConfig, "run a storage node"),
        ("gateway", GatewayConfig, "run a gateway (REST API and NATS API)"),
        ("worker", WorkerConfig, "run a GraphRAG worker: documents from the ingestion queue into their corpus"),
    ):
        add_arguments(sub.add_parser(name, help=text, description=text), cls)

    kv = sub.add_parser("kv", help="get, put, delete or list keys")
    kv.add_argument("--nats-url", default=_env("NATS_URL", DEFAULT_NATS_URL), help="NATS URL [env TORUA_NATS_URL]")
    kv.add_argument("--timeout", type=float, default=5.0, help="seconds per operation [default 5]")
    kvs = kv.add_subparsers(dest="kv_command", required=True, metavar="OP")
    g = kvs.add_parser("get", help="print a value to stdout")
    g.add_argument("key")
    pt = kvs.add_parser("put", help="store a value (from the argument, or stdin with -)")
    pt.add_argument("key")
    pt.add_argument("value")
    pt.add_argument("--content-type", default="application/octet-stream")
    d = kvs.add_parser("delete", help="delete a key (no error if absent)")
    d.add_argument("key")
    ls = kvs.add_parser("ls", help="list keys")
    ls.add_argument("--prefix", default="")
    ls.add_argument("--limit", type=int, default=1000)

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--nats-url", default=_env("NATS_URL", DEFAULT_NATS_URL), help="NATS URL [env TORUA_NATS_URL]")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds per request [default 10]")

    graph = sub.add_parser("graph", help="graphs: create, import, read, traverse, search, Cypher", description="Graphs from the shell (via torua.Client).")
    from torua.cli.graph import add_graph_arguments

    add_graph_arguments(graph, client_options)

    rag = sub.add_parser("rag", help="GraphRAG corpora: create, ingest files, query, jobs, delete documents", description="GraphRAG from the shell (via torua.Client).")
    from torua.cli.rag import add_rag_arguments

    add_rag_arguments(rag, client_options)

    st = sub.add_parser("status", help="the cluster at a glance")
    st.add_argument("--nats-url", default=_env("NATS_URL", DEFAULT_NATS_URL), help="NATS URL [env TORUA_NATS_URL]")

    auth = sub.add_parser("auth", help="credentials: API keys (create, list, revoke) and the NATS key of a role in a torua up data dir")
    from torua.cli.auth import add_auth_arguments

    add_auth_arguments(auth, _env("DATA_DIR", "./torua-data"), client_options)

    bench = sub.add_parser("bench", help="benchmark Torua beside bare NATS, JetStream KV and aiohttp anchors")
    from torua.cli.bench import add_bench_arguments

    add_bench_arguments(bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"torua {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `torua ... | head`: the reader left; say nothing more (as a Unix tool does)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would fail again
        return 141


def _dispatch(args: argparse.Namespace) -> int:
    from torua.bus import NatsUnreachable
    from torua.dir_lock import DirLockError
    from torua.listen import CannotListen
    from torua.logs import setup_logging

    if args.command in ("up", "coordinator", "node", "gateway", "worker"):
        try:
            settle_gc()  # up: refused before it starts anything, as its children would refuse it
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if args.command == "up":
        from torua.cli.up import run_up

        try:
            return run_up(args)
        except DirLockError as exc:  # its data dir is another cluster's
            print(f"torua up: {exc}", file=sys.stderr)
            return 1
    if args.command in ("coordinator", "node", "gateway", "worker"):
        cls = {"coordinator": CoordinatorConfig, "node": NodeConfig, "gateway": GatewayConfig, "worker": WorkerConfig}[args.command]
        config = build(cls, args)
        if args.command == "node":
            from torua.malloc_arenas import limit_arenas

            limit_arenas(config.malloc_arenas)  # before any thread of its own starts; its serving line says which
        setup_logging(config.log_level, config.log_format, args.command, getattr(config, "id", ""))
        try:
            asyncio.run(_run_role(args.command, config))
        except (NatsUnreachable, DirLockError, CannotListen) as exc:
            print(f"torua {args.command}: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "kv":
        from torua.cli.kv import run_kv

        return run_tool(run_kv(args), "kv")
    if args.command == "graph":
        from torua.cli.graph import run_graph

        return run_tool(run_graph(args), "graph")
    if args.command == "rag":
        from torua.cli.rag import run_rag

        return run_tool(run_rag(args), "rag")
    if args.command == "status":
        from torua.cli.status import run_status

        return run_tool(run_status(args))
    if args.command == "auth":
        from torua.cli.auth import run_auth, run_keys

        return run_auth(args) if args.auth_command == "nats" else run_tool(run_keys(args), "auth")
    if args.command == "bench":
        from torua.cli.bench import run_bench

        return run_bench(args)
    raise AssertionError(args.command)


def run_tool(command: Coroutine[Any, Any, int], name: str = "") -> int:
    """Run a command that talks to a cluster (`torua kv`, `graph`, `auth`, `status`), then
    end every task it left behind (nats-py's among them), cancelling again any that
    swallowed a cancellation: asyncio's own shutdown cancels once and waits for ever.
    With `name`, what the cluster refused (a `ToruaError`) or a NATS it could not reach
    is one line, ``torua <name>: ...``, and exit code 1."""
    from torua.bus import NatsUnreachable
    from torua.protocol.errors import ToruaError
    from torua.stopping import end_leftover_tasks

    async def main() -> int:
        try:
            return await command
        except ToruaError as exc:
            if not name:
                raise
            print(f"torua {name}: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        except NatsUnreachable as exc:
            if not name:
                raise
            print(f"torua {name}: {exc}", file=sys.stderr)
            return 1
        finally:
            await end_leftover_tasks()

    return asyncio.run(main())


def stop_grace(role: str, config) -> float:
    """Seconds a process may take to stop after SIGINT/SIGTERM before it exits anyway:
    its own waits (a node's hand-off, a gateway's requests in flight) plus a margin."""
    from torua.stopping import STOP_MARGIN

    own = {"node": getattr(config, "shutdown_timeout", 0.0), "gateway": getattr(config, "request_timeout", 0.0)}.get(role, 0.0)
    return own + STOP_MARGIN


async def _run_role(role: str, config) -> None:
    from torua.stopping import STOP_MARGIN, StopRequest, end_leftover_tasks

    # Before anything else (the data dir, the first NATS connection): a stop asked
    # for at any point is taken, and bounded.
    stop = StopRequest(f"{role} {getattr(config, 'id', '')}".strip(), stop_grace(role, config)).install()
    try:
        if role == "coordinator":
            from torua.coordinator.election import run_coordinator

            await run_coordinator(config, stop)
        elif role == "node":
            from torua.node.service import run_node

            await run_node(config, stop)
        elif role == "worker":
            from torua.rag.worker import run_worker

            await run_worker(config, stop)
        else:
            from torua.gateway.service import run_gateway

            await run_gateway(config, stop)
    finally:
        # Whatever ended the process (a stop, NATS unreachable, an error), it exits in
        # bounded time: asyncio's own shutdown waits for every task left behind.
        stop.arm(STOP_MARGIN)
        left = await end_leftover_tasks()
        if left:
            names = ", ".join(t.get_name() for t in left[:5])
            logging.getLogger("torua").warning("%d task(s) would not end (%s); the process exits anyway within %gs", len(left), names, STOP_MARGIN)


if __name__ == "__main__":
    raise SystemExit(main())
