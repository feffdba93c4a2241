"""The leader lease against a real nats-server's JetStream KV: one create wins,
renewals are compare-and-set, a resignation or an expiry lets another in, and
never before the old leader has stopped by its own clock."""

from __future__ import annotations

import asyncio
import time

import nats

from torua.config import CoordinatorConfig
from torua.coordinator.election import LeaderLease
from torua.leadership import LeaderTiming, leads_until


async def leases(url: str, lease: float, *ids: str):
    nc = await nats.connect(url)
    opened = [await LeaderLease.open(nc, CoordinatorConfig(id=i, leader_lease=lease)) for i in ids]
    return nc, opened


def test_one_leads_renews_resigns_and_another_takes_over(nats_url):
    async def run() -> None:
        nc, (a, b) = await leases(nats_url, 5.0, "c1", "c2")
        try:
            assert await a.campaign() and a.term > 0
            assert not await b.campaign()
            await b.announce_standby()
            assert await a.standbys() == ["c2"]
            assert await a.renew()
            leader = await b.leader()
            assert (leader.id, leader.term) == ("c1", a.term)
            first_term = a.term
            await a.resign()
            assert await b.campaign() and b.term > first_term
            # a renewal on c1's old revision is refused: it must not lead again
            assert not await a.renew()
            assert (await a.leader()).id == "c2"
        finally:
            await nc.close()

    asyncio.run(run())


def test_a_lapsed_lease_lets_a_standby_in_only_after_the_leader_stopped(nats_url):
    lease = 1.0
    timing = LeaderTiming.for_lease(lease)

    async def run() -> tuple[float, float]:
        nc, (a, b) = await leases(nats_url, lease, "c1", "c2")
        try:
            sent = time.monotonic()
            assert await a.campaign()
            renewed_at = sent
            for _ in range(3):  # a few renewals, then silence (as if killed)
                sent = time.monotonic()
                assert await a.renew()
                renewed_at = sent
            deadline = time.monotonic() + 10 * lease
            while time.monotonic() < deadline:
                if await b.campaign():
                    return leads_until(renewed_at, timing), time.monotonic()
                await asyncio.sleep(0.02)
            raise AssertionError("the standby never took over a lapsed lease")
        finally:
            await nc.close()

    a_stops, b_leads = asyncio.run(run())
    assert b_leads > a_stops, f"c2 led {a_stops - b_leads:.3f}s before c1 had stopped"
    print(f"\nc1 stopped acting {b_leads - a_stops:.2f}s before c2 could take the lease")


def test_the_bucket_expiry_wins_over_a_different_configured_lease(nats_url):
    async def run() -> tuple[float, float]:
        nc, (first,) = await leases(nats_url, 2.0, "c1")
        try:
            second = await LeaderLease.open(nc, CoordinatorConfig(id="c2", leader_lease=9.0))
            return first.ttl, second.ttl
        finally:
            await nc.close()

    assert asyncio.run(run()) == (2.0, 2.0)


def test_listing_standbys_leaves_no_consumer_behind(nats_url):
    """/cluster/info lists standbys on every call; a consumer per call would exhaust the server."""

    async def run() -> tuple[list[str], int]:
        nc, (a, b, c) = await leases(nats_url, 5.0, "c1", "c2", "c3")
        try:
            assert await a.campaign()
            await b.announce_standby()
            await c.announce_standby()
            for _ in range(50):
                listed = await a.standbys()
            info = await nc.jetstream().stream_info("KV_torua_leader")
            return listed, info.state.consumer_count
        finally:
            await nc.close()

    assert asyncio.run(run()) == (["c2", "c3"], 0)
