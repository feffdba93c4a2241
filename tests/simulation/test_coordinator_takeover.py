"""A coordinator that takes over a map with a move in flight and flags asking for
another replication factor changes the factor only once the resumed move is done
(one function, SettingsKeeper.keep_map_factor, with its guard), on the real
coordinator and nodes over the in-memory bus."""

from __future__ import annotations

from dataclasses import replace

import pytest

from torua.coordinator import shardmap
from torua.coordinator.service import Coordinator
from torua.coordinator.state_store import ClusterState
from torua.protocol import subjects
from torua.protocol.codec import decode
from torua.protocol.messages import ShardMap
from tests.support.sim_cluster import SimCluster, sim_seed, wait_for


@pytest.fixture
async def cluster(tmp_path):
    c = SimCluster(tmp_path, sim_seed(), replicas=1, shards=4)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


async def test_the_replication_factor_waits_for_moves_left_in_flight(cluster: SimCluster):
    for i in range(20):
        await cluster.put(f"takeover/{i}", str(i).encode())
    old = cluster.coordinator
    assert old is not None and old.map is not None
    entry = old.map.shards[0]
    target = next(n for n in cluster.node_ids if n != entry.primary)
    await old.stop()

    # The map as a leader stopped mid-move leaves it: shard 0 moving to `target`.
    state = await ClusterState.open(cluster.bus.connect("tool"))
    stored = await state.load_map()
    assert stored is not None
    await state.save_map(replace(shardmap.set_entry(stored, 0, target=target, state="moving"), epoch=stored.epoch + 1))

    # Every map the next coordinator announces, in order.
    written: list[ShardMap] = []
    watcher = cluster.bus.connect("watcher")

    async def on_map(msg) -> None:
        written.append(decode(ShardMap, msg.data))

    await watcher.subscribe(subjects.MAP_ANNOUNCE, cb=on_map)

    # The next coordinator's flags ask for two copies (no settings were ever stored).
    new = Coordinator(replace(cluster.coordinator_config, replicas=2), connect=cluster.bus.connector("coordinator2"))
    await new.start()
    cluster.coordinator = new  # the fixture stops it
    await wait_for(lambda: new.map is not None and new.map.replication_factor == 2 and cluster.green(), 30, "two copies of every shard")
    moving_with_new_factor = [m.epoch for m in written if m.replication_factor == 2 and any(e.target for e in m.shards)]
    assert not moving_with_new_factor, f"the factor changed under a resumed move at epochs {moving_with_new_factor}"
    assert any(m.replication_factor == 1 and m.shards[0].primary == target for m in written), "the resumed move finished first"
    for i in range(20):
        assert await cluster.get(f"takeover/{i}") == str(i).encode()
