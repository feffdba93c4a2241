"""The cluster's own state in a JetStream KV bucket: the shard map and the node
registry. A restarted coordinator resumes from here without reshuffling.

Map writes are compare-and-set on the revision this coordinator last wrote, so a
second writer is noticed instead of silently overwritten.
"""

from __future__ import annotations

import json
import logging

from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.messages import ShardMap

log = logging.getLogger("torua.coordinator.state")


class ClusterState:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._map_revision: int | None = None

    @classmethod
    async def open(cls, nc: NATS, replicas: int = 1) -> "ClusterState":
        """The bucket, made on first use with `replicas` copies across the NATS cluster."""
        js = nc.jetstream()
        try:
            kv = await js.key_value(subjects.CLUSTER_BUCKET)
        except BucketNotFoundError:
            kv = await js.create_key_value(bucket=subjects.CLUSTER_BUCKET, history=5, replicas=replicas, description="Torua cluster state")
        return cls(kv)

    async def load_map(self) -> ShardMap | None:
        try:
            entry = await self._kv.get(subjects.MAP_KEY)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        self._map_revision = entry.revision
        return decode(ShardMap, entry.value)

    async def save_map(self, shard_map: ShardMap) -> None:
        data = encode(shard_map)
        if self._map_revision is None:
            self._map_revision = await self._kv.create(subjects.MAP_KEY, data)
        else:
            self._map_revision = await self._kv.update(subjects.MAP_KEY, data, last=self._map_revision)

    async def load_nodes(self) -> dict[str, dict]:
        nodes: dict[str, dict] = {}
        try:
            keys = await self._kv.keys()  # a wildcard filter finds nothing on nats-server 2.15
        except NoKeysError:  # an empty bucket
            return nodes
        for key in (k for k in keys if k.startswith(subjects.NODE_KEY_PREFIX)):
            try:
                entry = await self._kv.get(key)
                if entry.value:
                    record = json.loads(entry.value)
                    nodes[record["id"]] = record
            except (KeyNotFoundError, ValueError, KeyError):
                log.warning("skipping unreadable node record %s", key)
        return nodes

    async def save_node(self, record: dict) -> None:
        await self._kv.put(subjects.NODE_KEY_PREFIX + record["id"], json.dumps(record).encode())
