"""Keeping replicated shards whole: failover when a primary's node turns
unhealthy, planned hand-offs, and stepping every shard toward its placement
target (`replica_plan`). Decisions are pure (`replication.promotion`,
`coordinator.replica_plan`); this module performs them through the leader's
narrow interface (`torua.coordinator.ports.ReplicaLeader`: map writes, node
commands, tasks, leases). It owns which shards are failing over (no lease is
granted for them meanwhile) and when it next steps shards toward the target.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Coroutine

from torua.coordinator import shardmap
from torua.coordinator.ports import Clock, ReplicaLeader
from torua.coordinator.replica_plan import plan_replica_changes, target_for
from torua.protocol.messages import ShardCommand, ShardMap
from torua.protocol.vocabulary import NodeHealth
from torua.replication.promotion import choose_primary
from torua.replication.rejoin import record_promotion

log = logging.getLogger("torua.coordinator")


class ReplicaKeeper:
    def __init__(self, leader: ReplicaLeader, clock: Clock = time.monotonic) -> None:
        self.c = leader
        self.clock = clock
        self._failing_over: set[int] = set()  # shards whose primary is being changed now
        self._next_reconcile = 0.0  # (clock) reconcile does nothing before then

    @property
    def failing_over(self) -> frozenset[int]:
        """Shards whose primary is being changed (failover or hand-off): their old
        primary gets no lease for them meanwhile."""
        return frozenset(self._failing_over)

    def reconcile_soon(self) -> None:
        """Step shards toward the target at the next tick, not one interval later."""
        self._next_reconcile = 0.0

    def _start(self, shard_id: int, change: Coroutine[Any, Any, None]) -> None:
        """From here on the shard's old primary gets no lease; `change` ends it."""
        self._failing_over.add(shard_id)
        self.c.spawn(change)

    def start_handoff(self, shard_id: int, candidates: list[str]) -> bool:
        """A planned hand-off of the shard's primary to one of `candidates`, unless
        its primary is being changed already (False)."""
        if shard_id in self._failing_over:
            return False
        self._start(shard_id, self.handoff(shard_id, candidates))
        return True

    def fail_over(self) -> None:
        """Promote an in-sync replica for every shard whose primary is unhealthy, once
        any lease its node may hold has run out (the leader's `leases`); hand off every
        shard whose primary's healthy node says it does not have it (copy_reports)."""
        assert self.c.map is not None
        health = self.c.health()
        missing = self.c.copies_missing()
        now = self.clock()
        for e in self.c.map.shards:
            if e.primary is None or e.shard_id in self._failing_over or e.shard_id in self.c.moves:
                continue
            not_served = e.shard_id in missing.get(e.primary, ())
            if health.get(e.primary) != NodeHealth.UNHEALTHY and not not_served:
                continue
            candidates = [n for n in e.in_sync if n != e.primary and health.get(n) == NodeHealth.HEALTHY and e.shard_id not in missing.get(n, ())]
            if not candidates:
                continue
            if not_served:
                log.warning("shard %d: its primary %s says it does not have it; handing it to %s", e.shard_id, e.primary, candidates, extra={"shard": e.shard_id})
                self._start(e.shard_id, self.handoff(e.shard_id, candidates))
            elif self.c.leases.held_until(e.primary, e.shard_id) <= now:
                # From here on this node gets no lease for the shard, even if it beats again.
                self._start(e.shard_id, self.promote(e.shard_id, candidates))

    async def drop_missing_from_in_sync(self) -> None:
        """Take out of the in-sync set every replica whose node says it does not have
        it whole (recreated empty, copied again, or gone): it may miss writes, so it
        must neither count for them nor be promoted. Its primary puts it back once it
        has caught up (Replication.serve_fetch)."""
        assert self.c.map is not None
        missing = self.c.copies_missing()
        drops = [
            (e.shard_id, n)
            for e in self.c.map.shards
            for n in e.in_sync
            if n != e.primary and e.shard_id in missing.get(n, ()) and e.shard_id not in self._failing_over
        ]
        if not drops:
            return

        def drop(m: ShardMap | None) -> ShardMap | None:
            assert m is not None
            for shard_id, node_id in drops:
                e = m.shards[shard_id]
                if node_id != e.primary and node_id in e.in_sync:
                    m = shardmap.set_entry(m, shard_id, in_sync=[n for n in e.in_sync if n != node_id])
            return m

        log.warning("taking copies their nodes do not have whole out of the in-sync sets: %s", ", ".join(f"shard {s} on {n}" for s, n in drops))
        await self.c.update_map(drop)

    async def promote(self, shard_id: int, candidates: list[str], leaving: str | None = None) -> None:
        try:
            last_seqs: dict[str, int] = {}
            for node_id in candidates:
                try:
                    reply = await self.c.command(node_id, "shard.position", ShardCommand(shard_id, 0), timeout=1.0)
                    last_seqs[node_id] = reply.last_seq
                except Exception as exc:
                    log.warning("failover of shard %d: %s did not say its position: %s", shard_id, node_id, exc, extra={"shard": shard_id})
            if not last_seqs:
                return
            health = self.c.health()
            if leaving is not None:
                health[leaving] = "leaving"  # a planned hand-off: the old primary may be healthy

            def promote(m: ShardMap | None) -> ShardMap | None:
                assert m is not None
                e = m.shards[shard_id]
                new = choose_primary(e.primary, e.in_sync, health, last_seqs)
                if new is None or new == e.primary or new not in last_seqs:
                    return m
                old = e.primary
                replicas = ([old] if old else []) + [r for r in e.replicas if r not in (new, old)]
                in_sync = [new] + [n for n in e.in_sync if n not in (new, old)]
                promotions = record_promotion(list(e.promotions), m.epoch + 1, last_seqs[new])
                log.info("failover: shard %d primary %s -> %s at seq %d", shard_id, old, new, last_seqs[new], extra={"shard": shard_id, "epoch": m.epoch + 1})
                return shardmap.set_entry(m, shard_id, primary=new, replicas=replicas, in_sync=in_sync, promotions=promotions)

            await self.c.update_map(promote)
        finally:
            self._failing_over.discard(shard_id)

    async def handoff(self, shard_id: int, candidates: list[str]) -> None:
        """Planned primary change (the old node is leaving): stop renewing the old
        primary's lease (the caller put the shard in `failing_over`), wait until any
        lease it may hold has run out (the leader's `leases`), then promote."""
        try:
            assert self.c.map is not None
            old = self.c.map.shards[shard_id].primary
            if old is not None:
                await self.lease_ended(old, shard_id)
            await self.promote(shard_id, candidates, leaving=old)
        finally:
            self._failing_over.discard(shard_id)

    async def lease_ended(self, node_id: str, shard_id: int) -> None:
        """Return once `node_id` can no longer hold a lease for `shard_id`. The bound
        only falls while the shard is in `failing_over` (no new grant includes it),
        and each heartbeat can bring it closer, so wait in short steps."""
        while True:
            left = self.c.leases.held_until(node_id, shard_id) - self.clock()
            if left <= 0:
                return
            await asyncio.sleep(min(left, max(0.05, self.c.config.heartbeat_interval / 4)))

    def hand_off_primaries(self, node_id: str) -> int:
        """Start handing every primary of `node_id` to an in-sync replica on a healthy node."""
        assert self.c.map is not None
        health = self.c.health()
        started = 0
        for e in self.c.map.shards:
            if e.primary != node_id or e.shard_id in self._failing_over:
                continue
            candidates = [n for n in e.in_sync if n != node_id and health.get(n) == NodeHealth.HEALTHY]
            if candidates:
                self._start(e.shard_id, self.handoff(e.shard_id, candidates))
                started += 1
        return started


    def replicated(self) -> bool:
        assert self.c.map is not None
        return self.c.map.replication_factor > 1 or any(e.replicas for e in self.c.map.shards)

    async def reconcile(self) -> None:
        """Step every replicated shard toward the placement target (see replica_plan)."""
        now = self.clock()
        if now < self._next_reconcile or self._failing_over:
            return
        self._next_reconcile = now + self.c.config.heartbeat_interval
        assert self.c.map is not None
        health = self.c.health()
        target = target_for(self.c.map, self.c.node_views(), max_handoffs=self.c.config.max_moves)
        changes = plan_replica_changes(self.c.map, target, health, self.c.config.max_moves)
        log.debug("reconcile: target %s -> %s", target, changes)
        if changes.empty():
            return

        def apply(m: ShardMap | None) -> ShardMap | None:
            assert m is not None
            for shard_id, nodes in changes.adds.items():
                e = m.shards[shard_id]
                m = shardmap.set_entry(m, shard_id, replicas=e.replicas + [n for n in nodes if n not in e.replicas])
            for shard_id, nodes in changes.removes.items():
                e = m.shards[shard_id]
                m = shardmap.set_entry(
                    m, shard_id, replicas=[r for r in e.replicas if r not in nodes], in_sync=[n for n in e.in_sync if n not in nodes]
                )
            return m

        if changes.adds or changes.removes:
            log.info("replicas: adding %s, removing %s", changes.adds, changes.removes)
            await self.c.update_map(apply)
        for shard_id, new_primary in changes.handoffs.items():
            if shard_id not in self._failing_over:
                log.info("hand-off: shard %d primary -> %s", shard_id, new_primary, extra={"shard": shard_id})
                self._start(shard_id, self.handoff(shard_id, [new_primary]))
