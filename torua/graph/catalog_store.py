"""The catalog of graphs in JetStream, cached (docs/design/graph.md, section 6).

`GraphCatalog` watches the bucket ``torua_graphs`` (made by the coordinator,
like ``torua_cluster``), so a gateway or a `torua.Client` knows every graph's
`GraphRef` without a JetStream read per request. A name it does not hold is
read from the bucket once before it is called unknown (a graph created a moment
ago through another gateway), so `not_found` is always the bucket's word.
Creates are KV creates: of two concurrent `PUT /graphs/{g}`, one wins. The
decisions are `torua.graph.catalog`'s; this module only reads and writes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from torua.graph.catalog import CatalogEntry, GraphSettings, new_entry
from torua.graph.rules import validate_graph_name
from torua.protocol import subjects
from torua.protocol.errors import ToruaError
from torua.routing import RETRY_AFTER_SECONDS
from torua.stopping import cancel_and_wait

log = logging.getLogger("torua.graph.catalog")

RETRY_SECONDS = 1.0


class GraphCatalog:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._kv: KeyValue | None = None
        self.entries: dict[str, CatalogEntry] = {}
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
            await cancel_and_wait(self._task, 3.0, "the graph catalog's watch")

    async def open(self) -> None:
        """Check the catalog can be read here (`unavailable` when there is none yet, or no access)."""
        await self._bucket()

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._nc.jetstream().key_value(subjects.GRAPH_BUCKET)
            except BucketNotFoundError:
                raise ToruaError("unavailable", "the graph catalog does not exist yet (the coordinator makes it)", retry_after=RETRY_AFTER_SECONDS) from None
            except NatsError as exc:
                raise ToruaError("unavailable", f"cannot read the graph catalog: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        return self._kv

    async def _watch(self) -> None:
        while not self._stopping:
            watcher = None
            try:
                kv = await self._bucket()
                watcher = await kv.watchall()
                if self._stopping:  # a cancellation lost in watchall: stop() asks again, but no need to wait for it
                    return
                fresh: dict[str, CatalogEntry] = {}
                async for entry in watcher:
                    if entry is None:  # the end of what was there: from now on, changes as they come
                        self.entries, self.synced = fresh, True
                        fresh = self.entries
                        continue
                    self._take(fresh, entry.key, entry.value, entry.operation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no bucket yet, no permission, connection lost: try again
                log.debug("graph catalog watch: %s", getattr(exc, "message", None) or exc or type(exc).__name__)
            finally:
                if watcher is not None:
                    try:
                        await watcher.stop()
                    except Exception:
                        pass
            self.synced = False
            await asyncio.sleep(RETRY_SECONDS)

    @staticmethod
    def _take(entries: dict[str, CatalogEntry], key: str, value: bytes | None, operation: str | None) -> None:
        if operation in (KV_DEL, KV_PURGE) or not value:
            entries.pop(key, None)
            return
        try:
            entries[key] = CatalogEntry.from_json(value)
        except ToruaError:
            log.warning("ignoring a malformed graph catalog entry %r", key)

    async def read(self, name: str) -> CatalogEntry | None:
        """The entry as the bucket has it now (None: no such graph)."""
        kv = await self._bucket()
        try:
            entry = await kv.get(name)
        except KeyNotFoundError:
            self.entries.pop(name, None)
            return None
        except NatsError as exc:
            raise ToruaError("unavailable", f"cannot read the graph catalog: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        if not entry.value:
            return None
        found = CatalogEntry.from_json(entry.value)
        self.entries[name] = found
        return found

    async def get(self, name: str) -> CatalogEntry:
        """The graph `name`, from the cache or else the bucket; `not_found` if there is none."""
        validate_graph_name(name)
        entry = self.entries.get(name) or await self.read(name)
        if entry is None:
            raise ToruaError("not_found", f"graph {name} does not exist (create it with PUT /graphs/{name})")
        return entry

    async def all(self) -> list[CatalogEntry]:
        """Every graph, by name."""
        if not self.synced:
            await self._bucket()  # unavailable when there is no catalog yet
            raise ToruaError("unavailable", "the graph catalog is not read yet", retry_after=RETRY_AFTER_SECONDS)
        return [self.entries[name] for name in sorted(self.entries)]

    async def create(self, name: str, settings: GraphSettings, now: float) -> tuple[CatalogEntry, bool]:
        """(the entry, True) when this call created it; (the existing one, False) when
        the name was taken, also by a concurrent create that won."""
        kv = await self._bucket()
        entry = new_entry(name, settings, uuid.uuid4().hex, now)
        for _ in range(3):
            try:
                await kv.create(name, entry.to_json())
                self.entries[name] = entry
                return entry, True
            except KeyWrongLastSequenceError:
                existing = await self.read(name)
                if existing is not None:
                    return existing, False
                # deleted between the create and the read: try again
            except NatsError as exc:
                raise ToruaError("unavailable", f"cannot write the graph catalog: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        raise ToruaError("conflict", f"graph {name} is being created and deleted concurrently; try again")

    async def delete(self, name: str) -> CatalogEntry | None:
        """Remove `name` from the catalog; the entry it had (None: there was none)."""
        existing = await self.read(name)
        if existing is None:
            return None
        kv = await self._bucket()
        try:
            await kv.delete(name)
        except NatsError as exc:
            raise ToruaError("unavailable", f"cannot write the graph catalog: {exc or type(exc).__name__}", retry_after=RETRY_AFTER_SECONDS) from None
        self.entries.pop(name, None)
        return existing
