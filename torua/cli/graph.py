"""`torua graph ...`: graphs from the shell, built on `torua.Client.graph`.

`torua graph import GRAPH FILE` streams an NDJSON file in batches (each one
import request of at most `--batch-bytes`): first every vertex line, then every
edge line (the file is read twice; from stdin, ``-``, once, in its order), so an
edge may name a vertex from anywhere in the file. On a terminal it draws a
progress bar; otherwise it prints one plain line per batch. Lines that were not
applied are printed with their line numbers in the file; the exit code is 1
when there were any.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

from torua.client import Client
from torua.protocol.errors import ToruaError

BATCH_BYTES = 1 << 20
BATCH_LINES = 5000


def add_graph_arguments(graph, common) -> None:
    """The `torua graph` subcommands (`common` adds --nats-url and --timeout to a parser)."""
    subs = graph.add_subparsers(dest="graph_command", required=True, metavar="OP")

    def sub(name: str, text: str):
        p = subs.add_parser(name, help=text, description=text)
        common(p)
        return p

    p = sub("create", "create a graph (every setting optional)")
    p.add_argument("graph", help="the graph's name")
    p.add_argument("--vector-dim", type=int, default=0, help="floats in each vertex's embedding [default 0: no vectors]")
    p.add_argument("--metric", choices=["cosine", "l2"], default="cosine", help="how vector search compares embeddings [default cosine]")
    p.add_argument("--text-properties", default="", help="comma-separated vertex properties full-text search covers, e.g. text,title")
    sub("ls", "list the graphs and their settings")
    p = sub("info", "a graph's settings and its counts over every shard")
    p.add_argument("graph", help="the graph's name")
    p = sub("rm", "delete a graph with all its data (no error if absent)")
    p.add_argument("graph", help="the graph's name")
    p = sub("import", "import an NDJSON file of {\"vertex\": {...}} and {\"edge\": {...}} lines, in batches")
    p.add_argument("graph", help="the graph's name")
    p.add_argument("file", help="the NDJSON file, or - for stdin (then read once, in its order)")
    p.add_argument("--batch-bytes", type=int, default=BATCH_BYTES, help=f"bytes of lines per request, at most the NATS max_payload [default {BATCH_BYTES}]")
    p.add_argument("--batch-lines", type=int, default=BATCH_LINES, help=f"lines per request [default {BATCH_LINES}]")
    p.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto", help="a progress bar, plain lines per batch, or auto: a bar on a terminal [default auto]")
    p = sub("get", "print a vertex as JSON")
    p.add_argument("graph", help="the graph's name")
    p.add_argument("id")
    p.add_argument("--embedding", action="store_true", help="include its embedding")
    p = sub("edges", "print a vertex's edges as JSON lines")
    p.add_argument("graph", help="the graph's name")
    p.add_argument("id")
    p.add_argument("--direction", choices=["out", "in", "both"], default="out", help="[default out]")
    p.add_argument("--type", default=None, help="only edges of this type")
    p.add_argument("--limit", type=int, default=1000, help="at most this many [default 1000]")
    p = sub("traverse", "breadth-first from some vertices; prints the answer as JSON")
    p.add_argument("graph", help="the graph's name")
    p.add_argument("ids", nargs="+", metavar="ID", help="the vertices to start from")
    p.add_argument("--direction", choices=["out", "in", "both"], default="out", help="[default out]")
    p.add_argument("--types", default="", help="comma-separated edge types to follow [default: every type]")
    p.add_argument("--max-hops", type=int, default=2, help="1 to 6 [default 2]")
    p.add_argument("--limit", type=int, default=1000, help="at most this many vertices [default 1000]")
    p.add_argument("--edges", action="store_true", help="also print the edges walked")
    p = sub("path", "a shortest path between two vertices, as JSON")
    p.add_argument("graph", help="the graph's name")
    p.add_argument("source", metavar="FROM")
    p.add_argument("target", metavar="TO")
    p.add_argument("--direction", choices=["out", "in", "both"], default="out", help="[default out]")
    p.add_argument("--types", default="", help="comma-separated edge types to follow [default: every type]")
    p.add_argument("--max-hops", type=int, default=6, help="1 to 6 [default 6]")
    p = sub("search", "vector or full-text search; prints the hits as JSON lines, best first")
    p.add_argument("graph", help="the graph's name")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--text", help="the words to search the graph's text_properties for")
    how.add_argument("--vector", help="the vector as a JSON list, e.g. [0.1, 0.2, 0.3]")
    p.add_argument("-k", type=int, default=10, help="how many hits [default 10]")
    p.add_argument("--label", default=None, help="only vertices with this label")
    p = sub("cypher", "run a read-only Cypher query on every shard; prints each row with its shard as JSON lines")
    p.add_argument("graph", help="the graph's name")
    p.add_argument("query")
    p.add_argument("--params", default=None, help="the query's $parameters as a JSON object")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _print(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2))


async def run_graph(args) -> int:
    async with Client(args.nats_url, timeout=args.timeout) as db:
        if args.graph_command == "ls":
            for g in await db.graphs():
                print(json.dumps(g, ensure_ascii=False))
            return 0
        graph = db.graph(args.graph)
        command = args.graph_command
        if command == "create":
            _print(await graph.create(args.vector_dim, args.metric, _names(args.text_properties)))
        elif command == "info":
            _print(await graph.info())
        elif command == "rm":
            await graph.delete()
        elif command == "import":
            return await run_import(graph, args)
        elif command == "get":
            vertex = await graph.get_vertex(args.id, embedding=args.embedding)
            if vertex is None:
                print(f"torua graph: vertex {args.id!r} of graph {args.graph} not found", file=sys.stderr)
                return 1
            _print(vertex)
        elif command == "edges":
            cursor, left = None, args.limit
            while left > 0:
                page, cursor = await graph.edges(args.id, args.direction, args.type, min(left, 1000), cursor)
                for e in page:
                    print(json.dumps(e, ensure_ascii=False))
                left -= len(page)
                if cursor is None:
                    break
        elif command == "traverse":
            _print(await graph.traverse(args.ids, args.direction, _names(args.types), args.max_hops, args.limit, args.edges))
        elif command == "path":
            path = await graph.shortest_path(args.source, args.target, args.direction, _names(args.types), args.max_hops)
            if path is None:
                print(f"torua graph: no path from {args.source!r} to {args.target!r} within {args.max_hops} hops", file=sys.stderr)
                return 1
            _print(path)
        elif command == "search":
            if args.text is not None:
                hits = await graph.text_search(args.text, args.k, args.label)
            else:
                hits = await graph.vector_search(_json_arg(args.vector, "--vector", list), args.k, args.label)
            for hit in hits:
                print(json.dumps(hit, ensure_ascii=False))
        elif command == "cypher":
            params = _json_arg(args.params, "--params", dict) if args.params else None
            answer = await graph.cypher(args.query, params)
            print(json.dumps({"columns": answer["columns"]}, ensure_ascii=False))
            for row in answer["rows"]:
                print(json.dumps(row, ensure_ascii=False))
    return 0


def _json_arg(text: str, flag: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise ToruaError("bad_request", f"{flag} is not valid JSON") from None
    if not isinstance(value, kind):
        raise ToruaError("bad_request", f"{flag} must be a JSON {'list' if kind is list else 'object'}")
    return value


# ------------------------------------------------------------------ import


def line_kind(line: bytes) -> str:
    """``vertex`` or ``edge`` (what the line's one key says); a line that says neither
    goes with the vertices, so the gateway names it in the first pass."""
    try:
        doc = json.loads(line)
    except ValueError:
        return "vertex"
    return "edge" if isinstance(doc, dict) and list(doc) == ["edge"] else "vertex"


def numbered(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(lines, 1):
        yield number, line.rstrip(b"\r\n")


def in_batches(lines: Iterable[tuple[int, bytes]], max_bytes: int, max_lines: int) -> Iterator[list[tuple[int, bytes]]]:
    """Non-blank numbered lines in batches of at most `max_lines` lines and about
    `max_bytes` bytes (a longer line goes alone).

    >>> [[n for n, _ in b] for b in in_batches([(1, b"aa"), (2, b""), (3, b"bb"), (4, b"cc")], max_bytes=6, max_lines=10)]
    [[1, 3], [4]]
    """
    batch: list[tuple[int, bytes]] = []
    size = 0
    for number, line in lines:
        if not line.strip():
            continue
        if batch and (len(batch) >= max_lines or size + len(line) + 1 > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((number, line))
        size += len(line) + 1
    if batch:
        yield batch


@dataclass
class ImportTally:
    """What an import did so far, in the file's line numbers."""

    lines: int = 0
    vertices: int = 0
    edges: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def take(self, batch: list[tuple[int, bytes]], answer: dict[str, Any]) -> None:
        self.lines += len(batch)
        self.vertices += int(answer.get("vertices", 0))
        self.edges += int(answer.get("edges", 0))
        for error in answer.get("errors", []):
            # the request's line n is the batch's n-th line
            index = int(error["line"]) - 1
            number = batch[index][0] if 0 <= index < len(batch) else 0
            self.errors.append((number, str(error["error"])))

    def summary(self) -> str:
        return f"{self.lines} lines: {self.vertices} vertices, {self.edges} edges applied, {len(self.errors)} not applied"


class Progress:
    """A bar redrawn in place on a terminal, or one plain line per batch."""

    def __init__(self, out: IO[str], bar: bool, total_bytes: int | None) -> None:
        self.out, self.bar, self.total = out, bar, total_bytes
        self.started = time.monotonic()

    def show(self, tally: ImportTally, done_bytes: int, what: str) -> None:
        rate = tally.lines / max(time.monotonic() - self.started, 1e-6)
        if not self.bar:
            print(f"{what}: {tally.summary()} ({rate:,.0f} lines/s)", file=self.out, flush=True)
            return
        if self.total:
            share = min(1.0, done_bytes / self.total)
            filled = int(share * 30)
            head = f"[{'#' * filled}{'.' * (30 - filled)}] {share:4.0%}"
        else:
            head = f"{done_bytes:,} bytes"
        print(f"\r{head} {what}: {tally.summary()} ({rate:,.0f} lines/s)\x1b[K", end="", file=self.out, flush=True)

    def end(self) -> None:
        if self.bar:
            print(file=self.out, flush=True)


async def run_import(graph, args) -> int:
    max_bytes = max(1, args.batch_bytes)
    max_lines = max(1, args.batch_lines)
    bar = args.progress == "bar" or (args.progress == "auto" and sys.stderr.isatty())
    tally = ImportTally()
    if args.file == "-":
        passes = [("import", None)]
        total = None
    else:
        try:
            with open(args.file, "rb") as probe:
                total = 2 * probe.seek(0, 2)  # read twice
        except OSError as exc:
            print(f"torua graph: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 1
        passes = [("vertices", "vertex"), ("edges", "edge")]
    progress = Progress(sys.stderr, bar, total)
    done_bytes = 0
    for what, kind in passes:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
        try:
            lines = ((n, line) for n, line in numbered(source) if kind is None or line_kind(line) == kind)
            for batch in in_batches(lines, max_bytes, max_lines):
                answer = await graph.import_ndjson(b"\n".join(line for _, line in batch))
                tally.take(batch, answer)
                if total is None:
                    done_bytes += sum(len(line) + 1 for _, line in batch)
                else:  # the second pass reads the file again
                    done_bytes = source.tell() + (total // 2 if kind == "edge" else 0)
                progress.show(tally, done_bytes, what)
        finally:
            if source is not sys.stdin.buffer:
                source.close()
    progress.end()
    for number, message in sorted(tally.errors):
        print(f"{args.file}:{number}: {message}", file=sys.stderr)
    print(f"imported {args.file} into {args.graph}: {tally.summary()}", file=sys.stderr)
    return 1 if tally.errors else 0
