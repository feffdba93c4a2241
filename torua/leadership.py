"""Who leads the coordinators, as pure decisions over plain numbers.

One coordinator leads; the others stand by. The lead is a key in a JetStream KV
bucket whose entries expire after `lease` seconds (the bucket's max age):

- a standby *campaigns* by creating the key; only one create can succeed while
  the key exists, and it exists until the leader deletes it or stops renewing it;
- the leader *renews* by compare-and-set on the revision it last wrote; a failed
  compare-and-set means someone else leads now, and it steps down at once;
- the leader acts only until ``renew_sent_at + lease - margin`` on its own
  monotonic clock, counted from when it *sent* its last successful renewal. The
  server counts the expiry from when it *stored* that renewal, which is later,
  so the old leader has stopped before the key can expire and a standby create
  it (clocks running at similar rates; see docs/design/coordinator-ha.md).

The *term* is the revision at which the leader created the key: it only grows.
Every coordinator -> node message carries it and a node refuses one below the
highest it has seen (`accept_term`), so a deposed leader that wakes up late
cannot steer a node.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LeaderTiming:
    lease: float  # seconds the key lives without renewal
    margin: float  # the leader stops this much before its lease runs out

    @property
    def renew_every(self) -> float:
        """A leader renews three times per lease, so one lost renewal costs nothing."""
        return self.lease / 3

    @property
    def campaign_every(self) -> float:
        """How often a standby tries to take the lead."""
        return min(0.5, self.lease / 4)

    @classmethod
    def for_lease(cls, lease: float) -> "LeaderTiming":
        return cls(lease=lease, margin=min(0.5, lease / 10))


def leads_until(renew_sent_at: float, timing: LeaderTiming) -> float:
    """Until when (monotonic) a leader whose last successful renewal was sent at
    `renew_sent_at` may act.

    >>> leads_until(100.0, LeaderTiming(lease=3.0, margin=0.3))
    102.7
    """
    return renew_sent_at + timing.lease - timing.margin


def leader_step(now: float, renew_sent_at: float, last_attempt_at: float, timing: LeaderTiming) -> str:
    """What a leader does now: ``step_down`` (its lease may be gone), ``renew``
    (a renewal is due), or ``wait``."""
    if now >= leads_until(renew_sent_at, timing):
        return "step_down"
    if now - last_attempt_at >= timing.renew_every:
        return "renew"
    return "wait"


def accept_term(highest_seen: int, term: int) -> bool:
    """May a node follow a coordinator message of `term`? Only if no later leader
    has spoken to it. Term 0 is a message from a coordinator without a term
    (never sent by this version); it is accepted only before any term is known."""
    return term >= highest_seen
