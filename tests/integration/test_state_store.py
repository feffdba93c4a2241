"""The shard map's compare-and-set in JetStream KV (torua.coordinator.state_store) on a
real nats-server: a write whose answer was lost does not make every later write of
the same lead fail, and a write of another lead still does."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import nats
import pytest
from nats.js.errors import KeyWrongLastSequenceError

from torua.coordinator.state_store import ClusterState, MapWrittenUnseen, written_by_same_lead
from torua.protocol.messages import ShardEntry, ShardMap

FIRST = ShardMap(epoch=1, num_shards=2, shards=[ShardEntry(0, "n1"), ShardEntry(1, "n2")], leader="c1", term=7)


@pytest.mark.parametrize(
    "stored, writing, same",
    [
        (FIRST, replace(FIRST, epoch=2), True),
        (replace(FIRST, epoch=3), replace(FIRST, epoch=2), True),  # a later map of the same lead
        (replace(FIRST, leader="c2"), replace(FIRST, epoch=2), False),  # another coordinator
        (replace(FIRST, term=8), replace(FIRST, epoch=2), False),  # the same coordinator, a later term
        (replace(FIRST, term=6), replace(FIRST, epoch=2), False),  # ... an earlier one
        (None, FIRST, False),
    ],
)
def test_only_a_map_of_the_same_leader_and_term_is_taken_for_a_lost_write(stored, writing, same):
    assert written_by_same_lead(stored, writing) is same


async def _two_states(url: str) -> tuple[nats.NATS, ClusterState, ClusterState]:
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    return nc, await ClusterState.open(nc), await ClusterState.open(nc)


def test_a_lead_goes_on_from_its_own_write_whose_answer_was_lost(nats_url):
    async def scenario() -> None:
        nc, mine, lost = await _two_states(nats_url)
        try:
            await mine.save_map(FIRST)
            # This lead's epoch 2 landed, but its answer never came back: `mine` still
            # holds the revision of epoch 1 (`lost` plays the write that landed).
            assert await lost.load_map() == FIRST
            await lost.save_map(replace(FIRST, epoch=2, shards=[ShardEntry(0, "n2"), ShardEntry(1, "n2")]))
            # Writing epoch 2 again, with other content: the stored epoch 2 comes back, in force.
            with pytest.raises(MapWrittenUnseen) as unseen:
                await mine.save_map(replace(FIRST, epoch=2))
            assert unseen.value.stored.epoch == 2 and unseen.value.stored.shards[0].primary == "n2"
            # ... and the next write, on it, lands (the revision was taken up).
            await mine.save_map(replace(unseen.value.stored, epoch=3))
            assert (await lost.load_map()).epoch == 3
            # The very map that landed, written again after a lost answer: nothing to do.
            landed = replace(FIRST, epoch=4)
            await lost.save_map(landed)
            await mine.save_map(landed)
            await mine.save_map(replace(FIRST, epoch=5))
            assert (await lost.load_map()).epoch == 5
        finally:
            await nc.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_map_written_by_another_lead_still_fails_the_write(nats_url):
    async def scenario() -> None:
        nc, mine, other = await _two_states(nats_url)
        try:
            await mine.save_map(FIRST)
            await other.load_map()
            await other.save_map(replace(FIRST, epoch=2, leader="c2", term=9))
            with pytest.raises(KeyWrongLastSequenceError):
                await mine.save_map(replace(FIRST, epoch=2))
            with pytest.raises(KeyWrongLastSequenceError):  # and again: nothing was taken up
                await mine.save_map(replace(FIRST, epoch=2))
            assert (await other.load_map()).leader == "c2"
        finally:
            await nc.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
