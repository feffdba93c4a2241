"""What graph clients attempted (edge and vertex puts and deletes) and what they were
told, and which edges a scan must then show: shared by the in-memory simulation
(tests/simulation/test_graph_edge_faults.py) and the real-process fault test
(tests/integration/test_graph_faults.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.graph_client import GraphScan


@dataclass
class Attempt:
    kind: str  # put | delete
    target: tuple[str, ...]  # an edge key, or (vertex id,)
    started: float
    finished: float = float("inf")
    outcome: str = "pending"  # acked | failed (unknown)


@dataclass
class History:
    attempts: list[Attempt] = field(default_factory=list)

    def of(self, target: tuple[str, ...]) -> list[Attempt]:
        return [a for a in self.attempts if a.target == target]

    def acked(self) -> int:
        return sum(1 for a in self.attempts if a.outcome == "acked")

    def finished(self) -> int:
        return sum(1 for a in self.attempts if a.outcome != "pending")

    def outcomes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.attempts:
            out[f"{a.kind}:{a.outcome}"] = out.get(f"{a.kind}:{a.outcome}", 0) + 1
        return out


def check_acknowledged(history: History, scan: GraphScan, keys: list[tuple[str, str, str]]) -> tuple[int, list[str]]:
    """(edges checked, problems): each edge whose last attempt was acknowledged, unless a
    delete of one of its ends was attempted meanwhile or after."""
    problems: list[str] = []
    checked = 0
    edges = scan.edges()
    held_in = {r.key for rows in scan.rows.values() for r in rows if r.in_state is not None}
    for key in keys:
        tried = history.of(key)
        if not tried or tried[-1].outcome != "acked":
            continue
        last = tried[-1]
        touched = [a for end in (key[0], key[2]) for a in history.of((end,)) if a.kind == "delete" and a.finished > last.started]
        if touched:
            continue
        checked += 1
        if last.kind == "put":
            if key[0] not in scan.vertices or key[2] not in scan.vertices:
                problems.append(f"acknowledged put of {key}, no delete of its ends since, yet an end is missing")
            elif key not in edges or key not in held_in:
                problems.append(f"acknowledged put of {key} at {last.started:.2f}s is gone: out-half {key in edges}, in-half {key in held_in}")
        elif key in edges or key in held_in:
            problems.append(f"acknowledged delete of {key} at {last.started:.2f}s, yet it is there: out {key in edges}, in {key in held_in}")
    return checked, problems


def check_vertices(history: History, scan: GraphScan, ids: list[str]) -> tuple[int, list[str]]:
    """(vertices checked, problems): each vertex whose last attempt (of one writer, in
    order) was acknowledged is there after a put and gone after a delete."""
    problems: list[str] = []
    checked = 0
    for vid in ids:
        tried = history.of((vid,))
        if not tried or tried[-1].outcome != "acked":
            continue
        checked += 1
        last = tried[-1]
        if (last.kind == "put") != (vid in scan.vertices):
            problems.append(f"acknowledged {last.kind} of vertex {vid!r} at {last.started:.2f}s, yet it is {'gone' if last.kind == 'put' else 'there'}")
    return checked, problems
