"""A JetStream KV bucket mirrored in memory: watched, so a read costs nothing and
a change made anywhere arrives within moments.

`BucketMirror` keeps `entries` (key -> decoded value) from a watch that starts
over after any failure (no bucket yet while the cluster forms, no permission,
connection lost), and reads one key from the bucket on demand for what the
watch may not have brought yet. The graph catalog (`torua.graph.catalog_store`)
and the API keys (`torua.key_ring`) are two.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Generic, TypeVar

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from torua.protocol.errors import ToruaError
from torua.routing import RETRY_AFTER_SECONDS
from torua.stopping import cancel_and_wait

T = TypeVar("T")

RETRY_SECONDS = 1.0


class BucketMirror(Generic[T]):
    def __init__(self, nc: NATS, bucket: str, decode: Callable[[bytes], T], what: str, log: logging.Logger) -> None:
        self._nc = nc
        self._bucket_name = bucket
        self._decode = decode
        self.what = what  # "the graph catalog": for messages
        self._log = log
        self._kv: KeyValue | None = None
        self.entries: dict[str, T] = {}
        self.synced = False  # the watch has delivered every entry there was when it started
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start watching (in the background: the bucket may not exist yet while the cluster forms)."""
        self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        """Stop watching; bounded, whatever nats-py does with the cancellation."""
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task, 3.0, f"the watch of {self.what}")

    async def open(self) -> None:
        """Check the bucket can be read here (`unavailable` when there is none yet, or no access)."""
        await self._bucket()

    def unavailable(self, doing: str, exc: BaseException) -> ToruaError:
        return ToruaError("unavailable", f"cannot {doing} {self.what}: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS)

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._nc.jetstream().key_value(self._bucket_name)
            except BucketNotFoundError:
                raise ToruaError("unavailable", f"{self.what} does not exist yet (the coordinator makes it)", retry_after=RETRY_AFTER_SECONDS) from None
            except NatsError as exc:
                raise self.unavailable("read", exc) from None
        return self._kv

    async def _watch(self) -> None:
        while not self._stopping:
            watcher = None
            try:
                kv = await self._bucket()
                watcher = await kv.watchall()
                if self._stopping:  # a cancellation lost in watchall: stop() asks again, but no need to wait for it
                    return
                fresh: dict[str, T] = {}
                async for entry in watcher:
                    if entry is None:  # the end of what was there: from now on, changes as they come
                        self.entries, self.synced = fresh, True
                        fresh = self.entries
                        continue
                    self._take(fresh, entry.key, entry.value, entry.operation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no bucket yet, no permission, connection lost: try again
                self._log.debug("%s watch: %s", self.what, getattr(exc, "message", None) or exc or type(exc).__name__)
            finally:
                if watcher is not None:
                    try:
                        await watcher.stop()
                    except Exception:
                        pass
            self.synced = False
            await asyncio.sleep(RETRY_SECONDS)

    def _take(self, entries: dict[str, T], key: str, value: bytes | None, operation: str | None) -> None:
        if operation in (KV_DEL, KV_PURGE) or not value:
            entries.pop(key, None)
            return
        try:
            entries[key] = self._decode(value)
        except ToruaError:
            self._log.warning("ignoring a malformed entry %r of %s", key, self.what)

    async def read_entry(self, key: str) -> tuple[T, int] | None:
        """(the value, its revision) as the bucket has it now; None: there is none."""
        kv = await self._bucket()
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            self.entries.pop(key, None)
            return None
        except NatsError as exc:
            raise self.unavailable("read", exc) from None
        if not entry.value:
            return None
        found = self._decode(entry.value)
        self.entries[key] = found
        return found, entry.revision or 0
