"""One request of each kind the bench measures: the anchors and Torua."""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
import msgpack
import nats
from nats.js.api import KeyValueConfig, StorageType

from torua.bench.load import Op
from torua.bench.procs import ECHO_SUBJECT, BenchError
from torua.client import Client

ANCHORS = ("nats-echo", "aiohttp-echo-get", "aiohttp-echo-put", "jskv-get", "jskv-put")
TORUA = ("http-get", "http-put", "nats-api-get", "nats-api-put", "client-get", "client-put")
# Each Torua figure runs right after (or before) its anchor, so drift hits both alike.
ORDER = (
    "nats-echo", "client-get", "nats-api-get", "aiohttp-echo-get", "http-get", "jskv-get",
    "jskv-put", "client-put", "nats-api-put", "aiohttp-echo-put", "http-put",
)
BUCKET = "torua_bench"
GET_PREFIX = "bench/get/"


class Targets:
    def __init__(self, nats_url: str, js_nats_url: str, http_url: str | None, echo_http_url: str | None,
                 value_size: int, keys: int, timeout: float = 5.0, api_key: str = "") -> None:
        self.nats_url, self.js_nats_url = nats_url, js_nats_url
        self.api_key = api_key  # every request to Torua carries it ("": a Torua without API keys)
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.http_url, self.echo_http_url = http_url, echo_http_url
        self.value = os.urandom(value_size)
        self.keys = max(1, keys)
        self.timeout = timeout
        self.nc = self.js_nc = self.kv = self.session = self.client = None
        self.client_mode = "not used"

    async def open(self, names: list[str], max_concurrency: int) -> None:
        self.nc = await nats.connect(self.nats_url, name="torua-bench")
        if any(n.startswith("jskv") for n in names):
            self.js_nc = self.nc if self.js_nats_url == self.nats_url else await nats.connect(self.js_nats_url, name="torua-bench-js")
            js = self.js_nc.jetstream()
            try:
                await js.delete_key_value(BUCKET)
            except Exception:
                pass  # not there yet
            # direct=True: reads served by direct get, as `nats kv add` sets up by default.
            self.kv = await js.create_key_value(KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE, direct=True))
            await self._fill(lambda k: self.kv.put(k.replace("/", "."), self.value))
        if any(n.startswith(("http", "aiohttp")) for n in names):
            connector = aiohttp.TCPConnector(limit=max(100, max_concurrency))
            self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout), headers=self.auth)
        if any(n.startswith("client") for n in names):
            self.client = await Client(self.nats_url, timeout=self.timeout, api_key=self.api_key).connect()
            direct = getattr(self.client, "_direct", lambda: False)
            for _ in range(50):
                if direct():
                    break
                await asyncio.sleep(0.1)
            self.client_mode = "direct to the shard's node" if direct() else "fallback via the gateway's NATS API"
        if any(n in TORUA and n.endswith("-get") for n in names):
            await self._fill(lambda k: self._api("put", {"key": k, "value": self.value}))

    async def close(self) -> None:
        if self.client is not None:
            logging.getLogger("torua.bus").setLevel(logging.ERROR)  # "disconnected" is expected here
            await self.client.close()
        if self.session is not None:
            await self.session.close()
        if self.kv is not None:
            try:
                await self.js_nc.jetstream().delete_key_value(BUCKET)
            except Exception:
                pass
        for nc in {id(c): c for c in (self.js_nc, self.nc) if c is not None}.values():
            await nc.close()

    async def _fill(self, put) -> None:
        """Write the keys the GET measurements read, 64 at a time."""
        for start in range(0, self.keys, 64):
            await asyncio.gather(*(put(f"{GET_PREFIX}{j}") for j in range(start, min(self.keys, start + 64))))

    async def _api(self, call: str, payload: dict) -> dict:
        msg = await self.nc.request(f"torua.api.kv.{call}", msgpack.packb(payload, use_bin_type=True), timeout=self.timeout, headers=self.auth)
        data = msgpack.unpackb(msg.data, raw=False)
        if isinstance(data, dict) and "error" in data:
            raise BenchError(f"kv.{call}: {data['error']}")
        return data

    async def _http(self, method: str, url: str, expect: int, body: bytes | None = None) -> None:
        async with self.session.request(method, url, data=body) as resp:
            data = await resp.read()
            if resp.status != expect:
                raise BenchError(f"{method} {url}: HTTP {resp.status} {data[:200]!r}")

    def op(self, name: str, concurrency: int) -> Op:
        value, keys, timeout = self.value, self.keys, self.timeout

        def get_key(i: int) -> str:
            return f"{GET_PREFIX}{i % keys}"

        def put_key(i: int) -> str:
            return f"bench/put/{name}/{concurrency}/{i}"

        async def nats_echo(i: int) -> None:
            await self.nc.request(ECHO_SUBJECT, value, timeout=timeout)

        async def jskv_get(i: int) -> None:
            await self.kv.get(get_key(i).replace("/", "."))

        async def jskv_put(i: int) -> None:
            await self.kv.put(put_key(i).replace("/", "."), value)

        async def client_get(i: int) -> None:
            if await self.client.get(get_key(i)) is None:
                raise BenchError(f"client get {get_key(i)}: not found")

        async def client_put(i: int) -> None:
            await self.client.put(put_key(i), value)

        ops = {
            "nats-echo": nats_echo,
            "jskv-get": jskv_get,
            "jskv-put": jskv_put,
            "aiohttp-echo-get": lambda i: self._http("GET", f"{self.echo_http_url}/data/{get_key(i)}", 200),
            "aiohttp-echo-put": lambda i: self._http("PUT", f"{self.echo_http_url}/data/{put_key(i)}", 204, value),
            "http-get": lambda i: self._http("GET", f"{self.http_url}/data/{get_key(i)}", 200),
            "http-put": lambda i: self._http("PUT", f"{self.http_url}/data/{put_key(i)}", 204, value),
            "nats-api-get": lambda i: self._api("get", {"key": get_key(i)}),
            "nats-api-put": lambda i: self._api("put", {"key": put_key(i), "value": value}),
            "client-get": client_get,
            "client-put": client_put,
        }
        return ops[name]
