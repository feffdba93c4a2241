"""Moves the coordinator plans, on the in-memory bus: one that fails is planned again,
and one whose map write landed unseen still goes on.

A move's copy can fail for a passing reason (right after a coordinator's restart
the source's copy did not serve snapshots yet: `tests/integration/test_capacity.py`
saw a node join, the one move planned for it aborted, and nothing planned again,
the cluster left unbalanced). The coordinator now plans again shortly after an
aborted move (`REPLAN_AFTER_ABORT_S`)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from tests.support.sim_cluster import SimCluster, sim_seed, wait_for
from torua.coordinator.state_store import ClusterState
from torua.protocol.errors import ToruaError


async def test_a_move_whose_copy_fails_is_planned_again_and_done(tmp_path: Path) -> None:
    cluster = SimCluster(tmp_path, sim_seed(), nodes=3, shards=4, replicas=1)
    try:
        async with asyncio.timeout(60):
            await cluster.start()
            refused: list[tuple[str, int]] = []
            for node in cluster.nodes.values():
                serve = node.control.source_store

                def once(shard_id: int, serve=serve, node_id=node.config.id) -> object:
                    if not refused:
                        refused.append((node_id, shard_id))
                        raise ToruaError("moved", f"shard {shard_id} has no readable copy on {node_id} (the test's one refusal)")
                    return serve(shard_id)

                node.control.source_store = once  # type: ignore[method-assign]
            cluster.node_ids.append("n4")
            await cluster.start_node("n4")
            await wait_for(lambda: any(e.primary == "n4" for e in cluster.map.shards), 30, "n4 to take a copy after the first move failed")
            assert refused, "no copy was refused: the scenario tested nothing"
            await cluster.wait_green()
    finally:
        await cluster.stop()


async def test_a_map_write_whose_answer_was_lost_does_not_stop_the_coordinator(tmp_path: Path) -> None:
    """Seen in CI (`test_nats_cluster`, a partition healing): a map write landed but its
    answer timed out, so the coordinator held the revision before it and every later
    write failed its compare-and-set; nothing moved again. Here the landed write is
    put in place behind the coordinator's back; a drain must still move every copy."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=3, shards=4, replicas=1)
    try:
        async with asyncio.timeout(60):
            await cluster.start()
            coordinator = cluster.coordinator
            assert coordinator is not None
            landed = replace(cluster.map, epoch=cluster.map.epoch + 1)
            state = await ClusterState.open(cluster.bus.connect("the lost write"))
            await state.load_map()
            await state.save_map(landed)
            await coordinator.set_draining(coordinator.nodes["n3"], True)
            await wait_for(lambda: all("n3" not in (e.primary, *e.replicas) for e in cluster.map.shards), 30, "n3's copies to move away")
            assert cluster.map.epoch > landed.epoch
            assert (await state.load_map()) == cluster.map
            await cluster.wait_green()
    finally:
        await cluster.stop()
