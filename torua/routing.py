"""Routing a KV operation to the node that holds its shard.

`MapCache` keeps the newest shard map this process has seen: it reads the map
from the JetStream KV bucket at start, whenever a node says `moved`, and whenever
`torua.cluster.map` announces a newer epoch. An announcement is only a hint to
read: the map taken is always the one the coordinator stored (it stores a map
before it announces it), so a forged announcement, from any process allowed to
publish there, changes no routing (docs/design/security.md). A map with a lower
epoch than the one held is ignored, so a late announcement can never roll
routing back.

`ShardRouter.call` sends one request (key-value or graph) to the shard's primary and, on `moved`,
`stale_epoch` or no responder, refreshes the map and tries again until the
request's deadline; past it the caller gets `timeout` (504) or `unavailable` (503).
The gateway and `torua.Client` share it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import logging
import time
from typing import Any, Callable, TypeVar

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import RETRYABLE, ToruaError
from torua.protocol.messages import KvReply, ShardEntry, ShardMap
from torua.protocol.vocabulary import ShardState

log = logging.getLogger("torua.routing")

RETRY_AFTER_SECONDS = 1.0
# Pauses between the reads of the stored map after an announcement it does not hold yet.
ANNOUNCED_READ_PAUSES = (0.05, 0.1, 0.2, 0.4)

R = TypeVar("R")


class MapCache:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self.current: ShardMap | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._sub = None
        self._kv = None
        self._changed = asyncio.Event()
        self._wanted: ShardMap | None = None  # the highest announced map not yet found in the store
        self._following: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(subjects.MAP_ANNOUNCE, cb=self._on_announce)
        await self.refresh()

    async def stop(self) -> None:
        if self._following is not None:
            self._following.cancel()
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # connection already closed
                pass

    def epoch(self) -> int:
        """The epoch of the map in hand; 0 while there is none."""
        return self.current.epoch if self.current is not None else 0

    def offer(self, shard_map: ShardMap) -> bool:
        """Take `shard_map` if it is newer than the one held."""
        if self.current is None or shard_map.epoch > self.current.epoch:
            self.current = shard_map
            self._changed.set()
            self._changed = asyncio.Event()
            return True
        return False

    async def _on_announce(self, msg) -> None:
        try:
            announced = decode(ShardMap, msg.data)
        except ToruaError as exc:
            log.warning("ignoring malformed shard map on %s: %s", msg.subject, exc.message)
            return
        if announced.epoch <= self.epoch():
            return
        if self._wanted is None or announced.epoch > self._wanted.epoch:
            self._wanted = announced
        # One reader at a time, whatever the rate of announcements (a flood of forged ones
        # costs a few reads, not one read loop each).
        if self._following is None or self._following.done():
            self._following = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        """Read the store until it holds the highest epoch announced; a replica of the
        bucket may not have the write yet, so read again a few times."""
        try:
            for pause in (0.0, *ANNOUNCED_READ_PAUSES):
                if pause:
                    await asyncio.sleep(pause)
                if self._wanted is None or self._wanted.epoch <= self.epoch():
                    return
                await self.refresh()
            wanted = self._wanted
            if wanted is not None and wanted.epoch > self.epoch():
                log.warning(
                    "ignoring a shard map announced at epoch %d (leader %s, term %d) that the store does not hold (it holds epoch %d)",
                    wanted.epoch, wanted.leader, wanted.term, self.epoch(),
                )
        finally:
            self._wanted = None

    async def refresh(self) -> None:
        """Read the map from JetStream; concurrent callers share one read."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._fetch())
        await asyncio.shield(self._refreshing)

    async def _fetch(self) -> None:
        try:
            if self._kv is None:
                self._kv = await self._nc.jetstream().key_value(subjects.CLUSTER_BUCKET)
            entry = await self._kv.get(subjects.MAP_KEY)
        except Exception as exc:  # bucket or key not there yet, or JetStream busy
            log.debug("no shard map in JetStream yet: %s", exc)
            return
        if entry.value:
            try:
                self.offer(decode(ShardMap, entry.value))
            except ToruaError as exc:
                log.warning("stored shard map is malformed: %s", exc.message)

    async def wait_newer(self, epoch: int, timeout: float) -> None:
        """Wait (at most `timeout`) for a map with an epoch above `epoch`."""
        if self.current is not None and self.current.epoch > epoch:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass


class ShardRouter:
    def __init__(self, nc: NATS, maps: MapCache, api_key: str | None = None) -> None:
        """With `api_key` (str; "" for none), an application's router (torua.Client): its
        requests go to the nodes' ``app.<kind>`` subjects carrying that key in their
        `api_key` field, which the node checks (torua.access.APP_OPERATIONS). (Not in a
        NATS header: nats-py takes ~40 µs more for a request with headers, 10-15% of a
        one-hop get.) Without (None), the gateway's, whose callers it checked itself."""
        self._nc = nc
        self.maps = maps
        self._prefix = "" if api_key is None else "app."
        self._api_key = api_key or ""

    def shard_map(self) -> ShardMap:
        if self.maps.current is None:
            raise ToruaError("unavailable", "the cluster has no shard map yet", retry_after=RETRY_AFTER_SECONDS)
        return self.maps.current

    async def call(
        self, shard_id: int, build: Callable[[int], Any], timeout: float, eventual: bool = False, kind: str = "kv", reply_type: type[R] = KvReply,
        patient: bool = False,
    ) -> R:
        """Send `build(epoch)` to the primary of `shard_id` on its node's `kind` subject
        (``kv``: a `KvRequest` answered by a `KvReply`; ``graph``: `GraphRequest` and
        `GraphReply`), retrying within `timeout` seconds.

        With `eventual`, the first try goes to a random in-sync copy (spreading reads
        over replicas); any retry goes to the primary. An attempt waits a third of
        `timeout` (a node that died never answers); with `patient`, all that is left of
        it: for a request the node itself holds to the deadline it is sent (a graph
        index query waits for its index to catch up), which a retry would only queue
        again behind itself."""
        deadline = time.monotonic() + timeout
        backoff = 0.005
        last_error: ToruaError | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise last_error or ToruaError("timeout", f"no answer for shard {shard_id} within {timeout:g}s")
            if self.maps.current is None:
                await self.maps.refresh()
            try:
                entry = self._holder(shard_id)
            except ToruaError as exc:
                if exc.code == "unknown_shard":
                    raise
                # The map may change soon (formation, node back); wait for it within the deadline.
                last_error = exc
                if self.maps.current is None:  # the cluster is forming: wait for its first map
                    await self.maps.wait_newer(-1, min(remaining, 0.25))
                    continue
                epoch = self.maps.current.epoch
                await self.maps.refresh()  # a newer map may be stored and its announcement not read yet
                if self.maps.current.epoch == epoch:
                    await self.maps.wait_newer(epoch, min(remaining, 0.25))
                if self.maps.current.epoch == epoch:
                    raise exc
                continue
            epoch = self.maps.current.epoch  # type: ignore[union-attr]
            request = build(epoch)
            if self._api_key:
                request = dataclasses.replace(request, api_key=self._api_key)
            target = entry.primary
            if eventual and last_error is None and entry.in_sync:
                target = random.choice(entry.in_sync)
            # One attempt gets a part of the deadline: a node that died (or was paused)
            # with our request in hand never answers, and the map may name another
            # holder before the deadline. Retrying a put or delete is harmless: both are
            # whole-value and idempotent.
            attempt = remaining if patient else min(remaining, max(0.5, timeout / 3))
            try:
                msg = await self._nc.request(subjects.node(target, self._prefix + kind), encode(request), timeout=attempt)  # type: ignore[arg-type]
            except NoRespondersError:
                last_error = ToruaError(
                    "unavailable", f"node {entry.primary} holding shard {shard_id} is not answering", retry_after=RETRY_AFTER_SECONDS
                )
            except NatsTimeout:
                last_error = ToruaError("timeout", f"node {target} did not answer for shard {shard_id} within {timeout:g}s")
            else:
                reply = decode(reply_type, msg.data)
                if reply.error_code not in RETRYABLE:
                    return reply
                last_error = ToruaError(
                    "unavailable", f"shard {shard_id}: {reply.error_message or reply.error_code}", retry_after=RETRY_AFTER_SECONDS
                )
                if reply.epoch > epoch:
                    await self.maps.wait_newer(epoch, min(0.05, max(0.0, deadline - time.monotonic())))
            await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, 0.2)
            await self.maps.refresh()

    def _holder(self, shard_id: int) -> ShardEntry:
        shard_map = self.shard_map()
        if not 0 <= shard_id < shard_map.num_shards:
            raise ToruaError("unknown_shard", f"shard {shard_id} does not exist (0..{shard_map.num_shards - 1})")
        entry = shard_map.entry(shard_id)
        if entry.primary is None:
            raise ToruaError("unavailable", f"shard {shard_id} has no holder yet", retry_after=RETRY_AFTER_SECONDS)
        if entry.state == ShardState.UNAVAILABLE:
            raise ToruaError(
                "unavailable",
                f"shard {shard_id} lives only on node {entry.primary}, which is down; it answers again when that node returns",
                retry_after=RETRY_AFTER_SECONDS,
            )
        return entry
