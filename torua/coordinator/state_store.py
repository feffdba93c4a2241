"""The cluster's own state in a JetStream KV bucket: the shard map and the node
registry. A restarted coordinator resumes from here without reshuffling. The
coordinator also makes the graph catalog's and the API keys' buckets, the GraphRAG
queue and its claims bucket, each with `--kv-replicas` copies across the NATS
cluster; one found with fewer (made before with a lower setting, or by a worker or
gateway that came first) is raised to it (`keep_replicas`).

Map writes are compare-and-set on the revision this coordinator last wrote, so a
second writer is noticed instead of silently overwritten. A write whose answer was
lost (a timeout while JetStream changes stream leaders, as when a NATS partition
heals) may have landed all the same: the stored map, read from the stream's leader,
then is this lead's own, and the coordinator goes on from it (`MapWrittenUnseen`)
instead of failing every write after.
"""

from __future__ import annotations

import asyncio
import json
import logging

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from torua.bus import open_bucket
from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.messages import ShardMap
from torua.rag import queue as rag_queue
from torua.rag.claim_store import open_claims
from torua.rag.claims import CLAIMS_BUCKET

log = logging.getLogger("torua.coordinator.state")


async def keys_with_prefix(js: JetStreamContext, bucket: str, prefix: str) -> list[str]:
    """The keys of KV `bucket` that start with `prefix`, read from the stream's
    per-subject counts. (`KeyValue.keys()` leaves a consumer behind on every call,
    and a wildcard filter there finds nothing on nats-server 2.15.)"""
    base = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{base}{prefix}>")
    return sorted(subject[len(base):] for subject in (info.state.subjects or {}))


async def keep_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Raise the copies of `stream` to `replicas` if it has fewer (JetStream copies its
    data to the new peers; a stream is never lowered here). A refusal (too few NATS
    servers) is logged: the stream serves on with the copies it has."""
    info = await js.stream_info(stream)
    held = info.config.num_replicas or 1
    if held >= replicas:
        return
    config = info.config
    config.num_replicas = replicas
    try:
        await js.update_stream(config)
    except NatsError as exc:
        log.warning("stream %s keeps %d copies: raising them to %d was refused (%s)", stream, held, replicas, exc)
        return
    log.info("stream %s: %d -> %d copies", stream, held, replicas)


async def open_graph_catalog(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The catalog of named graphs (torua.graph.catalog), made here on first use, as the
    cluster's own state is: gateways and clients only read it and create its keys."""
    return await open_bucket(js, subjects.GRAPH_BUCKET, replicas, history=1, description="Torua graph catalog")


async def open_key_store(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The API keys (torua.api_keys), made here on first use: gateways read and write them."""
    return await open_bucket(js, subjects.KEYS_BUCKET, replicas, history=1, description="Torua API keys")


class MapWrittenUnseen(Exception):
    """The stored map is not the revision this coordinator last saw but a later one
    written by this same lead (leader and term), whose answer was lost: `stored` is the
    map in force, the one to change next."""

    def __init__(self, stored: ShardMap) -> None:
        super().__init__(f"shard map epoch {stored.epoch} was written by this lead unseen")
        self.stored = stored


def written_by_same_lead(stored: ShardMap | None, writing: ShardMap) -> bool:
    """May a map found in place of the expected revision be this lead's own lost write?
    Only if the same coordinator wrote it in the same term: any other writer means
    another lead, and the write must fail."""
    return stored is not None and stored.leader == writing.leader and stored.term == writing.term


class ClusterState:
    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self._kv = kv
        self._js = js
        self._map_revision: int | None = None
        # The revision of each node record this coordinator read or wrote: its writes
        # are compare-and-set too, so a deposed leader cannot overwrite a newer one.
        self._node_revisions: dict[str, int] = {}
        self._settings_revision: int | None = None

    @classmethod
    async def open(cls, nc: NATS, replicas: int = 1) -> "ClusterState":
        """The bucket, made on first use with `replicas` copies across the NATS cluster."""
        js = nc.jetstream()
        kv = await open_bucket(js, subjects.CLUSTER_BUCKET, replicas, history=5, description="Torua cluster state")
        await open_graph_catalog(js, replicas)
        await open_key_store(js, replicas)
        await rag_queue.ensure_stream(js, replicas)
        await open_claims(js, replicas)
        for bucket in (subjects.CLUSTER_BUCKET, subjects.GRAPH_BUCKET, subjects.KEYS_BUCKET, CLAIMS_BUCKET):
            await keep_replicas(js, f"KV_{bucket}", replicas)
        await keep_replicas(js, rag_queue.STREAM, replicas)
        return cls(kv, js)

    async def load_map(self) -> ShardMap | None:
        stored = await self._stored_map()
        if stored is None:
            return None
        self._map_revision = stored[1]
        return decode(ShardMap, stored[0])

    async def _stored_map(self) -> tuple[bytes, int] | None:
        try:
            entry = await self._kv.get(subjects.MAP_KEY)
        except KeyNotFoundError:
            return None
        return (entry.value, entry.revision or 0) if entry.value else None

    async def _leader_map(self) -> tuple[bytes, int] | None:
        """The stored map as the stream's leader holds it. A KV get may be answered by
        any replica (direct get): one that is behind, or cut off on the minority side of
        a partition, would show the write it was asked about as missing, or a write that
        never reached the majority as the map. Without a leader this times out."""
        bucket = subjects.CLUSTER_BUCKET
        try:
            msg = await self._js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.{subjects.MAP_KEY}")
        except NotFoundError:
            return None
        if not msg.data or (msg.headers or {}).get("KV-Operation"):  # deleted or purged
            return None
        return msg.data, int(msg.seq or 0)

    async def save_map(self, shard_map: ShardMap) -> None:
        """Compare-and-set on the revision last read or written. `MapWrittenUnseen` if
        the stored map is a later one of this same lead (a write whose answer was lost);
        `KeyWrongLastSequenceError` if another coordinator wrote it."""
        data = encode(shard_map)
        try:
            if self._map_revision is None:
                self._map_revision = await self._kv.create(subjects.MAP_KEY, data)
            else:
                self._map_revision = await self._kv.update(subjects.MAP_KEY, data, last=self._map_revision)
        except (KeyWrongLastSequenceError, NatsTimeout, asyncio.TimeoutError):
            stored = await self._leader_map()
            if stored is None:
                raise
            found = decode(ShardMap, stored[0])
            if not written_by_same_lead(found, shard_map):
                raise
            self._map_revision = stored[1]
            if stored[0] != data:
                raise MapWrittenUnseen(found) from None
            log.info("shard map epoch %d had landed; only its answer was lost", shard_map.epoch)

    async def load_nodes(self) -> dict[str, dict]:
        nodes: dict[str, dict] = {}
        for key in await keys_with_prefix(self._js, subjects.CLUSTER_BUCKET, subjects.NODE_KEY_PREFIX):
            try:
                entry = await self._kv.get(key)
                if entry.value:
                    record = json.loads(entry.value)
                    nodes[record["id"]] = record
                    self._node_revisions[record["id"]] = entry.revision
            except (KeyNotFoundError, ValueError, KeyError):
                log.warning("skipping unreadable node record %s", key)
        return nodes

    async def save_node(self, record: dict) -> None:
        """Create or compare-and-set a node's record; `KeyWrongLastSequenceError` if
        another coordinator wrote it since this one last read or wrote it."""
        key, data = subjects.NODE_KEY_PREFIX + record["id"], json.dumps(record).encode()
        revision = self._node_revisions.get(record["id"])
        if revision is None:
            self._node_revisions[record["id"]] = await self._kv.create(key, data)
        else:
            self._node_revisions[record["id"]] = await self._kv.update(key, data, last=revision)

    async def load_settings(self) -> tuple[dict, int] | None:
        """(the stored cluster settings as plain data, their revision), or None if never set."""
        try:
            entry = await self._kv.get(subjects.CONFIG_KEY)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        self._settings_revision = entry.revision
        return json.loads(entry.value), entry.revision

    async def save_settings(self, settings: dict) -> int:
        """Create or compare-and-set the settings on the revision last read or written;
        `KeyWrongLastSequenceError` if another coordinator wrote them since. Returns the new revision."""
        data = json.dumps(settings, sort_keys=True).encode()
        if self._settings_revision is None:
            self._settings_revision = await self._kv.create(subjects.CONFIG_KEY, data)
        else:
            self._settings_revision = await self._kv.update(subjects.CONFIG_KEY, data, last=self._settings_revision)
        return self._settings_revision
