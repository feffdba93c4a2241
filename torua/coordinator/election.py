"""Coordinator election: the lead is a key in the JetStream KV bucket
`torua_leader`, whose entries expire after the lease (the bucket's max age).

`LeaderLease` does the KV calls; `CoordinatorProcess` runs the loop a
`torua coordinator` process lives in: stand by and campaign, and once elected
run a `Coordinator` (the leader's brain) until the lead is lost, then stand by
again. The decisions (when to renew, when to step down, which terms a node
accepts) are the pure functions of `torua.leadership`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from torua.bus import close_connection, connect
from torua.config import CoordinatorConfig
from torua.coordinator.metrics import CoordinatorSnapshot, coordinator_families
from torua.coordinator.service import Coordinator
from torua.coordinator.state_store import keep_replicas, keys_with_prefix
from torua.leadership import LeaderTiming, leader_step, leads_until
from torua.metrics import LiveCollector, metrics_server, registry_of
from torua.protocol import subjects
from torua.stopping import StopRequest, Stopped, bounded, unless_stopped

log = logging.getLogger("torua.coordinator.election")


@dataclass(frozen=True)
class Leader:
    id: str
    term: int
    since: float  # wall clock, for display


class LeaderLease:
    """The KV side of the election, for one coordinator."""

    def __init__(self, kv: KeyValue, js: JetStreamContext, coordinator_id: str, ttl: float) -> None:
        self._kv = kv
        self._js = js
        self.id = coordinator_id
        self.ttl = ttl  # how long the bucket keeps an entry: the lease every coordinator must time itself by
        self.term = 0  # the revision at which this coordinator created the key; 0 = not leading
        self._revision = 0
        self._since = time.time()

    @classmethod
    async def open(cls, nc: NATS, config: CoordinatorConfig) -> "LeaderLease":
        js = nc.jetstream()
        try:
            kv = await js.key_value(subjects.LEADER_BUCKET)
            ttl = (await kv.status()).ttl
            if not ttl:
                raise RuntimeError(f"bucket {subjects.LEADER_BUCKET} does not expire its entries; delete it so a coordinator makes it anew")
            if abs(ttl - config.leader_lease) > 1e-3:
                # The bucket decides when a lease is gone; timing ourselves by another
                # figure could let two coordinators lead at once.
                log.warning(
                    "bucket %s expires entries after %gs, not the configured leader_lease %gs; using %gs",
                    subjects.LEADER_BUCKET, ttl, config.leader_lease, ttl,
                )
            await keep_replicas(js, f"KV_{subjects.LEADER_BUCKET}", config.kv_replicas)
            return cls(kv, js, config.id, ttl)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                bucket=subjects.LEADER_BUCKET,
                ttl=config.leader_lease,
                history=1,
                replicas=config.kv_replicas,
                description="Torua coordinator leader lease",
            )
        return cls(kv, js, config.id, config.leader_lease)

    def _record(self) -> bytes:
        # The create carries term 0 (its revision is not known before it is written);
        # every renewal carries the term, the revision of that create.
        return json.dumps({"id": self.id, "term": self.term, "since": self._since}).encode()

    async def campaign(self) -> bool:
        """Try to take the lead; True if this coordinator leads now (at `self.term`)."""
        self.term, self._since = 0, time.time()
        try:
            revision = await self._kv.create(subjects.LEADER_KEY, self._record())
        except KeyWrongLastSequenceError:
            return False
        except KeyNotFoundError:
            # nats-py's create found the key held, then looked whether it was only
            # deleted and found it gone: it expired in between. Not leading yet; the
            # next campaign finds the key free.
            return False
        self.term = self._revision = revision
        return True

    async def renew(self) -> bool:
        """Extend the lead; False if another coordinator took it (or it expired)."""
        try:
            self._revision = await self._kv.update(subjects.LEADER_KEY, self._record(), last=self._revision)
            return True
        except KeyWrongLastSequenceError:
            return False
        except (NatsTimeout, asyncio.TimeoutError):
            # The write may have landed with no answer: if the key is still ours, carry on from it.
            leader = await self.leader()
            if leader is not None and leader.id == self.id and leader.term == self.term:
                try:
                    self._revision = await self._current_revision()
                except KeyNotFoundError:  # expired since
                    return False
                return True
            raise

    async def _current_revision(self) -> int:
        return (await self._kv.get(subjects.LEADER_KEY)).revision or 0

    async def resign(self) -> None:
        """Give the lead up now (a planned stop), so a standby need not wait for expiry."""
        if self.term:
            try:
                await self._kv.delete(subjects.LEADER_KEY, last=self._revision)
            except Exception as exc:  # someone else leads already, or NATS is gone
                log.info("could not resign the lead (%s); it expires on its own", exc)
        self.term = 0

    async def leader(self) -> Leader | None:
        try:
            entry = await self._kv.get(subjects.LEADER_KEY)
        except KeyNotFoundError:  # also KeyDeletedError, its subclass
            return None
        if not entry.value:
            return None
        try:
            record = json.loads(entry.value)
            term = int(record.get("term") or entry.revision or 0)  # not renewed yet: the create's revision
            return Leader(str(record["id"]), term, float(record.get("since", 0.0)))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable leader record in %s", subjects.LEADER_BUCKET)
            return None

    async def announce_standby(self) -> None:
        """Tell the leader (for /cluster/info) that this coordinator stands by; expires with the lease."""
        await self._kv.put(subjects.STANDBY_KEY_PREFIX + self.id, json.dumps({"id": self.id, "since": self._since}).encode())

    async def standbys(self) -> list[str]:
        prefix = subjects.STANDBY_KEY_PREFIX
        keys = await keys_with_prefix(self._js, subjects.LEADER_BUCKET, prefix)
        return [k[len(prefix):] for k in keys if k[len(prefix):] != self.id]


class CoordinatorProcess:
    """One `torua coordinator`: stands by, campaigns, and leads while it may."""

    def __init__(self, config: CoordinatorConfig, connect: Callable[..., Awaitable[Any]] = connect, stop: StopRequest | None = None) -> None:
        self.config = config
        self._connect = connect
        self.timing = LeaderTiming.for_lease(config.leader_lease)
        self.nc: NATS | None = None
        self.lease: LeaderLease | None = None
        self.brain: Coordinator | None = None  # while this process leads
        self._renew_sent_at = 0.0
        # set by SIGINT/SIGTERM (torua.stopping, installed by the caller before the first connect)
        self._stopping = stop.event if stop is not None else asyncio.Event()

    def may_act(self) -> bool:
        """The brain's check before every effect: does the lease still hold?"""
        return time.monotonic() < leads_until(self._renew_sent_at, self.timing)

    def snapshot(self) -> CoordinatorSnapshot:
        """Whether this process leads, its term, and then the cluster as its brain
        sees it (its /metrics: torua.coordinator.metrics)."""
        brain = self.brain
        leading = brain is not None and self.may_act()
        term = self.lease.term if self.lease is not None else 0
        return CoordinatorSnapshot(self.config.id, leading, term, brain.snapshot() if leading and brain is not None else None)

    async def run(self) -> None:
        try:
            connecting = self._connect(self.config.nats_url, f"torua-coordinator-{self.config.id}", self.config.connect_timeout, auth=self.config.nats_auth())
            self.nc = await unless_stopped(connecting, self._stopping)
        except Stopped:
            log.info("coordinator %s stopping before it connected", self.config.id)
            return
        try:
            self.lease = await self._open_lease()
            if self.lease is None:
                return
            self.timing = LeaderTiming.for_lease(self.lease.ttl)
            log.info("coordinator %s standing by (lease %gs)", self.config.id, self.timing.lease)
            while not self._stopping.is_set():
                if await self._campaign():
                    await self._lead()
                # after losing the lead too: a leader that could not take charge
                # (JetStream busy) must not spin through terms
                await self._pause(self.timing.campaign_every)
        finally:
            if self.nc is not None:
                await close_connection(self.nc)

    async def _open_lease(self) -> LeaderLease | None:
        """The lease bucket, retried while JetStream is not ready (a NATS cluster still
        forming answers "no suitable peers" or "temporarily unavailable" for a while)."""
        assert self.nc is not None
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            try:
                return await unless_stopped(asyncio.wait_for(LeaderLease.open(self.nc, self.config), 10), self._stopping)
            except Stopped:
                return None
            except Exception as exc:
                log.warning("JetStream not ready for the leader lease (attempt %d): %s; retrying", attempt, exc)
                await self._pause(1.0)
        return None

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), max(0.0, seconds))
        except asyncio.TimeoutError:
            pass

    async def _campaign(self) -> bool:
        assert self.lease is not None
        sent_at = time.monotonic()
        try:
            won = await asyncio.wait_for(self.lease.campaign(), self.timing.lease / 2)
            if not won:
                await asyncio.wait_for(self.lease.announce_standby(), self.timing.lease / 2)
        except Exception as exc:  # JetStream without a majority, NATS reconnecting, ...
            log.warning("campaign failed: %s", exc)
            return False
        if won:
            self._renew_sent_at = sent_at
        return won

    async def _lead(self) -> None:
        """Run the brain until the lease is lost or the process stops."""
        assert self.lease is not None and self.nc is not None
        lease = self.lease
        log.info("coordinator %s elected leader at term %d", self.config.id, lease.term)
        brain = Coordinator(self.config)
        brain.term, brain.may_act, brain.standbys = lease.term, self.may_act, lease.standbys
        self.brain = brain
        last_attempt = self._renew_sent_at
        reason = "stopping"
        try:
            brain_start = asyncio.ensure_future(brain.start(self.nc))
            while not self._stopping.is_set():
                if brain_start.done() and brain_start.exception() is not None:
                    reason = f"could not take charge: {brain_start.exception()}"
                    break
                step = leader_step(time.monotonic(), self._renew_sent_at, last_attempt, self.timing)
                if step == "step_down":
                    reason = "its lease ran out before a renewal got through"
                    break
                if step == "renew":
                    last_attempt = time.monotonic()
                    renewed = await self._renew(last_attempt)
                    if renewed is False:
                        reason = "another coordinator took the lead"
                        break
                wait = min(last_attempt + self.timing.renew_every, leads_until(self._renew_sent_at, self.timing)) - time.monotonic()
                await self._pause(wait)
        finally:
            self._renew_sent_at = 0.0  # may_act() is False from here on
            if not brain_start.done():
                brain_start.cancel()
            # Each step bounded (torua.stopping.bounded): with NATS dead or paused, a
            # JetStream call or a flush must not hold the stop (or the next campaign) up.
            await bounded(asyncio.gather(brain_start, return_exceptions=True), 3, "cancelling the leader's start")
            await bounded(brain.stop(), 10, "stopping the leader")
            self.brain = None
            # let a standby in now; refused harmlessly if one has already
            await bounded(lease.resign(), max(1.0, self.timing.lease), "resigning the lead")
            log.info("coordinator %s stepped down: %s", self.config.id, reason)
            lease.term = 0

    async def _renew(self, sent_at: float) -> bool | None:
        """True: renewed as of `sent_at`; False: deposed; None: no answer (try again)."""
        assert self.lease is not None
        try:
            ok = await asyncio.wait_for(self.lease.renew(), max(0.1, leads_until(self._renew_sent_at, self.timing) - time.monotonic()))
        except Exception as exc:
            log.warning("lease renewal not answered: %s", exc)
            return None
        if ok:
            self._renew_sent_at = sent_at
        return ok


async def run_coordinator(config: CoordinatorConfig, stop: StopRequest) -> None:
    process = CoordinatorProcess(config, stop=stop)
    # With the process, not the brain: a standby answers too (torua_coordinator_leader 0).
    registry = registry_of(LiveCollector(lambda: coordinator_families(process.snapshot())))
    async with metrics_server(registry, config.metrics_host, config.metrics_port):
        await process.run()
