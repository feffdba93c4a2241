"""Shard data of a second engine through real nodes (over the in-memory bus): the notes
engine of tests/support/note_engine.py, a follower engine like the graph's, written
through the node's shared write path (`Node.write`), replicated by the log, moved as
snapshot chunks of two formats; and snapshot requests in the shape of a release
before chunk formats and in the new one."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support import note_engine
from tests.support.note_engine import NoteDelete, NoteEngine, NotePut
from tests.support.sim_cluster import SimCluster, sim_seed, wait_for
from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import SnapshotChunk, SnapshotRequest
from torua.storage.kv_engine import ROWS_FORMAT, decode_rows

FORMATS = [ROWS_FORMAT, note_engine.FORMAT]


@pytest.fixture(autouse=True)
def notes_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    for table, key, value in note_engine.registrations():
        monkeypatch.setitem(table, key, value)


def notes_on(cluster: SimCluster, node_id: str) -> dict[str, str]:
    store = cluster.nodes[node_id].holdings[0].store
    assert store is not None
    engine = store.engine("notes")
    assert isinstance(engine, NoteEngine)
    return engine.notes()


@pytest.mark.timeout(60)
async def test_a_second_engines_writes_share_the_write_path_and_replicate(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=1, replicas=2, engines=[NoteEngine.factory()])
    try:
        await cluster.start()
        async with asyncio.timeout(45):
            entry = cluster.map.shards[0]
            assert entry.primary is not None and len(entry.replicas) == 1
            primary, replica = cluster.nodes[entry.primary], entry.replicas[0]
            seq = await primary.write(0, [NotePut("a", "1"), NotePut("b", "2"), NoteDelete("a")], "note")
            assert seq == primary.holdings[0].store.last_seq()  # type: ignore[union-attr]
            # answered once every in-sync replica has the ops: applied by its notes engine too
            assert notes_on(cluster, replica) == notes_on(cluster, entry.primary) == {"b": "2"}
            with pytest.raises(ToruaError) as refused:  # the same fence as a key-value write
                await cluster.nodes[replica].write(0, [NotePut("c", "3")], "note")
            assert refused.value.code == "moved" and "does not serve note on shard 0 (replica)" in refused.value.message
            assert primary.holdings[0].writes.rate(time.monotonic()) > 0  # metered as a write
            await cluster.put("kv/key", b"v")
            await cluster.wait_green(caught_up=True)
            assert cluster.compare_copies()[1] == []
    finally:
        await cluster.stop()


@pytest.mark.timeout(60)
async def test_a_move_carries_every_engines_data_as_chunks_of_their_formats(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=1, replicas=1, engines=[NoteEngine.factory()])
    try:
        await cluster.start()
        async with asyncio.timeout(45):
            source = cluster.map.shards[0].primary
            assert source is not None and cluster.coordinator is not None
            target = next(n for n in cluster.node_ids if n != source)
            notes = {f"note/{i}": "x" * i for i in range(200)}
            for key, text in notes.items():
                await cluster.nodes[source].write(0, [NotePut(key, text)], "note")
            await cluster.put("kv/key", b"v")
            cluster.coordinator.start_move(0, source, target, reason="test")
            await wait_for(lambda: cluster.map.shards[0].primary == target and not cluster.coordinator.moves, 30, "the move")  # type: ignore[union-attr]
            assert notes_on(cluster, target) == notes
            assert await cluster.get("kv/key") == b"v"
            await cluster.nodes[target].write(0, [NotePut("after", "move")], "note")
            assert notes_on(cluster, target)["after"] == "move"
    finally:
        await cluster.stop()


@pytest.mark.timeout(60)
async def test_snapshot_requests_of_both_shapes_and_data_a_requester_cannot_install(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=1, shards=1, replicas=1, engines=[NoteEngine.factory()])
    try:
        await cluster.start()
        async with asyncio.timeout(30):
            assert cluster.gateway is not None
            nc = cluster.gateway.nc

            async def ask(request: SnapshotRequest) -> SnapshotChunk:
                return decode(SnapshotChunk, (await nc.request(subjects.node("n1", "shard.snapshot"), encode(request), timeout=2)).data)

            await cluster.put("kv/key", b"v")
            old = await ask(SnapshotRequest(0))  # a node of a release before formats: rows
            assert ([r[0] for r in old.rows], old.next, old.chunks, old.cursor) == (["kv/key"], None, [], None)
            new = await ask(SnapshotRequest(0, formats=FORMATS))
            assert (new.rows, [c.format for c in new.chunks], new.last_seq) == ([], [ROWS_FORMAT], old.last_seq)
            assert [r[0] for r in decode_rows(new.chunks[0].data)] == ["kv/key"]
            if new.cursor is not None:
                assert (await ask(SnapshotRequest(0, formats=FORMATS, cursor=new.cursor))).chunks == []
            bad = await ask(SnapshotRequest(0, formats=FORMATS, cursor=b"garbage"))
            assert bad.error_code == "bad_request" and "not a snapshot cursor" in bad.error_message

            await cluster.nodes["n1"].write(0, [NotePut("a", "1")], "note")
            for request in (SnapshotRequest(0), SnapshotRequest(0, formats=[ROWS_FORMAT])):
                refused = await ask(request)
                assert refused.error_code == "unsupported_version", refused
                assert "holds notes.rows.v1 data, which the copying node cannot install" in refused.error_message
            formats, cursor = [], None
            while True:
                chunk = await ask(SnapshotRequest(0, formats=FORMATS, cursor=cursor))
                formats += [c.format for c in chunk.chunks]
                if (cursor := chunk.cursor) is None:
                    break
            assert formats == FORMATS
    finally:
        await cluster.stop()


@pytest.mark.timeout(60)
async def test_a_replica_acknowledges_only_what_every_engine_of_its_copy_applied(tmp_path):
    """A replica whose notes engine cannot apply an op has it in its log, but does not
    acknowledge it: the primary answers the write only once the replica is out of the
    in-sync set. Once the engine works again the replica applies it and is back in sync."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=1, replicas=2, engines=[NoteEngine.factory()])
    try:
        await cluster.start()
        async with asyncio.timeout(45):
            entry = cluster.map.shards[0]
            assert entry.primary is not None
            primary, replica = cluster.nodes[entry.primary], entry.replicas[0]
            copy = cluster.nodes[replica].holdings[0].store
            assert copy is not None
            engine = copy.engine("notes")
            assert isinstance(engine, NoteEngine)
            engine.refuse = {"bad"}
            seq = await primary.write(0, [NotePut("bad", "x")], "note")
            assert copy.last_seq() == seq and copy.applied_seq() < seq  # logged on the replica, not applied
            assert primary.holdings[0].acked[replica] < seq
            assert replica not in primary.holdings[0].in_sync
            engine.refuse = set()
            await cluster.wait_green(caught_up=True)
            assert notes_on(cluster, replica) == {"bad": "x"}
            assert replica in cluster.map.shards[0].in_sync
    finally:
        await cluster.stop()
