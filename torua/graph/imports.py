"""An import, as pure planning: NDJSON lines in, per-shard batches out, problems
back to the lines they came from.

Each line of ``POST /graphs/{g}/import`` is ``{"vertex": {"id", "label"?,
"properties"?, "embedding"?}}`` or ``{"edge": {"src", "type", "dst",
"properties"?, "weight"?}}``; blank lines are skipped. A line that is not one
of these, or breaks a rule (`torua.graph.rules`), is named in the answer's
``errors`` with its number (1 for the first line) and is not sent; the good
lines are. Vertices go in batches to their own shard, edges to their `src`'s
shard (which drives the edge's other half, docs/design/graph.md section 4), and
every vertex batch of a request is applied before any edge batch, so an edge may
name a vertex from any line of the same request. Every write is a put of a whole
vertex or edge, so importing the same lines again changes nothing.

>>> parsed = ImportParser(vector_dim=0)
>>> for number, line in split_lines(b'{"vertex": {"id": "a"}}\\n\\n{"edge": {"src": "a", "type": "t", "dst": "b"}}\\nnope\\n'):
...     parsed.feed(number, line)
>>> [n for n, _, _ in parsed.vertices], [n for n, _, _ in parsed.edges], parsed.errors
([1], [3], [(4, 'the line is not valid JSON')])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from torua.graph import rules
from torua.protocol.codec import loads_json
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EdgeData, ImportProblem, VertexData

T = TypeVar("T")

VERTEX_FIELDS = frozenset({"id", "label", "properties", "embedding"})
EDGE_FIELDS = frozenset({"src", "type", "dst", "properties", "weight"})
# One batch to one shard: at most this many lines, and about this many bytes of
# them (a batch is one NATS message; the caller lowers it to fit max_payload).
BATCH_LINES = 5000
BATCH_BYTES = 4 << 20

# An item of a batch: (its line number, what it carries, its size on the line in bytes).
Item = tuple[int, T, int]


def split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Numbered lines (from 1) of a whole body."""
    splitter = LineSplitter()
    yield from splitter.feed(data)
    yield from splitter.finish()


class LineSplitter:
    """Numbered lines out of a body that arrives in pieces (a streamed request)."""

    def __init__(self) -> None:
        self._rest = b""
        self._number = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        data = self._rest + chunk
        *lines, self._rest = data.split(b"\n")
        for line in lines:
            self._number += 1
            yield self._number, line

    def finish(self) -> Iterator[tuple[int, bytes]]:
        if self._rest:
            self._number += 1
            rest, self._rest = self._rest, b""
            yield self._number, rest


class ImportParser:
    """Reads lines one at a time, keeping the good ones as vertices or edges and
    the bad ones as errors."""

    def __init__(self, vector_dim: int) -> None:
        self.vector_dim = vector_dim
        self.vertices: list[Item[VertexData]] = []
        self.edges: list[Item[EdgeData]] = []
        self.errors: list[tuple[int, str]] = []

    def feed(self, number: int, line: bytes) -> None:
        if not line.strip():
            return
        try:
            kind, item = self._parse(line)
        except ToruaError as exc:
            self.errors.append((number, exc.message))
            return
        if kind == "vertex":
            self.vertices.append((number, item, len(line)))
        else:
            self.edges.append((number, item, len(line)))

    def _parse(self, line: bytes) -> tuple[str, Any]:
        doc = loads_json(line, "the line")
        if not isinstance(doc, dict) or len(doc) != 1 or not ({"vertex", "edge"} & set(doc)):
            raise ToruaError("bad_request", 'a line must be {"vertex": {...}} or {"edge": {...}}')
        (kind, body), = doc.items()
        allowed = VERTEX_FIELDS if kind == "vertex" else EDGE_FIELDS
        if not isinstance(body, dict):
            raise ToruaError("bad_request", f"{kind} must be an object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ToruaError("bad_request", f"unknown field(s) {', '.join(unknown)} of {kind}; expected {', '.join(sorted(allowed))}")
        if kind == "vertex":
            return kind, rules.vertex(body.get("id"), body.get("label"), body.get("properties"), body.get("embedding"), self.vector_dim)
        return kind, rules.edge(body.get("src"), body.get("type"), body.get("dst"), body.get("properties"), body.get("weight"))


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Items for one shard, sent as one `import` request."""

    shard: int
    items: tuple[Item[T], ...]

    @property
    def payload(self) -> list[T]:
        return [item for _, item, _ in self.items]

    def line(self, index: int) -> int:
        return self.items[index][0]


def batches(items: Sequence[Item[T]], shard_of: Callable[[T], int], max_lines: int = BATCH_LINES, max_bytes: int = BATCH_BYTES) -> list[Batch[T]]:
    """`items` grouped by shard (in line order within a shard), each group cut into
    batches of at most `max_lines` items and about `max_bytes` (one item more than
    that goes alone); shards in order.

    >>> [(b.shard, [n for n, _, _ in b.items]) for b in batches([(1, "a", 5), (2, "b", 5), (3, "a", 5)], ord, max_lines=1)]
    [(97, [1]), (97, [3]), (98, [2])]
    """
    groups: dict[int, list[Item[T]]] = {}
    for entry in items:
        groups.setdefault(shard_of(entry[1]), []).append(entry)
    out: list[Batch[T]] = []
    for shard in sorted(groups):
        current: list[Item[T]] = []
        size = 0
        for entry in groups[shard]:
            if current and (len(current) >= max_lines or size + entry[2] > max_bytes):
                out.append(Batch(shard, tuple(current)))
                current, size = [], 0
            current.append(entry)
            size += entry[2]
        if current:
            out.append(Batch(shard, tuple(current)))
    return out


@dataclass
class ImportOutcome:
    """What an import answers: lines applied by kind, and every line not applied."""

    vertices: int = 0
    edges: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def applied(self, batch: Batch[Any], kind: str, problems: Sequence[ImportProblem]) -> None:
        """`batch` was applied but for `problems` (each naming an index among the batch's items)."""
        bad = {p.index: p for p in problems if p.kind == kind and 0 <= p.index < len(batch.items)}
        done = len(batch.items) - len(bad)
        if kind == "vertex":
            self.vertices += done
        else:
            self.edges += done
        self.errors.extend((batch.line(i), p.error_message or p.error_code) for i, p in bad.items())

    def failed(self, batch: Batch[Any], message: str) -> None:
        """None of `batch` was applied (its shard refused the whole request)."""
        self.errors.extend((number, message) for number, _, _ in batch.items)

    def view(self) -> dict[str, Any]:
        return {
            "vertices": self.vertices, "edges": self.edges,
            "errors": [{"line": number, "error": message} for number, message in sorted(self.errors)],
        }


def outcome_of(parsed: ImportParser) -> ImportOutcome:
    return ImportOutcome(errors=list(parsed.errors))


def edge_shard(graph: str, num_shards: int) -> Callable[[EdgeData], int]:
    return lambda e: rules.vertex_shard(graph, e.src, num_shards)


def vertex_shard(graph: str, num_shards: int) -> Callable[[VertexData], int]:
    return lambda v: rules.vertex_shard(graph, v.id, num_shards)
