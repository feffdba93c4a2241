"""`torua.Client`: the topology-aware asyncio client for applications.

It follows the shard map (JetStream KV plus announcements, like the gateway)
and sends each KV operation over NATS straight to the node that holds the key's
shard: one hop. After `moved` it refreshes the map and retries within the
timeout. When it cannot read the map (no JetStream access, cluster not formed)
it falls back to the gateway's NATS API (`torua.api.kv.*`).

    async with Client("nats://127.0.0.1:4222") as db:
        await db.put("user@example.com", b"{...}", content_type="application/json")
        value = await db.get("user@example.com")
"""

from __future__ import annotations

from typing import Any

import msgpack
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from torua.bus import NatsAuth, connect
from torua.config import DEFAULT_NATS_URL
from torua.keys import shard_for_key, validate_key
from torua.listing import list_keys
from torua.protocol import subjects
from torua.protocol.errors import ToruaError
from torua.protocol.messages import KvReply, KvRequest
from torua.routing import MapCache, ShardRouter


class Client:
    def __init__(self, nats_url: str = DEFAULT_NATS_URL, timeout: float = 5.0, nc: NATS | None = None, auth: NatsAuth | None = None) -> None:
        self.nats_url = nats_url
        self.timeout = timeout
        self.auth = auth if auth is not None else NatsAuth.from_env()  # TORUA_NATS_USER, ... when not given
        self._nc = nc
        self._own_connection = nc is None
        self._maps: MapCache | None = None
        self._router: ShardRouter | None = None

    async def connect(self) -> "Client":
        if self._nc is None:
            self._nc = await connect(self.nats_url, "torua-client", timeout=self.timeout, auth=self.auth)
        self._maps = MapCache(self._nc)
        await self._maps.start()
        self._router = ShardRouter(self._nc, self._maps)
        return self

    async def close(self) -> None:
        if self._maps is not None:
            await self._maps.stop()
        if self._nc is not None and self._own_connection and not self._nc.is_closed:
            await self._nc.close()

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ KV

    async def get(self, key: str, consistency: str = "strong") -> bytes | None:
        item = await self.get_item(key, consistency)
        return None if item is None else item[0]

    async def get_item(self, key: str, consistency: str = "strong") -> tuple[bytes, str] | None:
        """(value, content_type), or None when the key does not exist. consistency
        "eventual" may read an in-sync replica (spreads load; may lag a little)."""
        validate_key(key)
        if consistency not in ("strong", "eventual"):
            raise ToruaError("bad_request", "consistency must be strong or eventual")
        eventual = consistency == "eventual"
        if self._direct():
            reply = await self._call(key, lambda epoch, shard: KvRequest("get", shard, epoch, key=key, eventual=eventual), eventual)
            return (reply.value or b"", reply.content_type) if reply.found else None
        try:
            data = await self._api("kv.get", {"key": key, "consistency": consistency})
        except ToruaError as exc:
            if exc.code == "not_found":
                return None
            raise
        return data["value"], data.get("content_type", "application/octet-stream")

    async def put(self, key: str, value: bytes, content_type: str = "application/octet-stream") -> None:
        validate_key(key)
        if not isinstance(value, (bytes, bytearray)):
            raise ToruaError("bad_request", "value must be bytes")
        if self._direct():
            await self._call(key, lambda epoch, shard: KvRequest("put", shard, epoch, key=key, value=bytes(value), content_type=content_type))
        else:
            await self._api("kv.put", {"key": key, "value": bytes(value), "content_type": content_type})

    async def delete(self, key: str) -> None:
        validate_key(key)
        if self._direct():
            await self._call(key, lambda epoch, shard: KvRequest("delete", shard, epoch, key=key))
        else:
            await self._api("kv.delete", {"key": key})

    async def list(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> tuple[list[str], str | None]:
        """One page of keys (sorted within a shard, shards in order) and the cursor for the next."""
        if self._direct():
            assert self._router is not None
            return await list_keys(self._router, prefix, limit, cursor, self.timeout)
        data = await self._api("kv.list", {"prefix": prefix, "limit": limit, "cursor": cursor})
        return list(data["keys"]), data.get("next_cursor")

    # ------------------------------------------------------------- plumbing

    def _direct(self) -> bool:
        return self._maps is not None and self._maps.current is not None

    async def _call(self, key: str, build, eventual: bool = False) -> KvReply:
        assert self._router is not None and self._maps is not None and self._maps.current is not None
        shard = shard_for_key(key, self._maps.current.num_shards)
        reply = await self._router.call(shard, lambda epoch: build(epoch, shard), self.timeout, eventual)
        if not reply.ok:
            raise ToruaError(reply.error_code or "internal", reply.error_message)
        return reply

    async def _api(self, call: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert self._nc is not None
        try:
            msg = await self._nc.request(f"{subjects.API}.{call}", msgpack.packb(payload, use_bin_type=True), timeout=self.timeout)
        except NoRespondersError:
            raise ToruaError("unavailable", "no shard map and no gateway answering on torua.api") from None
        except NatsTimeout:
            raise ToruaError("timeout", f"{call}: no answer within {self.timeout:g}s") from None
        data = msgpack.unpackb(msg.data, raw=False)
        if isinstance(data, dict) and "error" in data:
            err = data["error"]
            raise ToruaError(err.get("code", "internal"), err.get("message", ""))
        return data
