"""Moving hot shards: the coordinator's driver around `load_balance`.

It copies plain data out of the coordinator (the map, per-shard rates from the
latest heartbeats, the nodes that may take part), asks `load_balance` what to
do, and does it with the machinery that already exists: copy moves go on the
coordinator's move queue (with one copy per shard), primary changes are
planned hand-offs (`ReplicaKeeper.start_handoff`, with replicas). What it may
ask of the leader is `torua.coordinator.ports.LoadLeader`, of the replica keeper
`ports.Handoffs`.

It decides only when nothing else changes the placement (no move queued or
running, no hand-off, no replica catching up, count-based placement content)
and the rates have had `settle` seconds to show the last change. Asked through
the API (`POST /cluster/rebalance`) it plans up to `MANUAL_ACTIONS` actions at
once; with `auto_rebalance` on it takes one action every `AUTO_EVERY`
heartbeats at most.
"""

from __future__ import annotations

import logging
import time

from torua.coordinator import shardmap
from torua.coordinator.load_balance import PRIMARY, Decision, LoadView, Policy, hold_reason, node_loads, plan
from torua.coordinator.placement import takes_new_copies
from torua.coordinator.ports import Clock, Handoffs, LoadLeader
from torua.coordinator.replica_plan import catching_up, plan_replica_changes, target_for
from torua.protocol.messages import LoadAction, RebalanceReply, RebalanceRequest
from torua.protocol.vocabulary import ShardState

log = logging.getLogger("torua.coordinator.load")

MANUAL_ACTIONS = 4  # actions one API call may take
AUTO_EVERY = 10  # heartbeats between automatic decisions, at least
COOLDOWN_HEARTBEATS = 60  # a moved shard stays put this long (and at least MIN_COOLDOWN seconds)
MIN_COOLDOWN = 30.0
# A node's rate meter reads a fresh copy right after a second of traffic
# (torua.node.rates min_span); a few heartbeats more carry it here.
SETTLE_SECONDS = 1.5
SETTLE_HEARTBEATS = 3


class LoadMoves:
    def __init__(self, leader: LoadLeader, handoffs: Handoffs, clock: Clock = time.monotonic) -> None:
        self.c = leader
        self.handoffs = handoffs
        self.clock = clock
        self.moved: dict[int, float] = {}  # shard -> when a load action last moved it (clock)
        self.quiet_since = clock()  # last time something changed the placement
        self.next_auto = 0.0

    # ------------------------------------------------------------ inputs

    def eligible(self) -> dict[str, int | None]:
        """Nodes that may give and take load: healthy, not leaving, not in
        maintenance, disk below the low watermark."""
        return {v.id: v.max_shards for v in self.c.node_views() if takes_new_copies(v)}

    def shard_rates(self) -> dict[int, float]:
        """Ops/s per shard: what its copies in the current map last reported."""
        assert self.c.map is not None
        holders = {e.shard_id: set(e.copies) for e in self.c.map.shards}
        rates = {s: 0.0 for s in holders}
        for node_id, reports in self.c.healthy_reports().items():
            for report in reports:
                if node_id in holders.get(report.shard_id, ()):
                    rates[report.shard_id] += report.ops_rate
        return rates

    def view(self) -> LoadView:
        assert self.c.map is not None
        m = self.c.map
        return LoadView(
            placement=shardmap.placement_of(m),
            rates=self.shard_rates(),
            nodes=self.eligible(),
            replicated=self.handoffs.replicated(),
            in_sync={e.shard_id: tuple(e.in_sync) for e in m.shards},
        )

    def policy(self) -> Policy:
        hb = self.c.config.heartbeat_interval
        tolerance = self.c.settings.rebalance_tolerance
        return Policy(tolerance=tolerance, cooldown=max(MIN_COOLDOWN, COOLDOWN_HEARTBEATS * hb))

    def _busy(self) -> tuple[int, int, int, list[int], bool]:
        """(moves, hand-offs, replicas catching up, shards not active, placement due)"""
        c = self.c
        assert c.map is not None
        moves = c.moves_in_flight()
        unsettled = [e.shard_id for e in c.map.shards if e.state != ShardState.ACTIVE or e.target]
        if self.handoffs.replicated():
            lagging = catching_up(c.map, c.health())
            # Due when the replica executor would change something, as it plans it: a copy
            # to add or remove, or a primary to hand off (a leaving node's, or for count
            # balance, which load actions never upset: see load_balance).
            target = target_for(c.map, c.node_views(), max_handoffs=c.config.max_moves)
            due = not plan_replica_changes(c.map, target, c.health(), c.config.max_moves).empty()
        else:
            lagging, due = 0, c.replan_pending()
        return moves, len(self.handoffs.failing_over), lagging, unsettled, due

    def hold(self, now: float) -> str:
        """Why no decision may be taken now, or ""."""
        if self.c.map is None:
            return "busy: the cluster has not formed yet"
        busy = self._busy()
        if any(busy):
            self.quiet_since = now
        settle = SETTLE_SECONDS + SETTLE_HEARTBEATS * self.c.config.heartbeat_interval
        return hold_reason(*busy, quiet_for=now - self.quiet_since, settle=settle)

    # ------------------------------------------------------------ decisions

    def start(self, decision: Decision, now: float) -> None:
        c = self.c
        for action in decision.actions:
            log.info("load rebalance: %s shard %d %s -> %s%s (%s)", action.kind, action.shard_id, action.source, action.target,
                     f", shard {action.swap_with} back" if action.swap_with is not None else "", decision.reason)
            for shard_id, source, target in action.steps():
                self.moved[shard_id] = now
                if action.how == PRIMARY:
                    self.handoffs.start_handoff(shard_id, [target])
                else:
                    c.queue_move(shard_id, source, target)
        if decision.actions:
            self.quiet_since = now
            if not self.handoffs.replicated():
                # Once the moves are done, count-based placement checks the result
                # (it moves nothing when the counts are balanced, as load moves keep them).
                c.replan_soon()

    async def rebalance(self, request: RebalanceRequest) -> RebalanceReply:
        """The API call: decide now and, unless a dry run, start the actions."""
        now = self.clock()
        why = self.hold(now)
        if self.c.map is None:
            return RebalanceReply(actions=[], reason=why, started=False)
        view = self.view()
        if why:
            loads = node_loads(view)
            mean = sum(loads.values()) / len(loads) if loads else 0.0
            return reply_of(Decision((), why, loads, mean, mean * (1 + self.policy().tolerance), loads), view.rates, started=False)
        decision = plan(view, self.policy(), self.moved, now, MANUAL_ACTIONS)
        if not request.dry_run:
            self.start(decision, now)
        return reply_of(decision, view.rates, started=bool(decision.actions) and not request.dry_run)

    def tick(self) -> None:
        """Every coordinator tick: note whether the placement is changing; in auto
        mode, take one action every AUTO_EVERY heartbeats at most."""
        now = self.clock()
        if self.hold(now) or not self.c.settings.auto_rebalance or now < self.next_auto:
            return
        self.next_auto = now + AUTO_EVERY * self.c.config.heartbeat_interval
        decision = plan(self.view(), self.policy(), self.moved, now, 1)
        if decision.actions:
            self.start(decision, now)
        else:
            log.debug("load rebalance: %s", decision.reason)


def reply_of(decision: Decision, shard_rates: dict[int, float], started: bool) -> RebalanceReply:
    return RebalanceReply(
        actions=[LoadAction(a.how, a.shard_id, a.source, a.target, a.swap_with) for a in decision.actions],
        reason=decision.reason,
        started=started,
        loads={n: round(v, 3) for n, v in decision.loads.items()},
        mean=round(decision.mean, 3),
        threshold=round(decision.threshold, 3),
        expected={n: round(v, 3) for n, v in decision.expected.items()},
        shard_rates={s: round(r, 3) for s, r in shard_rates.items()},
    )
