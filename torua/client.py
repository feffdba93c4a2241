"""`torua.Client`: the topology-aware asyncio client for applications.

It follows the shard map (JetStream KV plus announcements, like the gateway)
and sends each KV operation over NATS straight to the node that holds the key's
shard: one hop. `Client.graph(name)` does the same for a graph's vertices and
edges (`torua.graph.client`). After `moved` it refreshes the map and retries within the
timeout. When it cannot read the map (no JetStream access, cluster not formed)
it falls back to the gateway's NATS API (`torua.api.kv.*`).

    async with Client("nats://127.0.0.1:4222") as db:
        await db.put("user@example.com", b"{...}", content_type="application/json")
        value = await db.get("user@example.com")

It sends an API key with every request (`api_key=`, else `$TORUA_API_KEY`, else
the admin key of the `torua up` in `$TORUA_DATA_DIR` or ./torua-data): the node
checks it on a one-hop request, the gateway on the NATS API. A named
application's NATS login (`torua auth nats client <name>`) takes `name=` (or
`$TORUA_CLIENT_NAME`), so its replies come where only it may read them.

Every call checks its input with the rules the gateway and the nodes apply
(`torua.kv_rules`) before anything is sent, and raises `ToruaError` for anything
refused: `bad_request`, `value_too_large` (over `max_value_bytes`, or over the
NATS server's max_payload), `unavailable` (no node or gateway answers, the NATS
connection is lost, the client is not connected), `timeout`, and whatever a
node refuses with.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import msgpack
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError, MaxPayloadError, NoRespondersError, TimeoutError as NatsTimeout

from torua.api_keys import discovered_token
from torua.bus import NatsAuth, connect
from torua.graph.catalog_store import GraphCatalog
from torua.graph.client import Graph
from torua.config import DEFAULT_NATS_URL
from torua.kv_rules import DEFAULT_CONTENT_TYPE, DEFAULT_MAX_VALUE_BYTES, servable_content_type, shard_for_key, validate_key, validate_prefix, validate_put
from torua.listing import MAX_LIMIT, list_keys
from torua.protocol import subjects
from torua.protocol.errors import ToruaError
from torua.protocol.messages import KvReply, KvRequest
from torua.protocol.vocabulary import KvOp
from torua.routing import MapCache, ShardRouter


if TYPE_CHECKING:
    from torua.rag.client import Corpus

def nats_error(what: str, exc: NatsError) -> ToruaError:
    """What one of NATS's own exceptions, raised while `what` was sent, means to a caller."""
    if isinstance(exc, MaxPayloadError):
        return ToruaError("value_too_large", f"{what}: the request is larger than the NATS server's max_payload")
    if isinstance(exc, NoRespondersError):
        return ToruaError("unavailable", f"{what}: nobody answers on NATS")
    if isinstance(exc, NatsTimeout):
        return ToruaError("timeout", f"{what}: no answer in time")
    return ToruaError("unavailable", f"{what}: NATS: {exc or type(exc).__name__}")  # connection closed, reconnecting, ...


class Client:
    def __init__(
        self,
        nats_url: str = DEFAULT_NATS_URL,
        timeout: float = 5.0,
        nc: NATS | None = None,
        auth: NatsAuth | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        api_key: str | None = None,
        name: str | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.timeout = timeout
        # values above it are refused here, before they are sent; keep it at the
        # nodes' --max-value-bytes (a node refuses more anyway)
        self.max_value_bytes = max_value_bytes
        # when not given: TORUA_NATS_USER, ..., else the client key of the `torua up` in ./torua-data
        self.auth = auth if auth is not None else NatsAuth.discover("client", url=nats_url)
        # sent with every request to the gateways' NATS API; when not given: $TORUA_API_KEY,
        # else the admin key of the `torua up` in $TORUA_DATA_DIR or ./torua-data
        self.api_key = api_key if api_key is not None else discovered_token()
        # a named application's NATS login (`torua auth nats client <name>`) reads only the
        # replies under _INBOX.torua-client-<name>; when not given: $TORUA_CLIENT_NAME
        self.name = name if name is not None else os.environ.get("TORUA_CLIENT_NAME", "")
        self._nc = nc
        self._own_connection = nc is None
        self._maps: MapCache | None = None
        self._router: ShardRouter | None = None
        self._catalog: GraphCatalog | None = None  # the graph catalog, watched from the first graph call on

    async def connect(self) -> "Client":
        if self._nc is None:
            self._nc = await connect(self.nats_url, f"torua-client-{self.name}" if self.name else "torua-client", timeout=self.timeout, auth=self.auth)
        self._maps = MapCache(self._nc)
        await self._maps.start()
        self._router = ShardRouter(self._nc, self._maps, api_key=self.api_key)
        return self

    async def close(self) -> None:
        if self._catalog is not None:
            await self._catalog.stop()
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
            reply = await self._call(key, lambda epoch, shard: KvRequest(KvOp.GET, shard, epoch, key=key, eventual=eventual), eventual)
            return (reply.value or b"", servable_content_type(reply.content_type)) if reply.found else None
        try:
            data = await self._api("kv.get", {"key": key, "consistency": consistency})
        except ToruaError as exc:
            if exc.code == "not_found":
                return None
            raise
        return data.get("value") or b"", servable_content_type(data.get("content_type") or "")

    async def put(self, key: str, value: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        key, value, content_type = validate_put(key, value, content_type, self.max_value_bytes)
        if self._direct():
            await self._call(key, lambda epoch, shard: KvRequest(KvOp.PUT, shard, epoch, key=key, value=value, content_type=content_type))
        else:
            await self._api("kv.put", {"key": key, "value": value, "content_type": content_type})

    async def delete(self, key: str) -> None:
        validate_key(key)
        if self._direct():
            await self._call(key, lambda epoch, shard: KvRequest(KvOp.DELETE, shard, epoch, key=key))
        else:
            await self._api("kv.delete", {"key": key})

    async def list(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> tuple[list[str], str | None]:
        """One page of keys (sorted within a shard, shards in order) and the cursor for the next."""
        validate_prefix(prefix)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise ToruaError("bad_request", f"limit must be an integer from 1 to {MAX_LIMIT}")
        if cursor is not None and not isinstance(cursor, str):
            raise ToruaError("bad_request", "cursor must be a string (the one the previous page returned) or None")
        if self._direct():
            assert self._router is not None
            try:
                return await list_keys(self._router, prefix, limit, cursor or None, self.timeout)
            except NatsError as exc:
                raise nats_error("list", exc) from None
        data = await self._api("kv.list", {"prefix": prefix, "limit": limit, "cursor": cursor})
        return list(data.get("keys") or []), data.get("next_cursor")

    # ------------------------------------------------------------------ graphs

    def graph(self, name: str) -> Graph:
        """One graph (`torua.graph.client.Graph`): vertex and edge operations one hop to
        the node, the rest through the gateways' NATS API."""
        return Graph(self, name)

    def rag(self, name: str) -> "Corpus":
        """A GraphRAG corpus (torua.rag.client.Corpus): documents in, questions answered."""
        from torua.rag.client import Corpus

        return Corpus(self, name)

    async def graphs(self) -> list[dict[str, Any]]:
        """Every graph of the cluster with its settings (as `GET /graphs`)."""
        return list((await self._api("graph.list", {}))["graphs"])

    async def _graph_catalog(self) -> GraphCatalog | None:
        """The graph catalog, watched; None when this client cannot read it (no bucket yet,
        no JetStream access): graph calls then go through the gateway."""
        if self._nc is None:
            raise ToruaError("unavailable", "the client is not connected: use `async with Client(...)` or `await client.connect()`")
        if self._catalog is None:
            catalog = GraphCatalog(self._nc)
            try:
                await catalog.open()
            except ToruaError:
                return None
            await catalog.start()
            self._catalog = catalog
        return self._catalog

    # ------------------------------------------------------------ API keys

    async def create_key(
        self, name: str, role: str, graphs: list[str] | None = None, prefixes: list[str] | None = None,
        rate: float | None = None, max_bytes: int | None = None,
    ) -> dict[str, Any]:
        """A new API key (this client's key must be an admin one): its record with its
        `token`, which is shown this once. `graphs`/`prefixes` make a tenant key;
        `rate` (requests a second) and `max_bytes` (per request) limit it."""
        given = {"graphs": graphs, "prefixes": prefixes, "rate": rate, "max_bytes": max_bytes}
        payload: dict[str, Any] = {"name": name, "role": role, **{k: v for k, v in given.items() if v is not None}}
        return await self._api("auth.keys.create", payload)

    async def keys(self) -> list[dict[str, Any]]:
        """Every API key (no token, no hash), revoked ones too."""
        return list((await self._api("auth.keys.list", {}))["keys"])

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke an API key: every gateway refuses it from now on."""
        return await self._api("auth.keys.revoke", {"id": key_id})

    # ------------------------------------------------------------- plumbing

    def _direct(self) -> bool:
        if self._nc is None or self._maps is None:
            raise ToruaError("unavailable", "the client is not connected: use `async with Client(...)` or `await client.connect()`")
        return self._maps.current is not None

    async def _call(self, key: str, build, eventual: bool = False) -> KvReply:
        assert self._router is not None and self._maps is not None and self._maps.current is not None
        shard = shard_for_key(key, self._maps.current.num_shards)
        try:
            reply = await self._router.call(shard, lambda epoch: build(epoch, shard), self.timeout, eventual)
        except NatsError as exc:
            raise nats_error(f"shard {shard}", exc) from None
        if not reply.ok:
            raise ToruaError(reply.error_code or "internal", reply.error_message or "the node refused the request")
        return reply

    async def _api(self, call: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert self._nc is not None
        try:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
            msg = await self._nc.request(f"{subjects.API}.{call}", msgpack.packb(payload, use_bin_type=True), timeout=self.timeout, headers=headers)
        except NoRespondersError:
            raise ToruaError("unavailable", "no shard map and no gateway answering on torua.api") from None
        except NatsTimeout:
            raise ToruaError("timeout", f"{call}: no answer within {self.timeout:g}s") from None
        except NatsError as exc:
            raise nats_error(call, exc) from None
        try:
            data = msgpack.unpackb(msg.data, raw=False)
        except Exception:  # msgpack raises several unrelated types
            raise ToruaError("internal", f"{call}: the gateway's answer is not msgpack") from None
        if not isinstance(data, dict):
            raise ToruaError("internal", f"{call}: the gateway's answer is not a map")
        if "error" in data:
            err = data["error"] if isinstance(data["error"], dict) else {}
            fields = err.get("fields")
            raise ToruaError(err.get("code", "internal"), err.get("message", ""), fields=fields if isinstance(fields, dict) else None)
        return data
