"""An operation logged by a newer release, replicated to this one (rolling upgrade):
the real coordinator and nodes over the in-memory bus (`tests.support.sim_cluster`).

A newer release may add fields (with defaults) to an operation. Its primary's log then
holds ops with fields this release does not know; a replica running this release must
apply them (ignoring what it does not know) and keep their bytes, not stop following.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import msgpack
import pytest

from torua.node.replication import notify
from torua.storage import kv_engine
from torua.storage.operations import OPERATION_ENGINES, OPERATION_TYPES
from torua.storage.shard_store import DB_FILENAME
from tests.support.sim_cluster import SimCluster, sim_seed, wait_for


def log_as_a_newer_release(directory: Path, key: str, value: bytes, blob: bytes) -> int:
    """Put `key` into a closed shard copy and its log as a newer release would have: the
    row, the counters and the op `blob`, in one transaction. Returns the op's seq."""
    with sqlite3.connect(directory / DB_FILENAME) as conn:
        base = int(conn.execute("SELECT value FROM meta WHERE name = 'base_seq'").fetchone()[0])
        seq = max(base, conn.execute("SELECT coalesce(max(seq), 0) FROM oplog").fetchone()[0]) + 1
        assert conn.execute("SELECT 1 FROM kv WHERE key = ?", (key,)).fetchone() is None
        conn.execute("INSERT INTO kv(key, value, content_type) VALUES (?, ?, ?)", (key, value, "text/plain"))
        conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'keys'")
        conn.execute("UPDATE meta SET value = value + ? WHERE name = 'bytes'", (len(value),))
        conn.execute("INSERT INTO oplog(seq, op) VALUES (?, ?)", (seq, blob))
    return seq


@pytest.mark.timeout(60)
async def test_a_replica_applies_an_operation_with_a_field_of_a_newer_release(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(45):
            key = next(k for k in (f"upgrade/{i}" for i in range(100)) if cluster.shard_of(k) == 0)
            entry = cluster.map.shards[0]
            assert entry.primary is not None and len(entry.replicas) == 1
            primary, replica = cluster.nodes[entry.primary], cluster.nodes[entry.replicas[0]]
            await cluster.put("upgrade/before", b"old op")  # the ordinary path works first
            await cluster.wait_green(caught_up=True)

            blob = msgpack.packb({"t": "kv.put", "key": key, "value": b"new", "content_type": "text/plain", "ttl": 60}, use_bin_type=True)
            holding = primary.holdings[0]
            async with holding.lock:  # the primary's copy, closed for a moment to log the op "as the newer release did"
                assert holding.store is not None
                await holding.store.close()
                seq = log_as_a_newer_release(primary.shard_dir(0), key, b"new", blob)
                holding.store = primary.files.open(0, create=False)
            notify(holding, "new_data")
            cluster.note(f"{entry.primary} logged {key!r} at seq {seq} with a field this release does not know")

            copy = replica.holdings[0]
            await wait_for(lambda: copy.store is not None and copy.store.last_seq() >= seq, 15, f"{entry.replicas[0]} to apply seq {seq}")
            assert copy.store is not None
            assert copy.store.get(key) == (b"new", "text/plain")
            assert copy.store.read_log_encoded(seq - 1) == [(seq, blob)]  # kept as it came: the field goes on to newer nodes
            # and replication goes on: a later write reaches the replica too
            await cluster.put("upgrade/after", b"next op")
            await cluster.wait_green(caught_up=True)
            assert cluster.compare_copies()[1] == []
            assert await cluster.get(key) == b"new"
    finally:
        await cluster.stop()


@dataclass(frozen=True)
class KvTouch:
    """An operation type of a "newer release": this one does not know it."""

    TYPE: ClassVar[str] = "kv.touch"
    key: str


@pytest.mark.timeout(60)
async def test_a_replica_that_meets_an_unknown_operation_type_waits_for_its_upgrade(tmp_path, monkeypatch):
    """It applies nothing of that op, the primary drops it from the in-sync set and
    writes go on; once it knows the type (upgraded) it catches up and is in sync again."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(45):
            key = next(k for k in (f"unknown/{i}" for i in range(100)) if cluster.shard_of(k) == 0)
            entry = cluster.map.shards[0]
            assert entry.primary is not None
            primary, replica_id = cluster.nodes[entry.primary], entry.replicas[0]
            holding = primary.holdings[0]
            async with holding.lock:
                assert holding.store is not None
                await holding.store.close()
                with sqlite3.connect(primary.shard_dir(0) / DB_FILENAME) as conn:
                    seq = conn.execute("SELECT coalesce(max(seq), 0) FROM oplog").fetchone()[0] + 1
                    conn.execute("INSERT INTO oplog(seq, op) VALUES (?, ?)", (seq, msgpack.packb({"t": "kv.touch", "key": key})))
                holding.store = primary.files.open(0, create=False)
            notify(holding, "new_data")

            await cluster.put(key, b"written meanwhile")  # acknowledged once the replica is out of the in-sync set
            assert replica_id not in cluster.map.shards[0].in_sync
            copy = cluster.nodes[replica_id].holdings[0]
            assert copy.store is not None and copy.store.last_seq() == seq - 1
            assert copy.follower is not None and not copy.follower.done()  # still asking

            # "upgrade" the replica: it now knows the type
            monkeypatch.setitem(OPERATION_TYPES, KvTouch.TYPE, KvTouch)
            monkeypatch.setitem(OPERATION_ENGINES, KvTouch.TYPE, ("kv",))
            monkeypatch.setitem(kv_engine.HANDLERS, KvTouch, lambda conn, state, op: None)
            await cluster.wait_green(caught_up=True)
            assert copy.store.get(key) == (b"written meanwhile", "application/octet-stream")
            assert copy.store.read_log_encoded(seq - 1)[0] == (seq, msgpack.packb({"t": "kv.touch", "key": key}))
    finally:
        await cluster.stop()
