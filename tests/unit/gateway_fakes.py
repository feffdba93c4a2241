"""An in-memory stand-in for NATS that answers like nodes and a coordinator, so the
gateway's operations and both front-ends run in unit tests without a cluster.

Every message still goes through the real codec, as it would on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from nats.errors import NoRespondersError

from torua.config import GatewayConfig
from torua.gateway.service import Gateway
from torua.protocol.codec import decode, encode
from torua.protocol.messages import (
    Ack,
    AssignRequest,
    CoordinatorInfo,
    KvReply,
    KvRequest,
    NodesReply,
    NodeStatus,
    ShardEntry,
    ShardMap,
)


@dataclass
class Msg:
    data: bytes
    headers: dict[str, str] | None = None


@dataclass
class FakeNats:
    shard_map: ShardMap
    nodes: list[NodeStatus]
    coordinator_up: bool = True
    # shard_id -> key -> (value, content_type)
    store: dict[int, dict[str, tuple[bytes, str]]] = field(default_factory=dict)
    node_errors: dict[str, tuple[str, str]] = field(default_factory=dict)  # op -> (code, message)
    is_connected: bool = True
    is_reconnecting: bool = False
    is_closed: bool = False

    async def request(self, subject: str, payload: bytes = b"", timeout: float = 1.0, headers: Any = None) -> Msg:
        parts = subject.split(".")
        if parts[:2] == ["torua", "node"] and parts[-1] == "kv":
            return Msg(encode(self._kv(decode(KvRequest, payload))))
        if parts[:2] == ["torua", "coordinator"]:
            if not self.coordinator_up:
                raise NoRespondersError
            return Msg(encode(self._coordinator(parts[2], payload)))
        raise NoRespondersError

    def jetstream(self) -> Any:
        raise RuntimeError("no JetStream in unit tests")  # MapCache treats this as "no map stored"

    def _kv(self, req: KvRequest) -> KvReply:
        if req.op in self.node_errors:
            code, message = self.node_errors[req.op]
            return KvReply(False, self.shard_map.epoch, error_code=code, error_message=message)
        shard = self.store.setdefault(req.shard_id, {})
        epoch = self.shard_map.epoch
        if req.op == "get":
            if req.key not in shard:
                return KvReply(True, epoch, found=False)
            value, content_type = shard[req.key]
            return KvReply(True, epoch, found=True, value=value, content_type=content_type)
        if req.op == "put":
            shard[req.key] = (req.value or b"", req.content_type)
            return KvReply(True, epoch, seq=1)
        if req.op == "delete":
            shard.pop(req.key, None)
            return KvReply(True, epoch)
        if req.op == "list":
            keys = sorted(k for k in shard if k.startswith(req.prefix) and (req.after is None or k > req.after))
            return KvReply(True, epoch, keys=keys[: req.limit])
        return KvReply(False, epoch, error_code="bad_request", error_message=f"unknown op {req.op}")

    def _coordinator(self, call: str, payload: bytes) -> Any:
        if call == "nodes":
            return NodesReply(self.nodes, self.shard_map.epoch)
        if call == "info":
            return CoordinatorInfo("c1", "0.2.0", self.shard_map.epoch, self.shard_map.num_shards, 1, 1000.0, "cluster-x", formed=True)
        if call == "assign":
            req = decode(AssignRequest, payload)
            if not 0 <= req.shard_id < self.shard_map.num_shards:
                return Ack(False, "unknown_shard", f"shard {req.shard_id} does not exist")
            if req.node_id not in {n.id for n in self.nodes}:
                return Ack(False, "unknown_node", f"node {req.node_id!r} is not part of the cluster")
            if self.shard_map.shards[req.shard_id].primary == req.node_id:
                return Ack(True, detail={"status": "already_there"})
            return Ack(True, detail={"status": "moving"})
        return Ack(False, "bad_request", f"unknown call {call}")


def two_node_cluster(num_shards: int = 4) -> FakeNats:
    shards = [ShardEntry(i, "n1" if i % 2 == 0 else "n2", in_sync=["n1" if i % 2 == 0 else "n2"], state="active") for i in range(num_shards)]
    nodes = [
        NodeStatus("n1", "healthy", False, 1_700_000_000.0, [0, 2], [0, 2], version="0.2.0", pid=11),
        NodeStatus("n2", "healthy", False, None, [1, 3], [1, 3], version="0.2.0", pid=12),
    ]
    return FakeNats(ShardMap(epoch=5, num_shards=num_shards, shards=shards, cluster_id="cluster-x"), nodes)


def make_gateway(nc: FakeNats | None = None, **config: Any) -> tuple[Gateway, FakeNats]:
    """A real `Gateway` over a fake NATS, its map cache already holding the fake's map."""
    nc = nc or two_node_cluster()
    settings = {"request_timeout": 0.5, "max_value_bytes": 1024, **config}
    gw = Gateway(nc, GatewayConfig(**settings))  # type: ignore[arg-type]
    gw.maps.offer(nc.shard_map)
    return gw, nc


def with_shard(nc: FakeNats, shard_id: int, **changes: Any) -> None:
    shards = list(nc.shard_map.shards)
    shards[shard_id] = replace(shards[shard_id], **changes)
    nc.shard_map = replace(nc.shard_map, shards=shards)
