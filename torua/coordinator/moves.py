"""A shard move as an explicit sequence of phases.

    copying -> freezing -> catching_up -> switching -> dropping -> done
        \\__________\\____________\\___________> aborting -> aborted

`copying`: the target pulls a snapshot and the log from the source while the
source keeps serving. `freezing`: the source stops taking writes and reports its
last seq. `catching_up`: the target replays the log up to that seq. `switching`:
the map names the target primary at a new epoch. `dropping`: the source deletes
its copy. Any failure before `switching` completes aborts: the source is
unfrozen, the target's partial copy dropped, and the map is left as it was.
"""

from __future__ import annotations

from dataclasses import dataclass


class IllegalMoveStep(Exception):
    pass


PHASES: dict[tuple[str, str], str] = {
    ("copying", "ok"): "freezing",
    ("freezing", "ok"): "catching_up",
    ("catching_up", "ok"): "switching",
    ("switching", "ok"): "dropping",
    ("dropping", "ok"): "done",
    ("dropping", "failed"): "done",  # the source keeps a retired copy; it is dropped later
    ("copying", "failed"): "aborting",
    ("freezing", "failed"): "aborting",
    ("catching_up", "failed"): "aborting",
    ("switching", "failed"): "aborting",
    ("aborting", "ok"): "aborted",
    ("aborting", "failed"): "aborted",
}


def next_phase(phase: str, outcome: str) -> str:
    try:
        return PHASES[(phase, outcome)]
    except KeyError:
        raise IllegalMoveStep(f"no step from {phase} on {outcome}") from None


@dataclass
class Move:
    shard_id: int
    source: str
    target: str
    started_at: float
    phase: str = "copying"
    reason: str = "rebalance"
    until_seq: int = 0

    def advance(self, outcome: str) -> str:
        self.phase = next_phase(self.phase, outcome)
        return self.phase
