"""What a writer attempted and what it was told, and whether a value read later
fits that history. Shared by the real-process fault-injection test and the
in-memory simulation.

Each writer owns its keys and names every operation by a sequence number that
only grows, so a value (``w{writer}:{seq}``) names exactly one attempted write.
A read may show the last acknowledged operation on its key or any operation
attempted after it (failed or timed out, so unknown); anything else is a
problem: LOST, PHANTOM, STALE or RESURRECTED.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VALUE = re.compile(r"^w(\d+):(\d+)$")


@dataclass
class Op:
    seq: int
    kind: str  # put | delete
    key: str
    value: bytes | None
    outcome: str = "pending"  # acked | failed (unknown: may or may not have happened)
    detail: str = ""
    started: float = 0.0
    finished: float = 0.0


def value_of(writer: int, seq: int) -> bytes:
    return f"w{writer}:{seq}".encode()


def allowed_outcomes(ops: list[Op]) -> tuple[Op | None, list[Op]]:
    """For one key's operations in seq order: the last acknowledged op and the ops
    attempted after it (all unknown). A read may show the effect of any of them."""
    last_acked = None
    for op in ops:
        if op.outcome == "acked":
            last_acked = op
    return last_acked, [op for op in ops if last_acked is None or op.seq > last_acked.seq]


def describe(op: Op | None) -> str:
    if op is None:
        return "none"
    what = f"{op.kind} seq {op.seq}" + (f" value {op.value.decode()}" if op.value else "")
    return f"{what} ({op.outcome}{': ' + op.detail if op.detail else ''}, sent {op.started:.2f}s, done {op.finished:.2f}s)"


def check_key(writer: int, attempted_ops: dict[int, Op], key: str, ops: list[Op], served: bytes | None) -> str | None:
    """What is wrong with `served` (None: absent) as the value of `key`, written only
    by `writer` whose attempts by seq are `attempted_ops` and whose ops on this key
    are `ops` (in seq order); None if nothing is."""
    last_acked, later = allowed_outcomes(ops)
    context = f"last acknowledged: {describe(last_acked)}; attempted after it: " + (", ".join(describe(op) for op in later) or "none")
    if served is None:
        # absent: fine if the last acked op is a delete, or nothing was acked and the
        # key may never have been written, or a later (unknown) delete happened
        if last_acked is None or last_acked.kind == "delete" or any(op.kind == "delete" for op in later):
            return None
        return f"LOST: {key} is absent but an acknowledged put was not superseded; {context}"
    m = VALUE.match(served.decode(errors="replace"))
    attempted = attempted_ops.get(int(m.group(2))) if m and int(m.group(1)) == writer else None
    if attempted is None or attempted.kind != "put" or attempted.key != key or attempted.value != served:
        return f"PHANTOM: {key} = {served!r}, never attempted for this key; {context}"
    if last_acked is None or attempted.seq >= last_acked.seq:
        return None  # the acknowledged put itself, or a put attempted after it
    kind = "RESURRECTED" if last_acked.kind == "delete" else "STALE"
    return f"{kind}: {key} = {served!r} ({describe(attempted)}) older than the acknowledged op; {context}"
