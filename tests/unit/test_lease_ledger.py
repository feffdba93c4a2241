"""The coordinator's bound on the leases nodes hold: tables, then a randomized model
of a node (newest grant wins) against the ledger: the bound is never below what
the node really holds (safety), and it falls to the short lease once the node has
taken a short grant and said so (the bound follows what nodes hold)."""

from __future__ import annotations

import math
import random

import pytest

from torua.replication.lease import renewed
from torua.replication.lease_ledger import LeaseLedger


def test_nothing_granted_nothing_held():
    assert LeaseLedger().held_until("n1", 0) == -math.inf
    assert LeaseLedger().left(100.0) == {}


def test_a_grant_holds_until_it_expires():
    book = LeaseLedger()
    book.granted("n1", 1.0, 1, [0, 1], until=102.0)
    assert book.held_until("n1", 0) == 102.0
    assert book.held_until("n1", 1) == 102.0
    assert book.held_until("n1", 2) == -math.inf
    assert book.held_until("n2", 0) == -math.inf
    assert book.left(101.0) == {"n1": pytest.approx(1.0)}
    book.expire(102.0)
    assert book.held_until("n1") == -math.inf


def test_a_long_grant_is_forgotten_once_the_node_took_a_newer_one():
    book = LeaseLedger()
    book.granted("n1", 1.0, 1, [0], until=6000.0)  # timing was 60 s x 100
    book.granted("n1", 1.0, 2, [0], until=104.0)  # back to 1 s x 3
    assert book.held_until("n1", 0) == 6000.0  # the node may not have the short one yet
    book.reported("n1", 1.0, beat=3, grant_beat=2, lease_left={0: 1.2}, now=103.0)
    assert book.held_until("n1", 0) == pytest.approx(104.2)


def test_a_report_keeps_the_grants_the_node_has_not_taken_yet():
    book = LeaseLedger()
    book.granted("n1", 1.0, 4, [0], until=110.0)
    book.granted("n1", 1.0, 5, [0], until=111.0)
    book.reported("n1", 1.0, beat=6, grant_beat=4, lease_left={0: 2.0}, now=106.0)
    assert book.held_until("n1", 0) == 111.0  # the reply to beat 5 may still arrive


def test_an_overtaken_report_changes_nothing():
    book = LeaseLedger()
    book.reported("n1", 1.0, beat=9, grant_beat=8, lease_left={0: 1.0}, now=100.0)
    book.reported("n1", 1.0, beat=7, grant_beat=6, lease_left={0: 50.0}, now=100.5)
    assert book.held_until("n1", 0) == 101.0


def test_a_node_of_an_older_release_is_never_pruned():
    book = LeaseLedger()
    book.granted("n1", 1.0, 0, [0], until=6000.0)
    book.reported("n1", 1.0, beat=0, grant_beat=0, lease_left={}, now=100.0)
    assert book.held_until("n1", 0) == 6000.0  # its leases never shorten: wait the grant out


def test_a_restarted_node_does_not_prune_its_old_incarnation():
    book = LeaseLedger()
    book.granted("n1", 1.0, 50, [0], until=200.0)  # the old process, maybe only paused
    book.reported("n1", 2.0, beat=60, grant_beat=55, lease_left={}, now=100.0)
    assert book.held_until("n1", 0) == 200.0


def test_the_floor_covers_an_earlier_leaders_grants():
    book = LeaseLedger(floor=103.0)
    assert book.held_until("n7", 4) == 103.0
    book.expire(103.0)
    assert book.held_until("n7", 4) == -math.inf


# ------------------------------------------------------------------ a model


class ModelNode:
    """A node's leases as Node._beat keeps them: replies to heartbeats older than the
    newest taken are dropped, the newest grant wins."""

    def __init__(self, incarnation: float) -> None:
        self.incarnation = incarnation
        self.seq = 0
        self.taken = 0
        self.leases: dict[int, float] = {}
        self.sent: dict[int, float] = {}

    def beat(self, now: float) -> tuple[int, int, dict[int, float]]:
        self.seq += 1
        self.sent[self.seq] = now
        left = {s: until - now for s, until in self.leases.items() if until > now}
        return self.seq, self.taken, left

    def take(self, beat: int, shards: list[int], seconds: float) -> None:
        if beat <= self.taken:
            return
        self.taken = beat
        own = {s: 1 for s in shards}
        self.leases = renewed(self.leases, self.sent[beat], own, own, seconds)


@pytest.mark.parametrize("seed", range(40))
def test_the_bound_is_never_below_what_the_node_holds(seed):
    rng = random.Random(seed)
    node = ModelNode(incarnation=1.0)
    book = LeaseLedger()
    in_flight: list[tuple[float, int, list[int], float]] = []  # (arrives, beat, shards, seconds)
    now = 0.0
    seconds = 5940.0 if rng.random() < 0.5 else 2.0
    for _ in range(200):
        now += rng.uniform(0.0, 1.5)
        if rng.random() < 0.1:
            seconds = rng.choice([2.0, 1.0, 5940.0, 30.0])  # the operator changes the timing
        # heartbeats reach the coordinator (maybe late), which answers at once
        if rng.random() < 0.6:
            beat, taken, left = node.beat(now)
            received = now + rng.uniform(0.0, 0.5)
            book.reported("n1", node.incarnation, beat, taken, left, received)
            shards = sorted(rng.sample([0, 1, 2], rng.randint(0, 3)))
            book.granted("n1", node.incarnation, beat, shards, until=received + seconds)
            if rng.random() < 0.85:  # some replies are lost
                in_flight.append((received + rng.uniform(0.0, 2.0), beat, shards, seconds))
        # replies arrive in any order
        rng.shuffle(in_flight)
        for item in [i for i in in_flight if i[0] <= now]:
            in_flight.remove(item)
            node.take(item[1], item[2], item[3])
        book.expire(now)
        for shard, until in node.leases.items():
            if until > now:
                assert book.held_until("n1", shard) >= until, (seed, shard)


def test_the_bound_falls_once_the_node_took_a_short_grant():
    node = ModelNode(incarnation=1.0)
    book = LeaseLedger()
    now = 0.0
    beat, taken, left = node.beat(now)
    book.reported("n1", 1.0, beat, taken, left, now)
    book.granted("n1", 1.0, beat, [0], until=now + 5940.0)
    node.take(beat, [0], 5940.0)
    now = 10.0  # the timing is switched back to 1 s x 3
    beat, taken, left = node.beat(now)
    book.reported("n1", 1.0, beat, taken, left, now)
    book.granted("n1", 1.0, beat, [0], until=now + 2.0)
    assert book.held_until("n1", 0) == pytest.approx(5940.0)  # not taken yet, as far as we know
    node.take(beat, [0], 2.0)
    now = 11.0
    beat, taken, left = node.beat(now)
    book.reported("n1", 1.0, beat, taken, left, now)
    assert book.held_until("n1", 0) == pytest.approx(12.0)
