"""What a copy must do to follow a (new) primary: catch up from its log, or copy again.

A copy's log is a prefix of its primary's while it is in sync. After a promotion
the new primary's log equals the old history only up to ``promoted_at_seq`` (the
seq the promoted replica had); anything a copy holds beyond it is an unacknowledged
tail of the old primary, and KV ops cannot be undone in place. So:

- no local copy: recopy (snapshot, then log).
- local last seq above ``promoted_at_seq``: recopy (divergent tail).
- local last seq below the primary's log base: recopy (the ops it needs are gone;
  the primary's log holds exactly the ops with ``base_seq < seq <= last_seq``).
- otherwise: catch_up, pulling the ops after its last seq from the primary's log.

``promoted_at_seq`` must be the *lowest* ``promoted_at_seq`` of every promotion since
the shard epoch at which this copy was last in step (`agreed_seq`): after two
promotions the current history may differ from the copy's from the first one on.
None means no promotion since, so the copy cannot have diverged.

>>> rejoin_plan(local_last_seq=120, promoted_at_seq=118, primary_log_base=50)
'recopy'
>>> rejoin_plan(local_last_seq=118, promoted_at_seq=118, primary_log_base=50)
'catch_up'
"""

from __future__ import annotations

from collections.abc import Mapping


def agreed_seq(copy_shard_epoch: int, promotions: Mapping[int, int]) -> int | None:
    """Up to which seq the current primary's log surely equals a copy that was last
    in step at `copy_shard_epoch`: the lowest ``promoted_at_seq`` of the promotions
    (shard epoch -> promoted_at_seq) after it; None if there was none.

    >>> agreed_seq(5, {4: 90, 6: 118, 9: 130})
    118
    """
    later = [seq for epoch, seq in promotions.items() if epoch > copy_shard_epoch]
    return min(later) if later else None


def record_promotion(promotions: list[tuple[int, int]], shard_epoch: int, seq: int, keep: int = 8) -> list[tuple[int, int]]:
    """Add a promotion (at `shard_epoch`, new primary's last `seq`) to a shard's
    history, keeping at most `keep` entries.

    Older entries are merged rather than dropped: the oldest two become one at the
    later of their epochs with the lower of their seqs. `agreed_seq` then never
    answers higher than the full history would, so a copy away for longer than the
    kept history re-copies when unsure, and never catches up over a divergent tail.

    >>> record_promotion([(3, 40), (6, 118)], 9, 130, keep=2)
    [(6, 40), (9, 130)]
    """
    history = sorted(list(promotions) + [(shard_epoch, seq)])
    while len(history) > max(1, keep):
        (_, first_seq), (second_epoch, second_seq) = history[0], history[1]
        history[:2] = [(second_epoch, min(first_seq, second_seq))]
    return history


def rejoin_plan(local_last_seq: int | None, promoted_at_seq: int | None, primary_log_base: int) -> str:
    """catch_up | recopy."""
    if local_last_seq is None:
        return "recopy"
    if promoted_at_seq is not None and local_last_seq > promoted_at_seq:
        return "recopy"
    if local_last_seq < primary_log_base:
        return "recopy"
    return "catch_up"


# How long a copy that told a failover its position keeps itself whole while it waits
# for the map that says who leads now (a failover that never completes frees it then).
POSITION_HOLD_S = 10.0


def may_recopy(
    told_position_at_epoch: int | None, map_epoch: int, told_at: float, now: float, hold_s: float = POSITION_HOLD_S,
    told_primary: str | None = None, primary: str | None = None,
) -> bool:
    """May a replica destroy its copy to copy it again (its primary said `diverged` or
    `truncated`)? Not while a failover may be promoting it: after it answered
    `shard.position` (or froze for a hand-off) at map epoch `told_position_at_epoch`,
    when its shard's primary was `told_primary`, it waits for a newer map that names
    another primary (which makes it primary, and stops its follower, or names another),
    or `hold_s`. A newer map that still names the same primary is another shard's
    change (two failovers at once: a node paused under load led both), not this
    failover's outcome. Re-copying at once lost the data of a copy promoted a moment later.

    >>> may_recopy(None, 7, 0.0, 100.0)
    True
    >>> may_recopy(7, 7, 99.0, 100.0)   # told its position at epoch 7, no newer map yet
    False
    >>> may_recopy(7, 8, 99.0, 100.0, told_primary="n1", primary="n2")   # the failover's map came, and it is still a replica
    True
    >>> may_recopy(7, 8, 99.0, 100.0, told_primary="n1", primary="n1")   # a newer map, the same primary: the failover may be on its way
    False
    >>> may_recopy(7, 7, 80.0, 100.0)   # no newer map within the hold
    True
    """
    if told_position_at_epoch is None:
        return True
    newer = map_epoch > told_position_at_epoch and (told_primary is None or primary != told_primary)
    return newer or now - told_at >= hold_s
