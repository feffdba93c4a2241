"""The follower engines of one shard copy, as its writer drives them (in the writer's
thread only): what each has applied, catching them up with the log on open, handing
them their committed operations, and how far the log may be trimmed without losing
an operation one of them still needs (`torua.storage.engine.FollowerEngine`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Mapping, Sequence

from torua.storage.engine import EngineOutOfStep, FollowerEngine
from torua.storage.operations import OPERATION_ENGINES, Operation, decode_operation, operation_type

log = logging.getLogger("torua.storage")

_REPLAY_PAGE = 1000  # log rows read at a time when a follower catches up on open

Unapplied = dict[str, list[tuple[int, Operation]]]  # follower -> ops committed, not applied yet


class Followers:
    def __init__(self, shard_id: int, engines: Sequence[FollowerEngine]) -> None:
        self.shard_id = shard_id
        self.engines = list(engines)
        self.applied: dict[str, int] = {}  # each one's applied_seq, as it recorded it

    def catch_up(self, conn: sqlite3.Connection, base_seq: int, last_seq: int, held: Mapping[str, int]) -> None:
        """On open: give each follower holding data (`held`: the seq its data starts after)
        the logged ops after its applied_seq; `EngineOutOfStep` if its data does not fit
        the log."""
        for follower in self.engines:
            applied = follower.applied_seq()
            if follower.name not in held:  # none of the log is its
                self.applied[follower.name] = applied or 0
                continue
            if applied is None:  # no files: everything it holds comes after its first op or chunk
                applied = held[follower.name]
            if not base_seq <= applied <= last_seq:
                raise EngineOutOfStep(
                    f"shard {self.shard_id}: the {follower.name} engine has applied up to seq {applied}, "
                    f"but the log holds seqs {base_seq + 1} to {last_seq}"
                )
            replayed = after = applied
            while True:
                rows = conn.execute("SELECT seq, op FROM oplog WHERE seq > ? ORDER BY seq LIMIT ?", (after, _REPLAY_PAGE)).fetchall()
                if not rows:
                    break
                mine = [(int(seq), decode_operation(blob)) for seq, blob in rows if follower.name in OPERATION_ENGINES.get(operation_type(blob) or "", ())]
                after = int(rows[-1][0])
                if mine:
                    follower.apply(mine, through=after)
                    replayed = after
            if replayed > applied:
                log.info("shard %d: the %s engine caught up with the log from seq %d to %d", self.shard_id, follower.name, applied, replayed)
            self.applied[follower.name] = replayed

    def apply(self, unapplied: Unapplied, through: int) -> dict[str, Exception]:
        """After a commit: hand each follower its ops (up to `through`, the committed end of
        the log); those it applied leave `unapplied`. Returns the followers that failed."""
        failed: dict[str, Exception] = {}
        for follower in self.engines:
            ops = unapplied[follower.name]
            if not ops:
                continue
            try:
                follower.apply(list(ops), through=through)
            except Exception as exc:
                log.error("shard %d: the %s engine could not apply ops %d to %d: %s; they stay pending", self.shard_id, follower.name, ops[0][0], ops[-1][0], exc)
                failed[follower.name] = exc
                continue
            self.applied[follower.name] = through
            unapplied[follower.name] = []
        return failed

    def trim_bound(self, cut: int, committed: int, held: Collection[str], unapplied: Unapplied) -> tuple[int, list[FollowerEngine]]:
        """How far the log may be trimmed (at most `cut`): never past an op a follower has not
        applied. Also the followers whose applied_seq must first move up to the cut (only
        ever to a `committed` seq), so that a reopen finds them within the log."""
        holding = [f for f in self.engines if f.name in held]
        for follower in holding:
            pending = unapplied[follower.name]
            if pending:
                cut = min(cut, pending[0][0] - 1)
        behind = [f for f in holding if self.applied[f.name] < cut]
        if behind:
            cut = min(cut, committed)
        return cut, behind

    def move_to(self, followers: Sequence[FollowerEngine], seq: int) -> None:
        """Record `seq` as what `followers` have applied (they hold no op up to it that they
        have not: the ops in between are other engines', or a snapshot holds them)."""
        for follower in followers:
            follower.apply([], through=seq)
            self.applied[follower.name] = seq

    def finish(self, held: Collection[str], unapplied: Unapplied, last_seq: int) -> None:
        """At close: apply what is pending, and move each follower to the end of the log,
        so that the next open has nothing to replay."""
        self.apply(unapplied, last_seq)
        for follower in self.engines:
            name = follower.name
            if name in held and not unapplied[name] and self.applied[name] < last_seq:
                try:
                    self.move_to([follower], last_seq)
                except Exception as exc:
                    log.warning("shard %d: the %s engine could not record seq %d: %s", self.shard_id, name, last_seq, exc)
