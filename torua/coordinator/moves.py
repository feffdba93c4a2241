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

from torua.protocol.vocabulary import MovePhase


class IllegalMoveStep(Exception):
    pass


PHASES: dict[tuple[MovePhase, str], MovePhase] = {
    (MovePhase.COPYING, "ok"): MovePhase.FREEZING,
    (MovePhase.FREEZING, "ok"): MovePhase.CATCHING_UP,
    (MovePhase.CATCHING_UP, "ok"): MovePhase.SWITCHING,
    (MovePhase.SWITCHING, "ok"): MovePhase.DROPPING,
    (MovePhase.DROPPING, "ok"): MovePhase.DONE,
    (MovePhase.DROPPING, "failed"): MovePhase.DONE,  # the source keeps a retired copy; it is dropped later
    (MovePhase.COPYING, "failed"): MovePhase.ABORTING,
    (MovePhase.FREEZING, "failed"): MovePhase.ABORTING,
    (MovePhase.CATCHING_UP, "failed"): MovePhase.ABORTING,
    (MovePhase.SWITCHING, "failed"): MovePhase.ABORTING,
    (MovePhase.ABORTING, "ok"): MovePhase.ABORTED,
    (MovePhase.ABORTING, "failed"): MovePhase.ABORTED,
}


def next_phase(phase: MovePhase, outcome: str) -> MovePhase:
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
    phase: MovePhase = MovePhase.COPYING
    reason: str = "rebalance"
    until_seq: int = 0

    def advance(self, outcome: str) -> MovePhase:
        self.phase = next_phase(self.phase, outcome)
        return self.phase
