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

import logging
import uuid

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import KeyWrongLastSequenceError

from torua.bucket_mirror import BucketMirror
from torua.graph.catalog import CatalogEntry, GraphSettings, new_entry
from torua.graph.rules import validate_graph_name
from torua.protocol import subjects
from torua.protocol.errors import ToruaError
from torua.routing import RETRY_AFTER_SECONDS

log = logging.getLogger("torua.graph.catalog")


class GraphCatalog(BucketMirror[CatalogEntry]):
    def __init__(self, nc: NATS) -> None:
        super().__init__(nc, subjects.GRAPH_BUCKET, CatalogEntry.from_json, "the graph catalog", log)

    async def read(self, name: str) -> CatalogEntry | None:
        """The entry as the bucket has it now (None: no such graph)."""
        found = await self.read_entry(name)
        return None if found is None else found[0]

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
                raise self.unavailable("write", exc) from None
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
            raise self.unavailable("write", exc) from None
        self.entries.pop(name, None)
        return existing
