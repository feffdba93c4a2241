"""The cluster settings on the leading coordinator (`GET|PUT /cluster/config`).

At start the settings stored in key `cluster_config` of the `torua_cluster` bucket
win over the coordinator's flags. A change (`torua.coordinator.config.set`) goes
in a written order: validate (`torua.cluster_settings.apply_change`: a bad change
raises and nothing happens), persist (compare-and-set on the revision last read
or written), apply here, then broadcast a `config` message to the nodes and
gather their acks. A node that misses the broadcast, or starts later, gets the
settings in the LeaseGrant answering its next heartbeat, which shows an older
`settings_revision`. What it may ask of the leader is
`torua.coordinator.ports.SettingsLeader`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from nats.js.errors import KeyWrongLastSequenceError

from torua.bus import set_log_level
from torua.cluster_settings import ClusterSettings, SettingsError, apply_change, from_dict
from torua.coordinator.ports import SettingsLeader
from torua.protocol.codec import decode, to_dict
from torua.protocol.errors import ToruaError
from torua.protocol.messages import ClusterConfig, Heartbeat, LeaseGrant, SettingsChange, SettingsUpdate
from torua.protocol.vocabulary import BroadcastKind

log = logging.getLogger("torua.coordinator.settings")

# Beside the settings in the stored record (ignored by cluster_settings.from_dict).
LEASES_HELD_UNTIL = "leases_held_until"


class SettingsKeeper:
    def __init__(self, leader: SettingsLeader) -> None:
        self.c = leader
        self.revision = 0  # of the stored settings; 0 = never stored, the flags are in force
        # Stored with the settings (wall clock): until then a lease granted before the last
        # change may hold. Only a new leader needs it (it has no record of those grants).
        self.leases_held_wall = 0.0
        self._changing = asyncio.Lock()

    async def load(self) -> None:
        """Take the stored settings, if any, over the flags (before the map is loaded,
        so a stored replication factor is the one the map is brought to)."""
        stored = await self._read()
        if stored is not None:
            settings, self.revision = stored
            overridden = {k: v for k, v in settings.to_dict().items() if getattr(self.c.settings, k) != v}
            log.info("cluster settings at revision %d%s", self.revision, f"; they override the flags: {overridden}" if overridden else "")
            self._apply_here(settings)

    async def _read(self) -> tuple[ClusterSettings, int] | None:
        assert self.c.state is not None
        try:
            stored = await self.c.state.load_settings()
        except ValueError as exc:
            log.error("the stored cluster settings are not readable JSON (%s); keeping the settings in force", exc)
            return None
        if stored is None:
            return None
        data, revision = stored
        if isinstance(data, dict) and isinstance(data.get(LEASES_HELD_UNTIL), (int, float)):
            self.leases_held_wall = float(data[LEASES_HELD_UNTIL])
        try:
            return from_dict(data), revision
        except SettingsError as exc:
            log.error("the stored cluster settings (revision %d) are refused: %s; keeping the settings in force", revision, exc)
            return None

    # ---------------------------------------------------------------- API

    async def current(self, data: bytes) -> ClusterConfig:
        return ClusterConfig(settings=self.c.settings.to_dict(), revision=self.revision)

    async def change(self, data: bytes) -> ClusterConfig:
        request = decode(SettingsChange, data)
        async with self._changing:  # one change at a time, broadcast included, so nodes see them in order
            try:
                new = apply_change(self.c.settings, request.changes)
            except SettingsError as exc:
                raise ToruaError("bad_request", f"settings refused, nothing changed: {exc}", fields=exc.problems) from None
            running = self.c.moves_in_flight()
            if new.replication_factor != self.c.settings.replication_factor and running:
                # a copy being moved must not also be added or dropped as a replica
                raise ToruaError(
                    "conflict",
                    f"{running} shard move(s) running or queued: change replication_factor once they are done "
                    "(GET /cluster/info lists them); nothing changed",
                )
            assert self.c.state is not None
            self.c.check_leading()
            # A leader elected soon after a change that shortens the timing has no record
            # of the longer grants sent before it: store how long they may hold.
            held = time.time() + max(self.c.lease_seconds(), max(self.c.leases.left(time.monotonic()).values(), default=0.0))
            try:
                revision = await self.c.state.save_settings(new.to_dict() | {LEASES_HELD_UNTIL: held})
            except KeyWrongLastSequenceError:
                stored = await self._read()  # another coordinator wrote them: take those
                if stored is not None:
                    self.revision = stored[1]
                    await self.apply(stored[0])
                raise ToruaError("conflict", "the settings were changed elsewhere meanwhile; nothing changed, try again") from None
            except Exception as exc:  # JetStream without a majority, NATS reconnecting, ...
                raise ToruaError("unavailable", f"could not store the settings ({exc or type(exc).__name__}); nothing changed") from None
            log.info("cluster settings revision %d: %s", revision, {k: v for k, v in new.to_dict().items() if getattr(self.c.settings, k) != v})
            self.revision = revision
            await self.apply(new)
            expected = self.c.healthy_nodes()
            gathered = await self.c.broadcast(BroadcastKind.CONFIG, to_dict(self.update()), expected)
        for reply in gathered.replies:
            if not reply.ok:
                log.warning("node %s did not take settings revision %d: %s %s", reply.node_id, revision, reply.error_code, reply.error_message)
        acked = gathered.acked()
        return ClusterConfig(new.to_dict(), revision, applied_by=acked, missing=sorted(expected - set(acked)))

    # ------------------------------------------------------------- effects

    def update(self) -> SettingsUpdate:
        return SettingsUpdate(self.revision, self.c.settings.to_dict(), term=self.c.term)

    def leases_held_until(self) -> float:
        """Monotonic: until then a lease granted before the last settings change may hold."""
        return time.monotonic() + (self.leases_held_wall - time.time())

    def with_settings(self, grant: LeaseGrant, beat: Heartbeat) -> LeaseGrant:
        """The grant, carrying the settings when the node runs with another revision."""
        if self.revision and beat.settings_revision != self.revision:
            return replace(grant, settings=self.update())
        return grant

    async def apply(self, new: ClusterSettings) -> None:
        """Put `new` in force on this coordinator; a new replication factor goes into
        the map, and the next tick adds or removes copies (ReplicaKeeper.reconcile)."""
        self._apply_here(new)
        # Leases granted under the old timing hold back failovers only as long as the
        # nodes really hold them: Coordinator.leases follows each node's next grant.
        if self.c.map is not None and self.c.map.replication_factor != new.replication_factor:
            try:
                await self.keep_map_factor()
            except Exception as exc:  # stored and in force: the next tick writes the map
                log.warning("the map takes replication factor %d on a later tick: %s", new.replication_factor, exc)

    async def keep_map_factor(self) -> None:
        """Bring the map's replication factor to the setting's (every tick; idempotent),
        once no move runs; the replica keeper then adds or removes copies."""
        c = self.c
        rf = c.settings.replication_factor
        if c.map is None or c.map.replication_factor == rf or c.moves_in_flight():
            return
        log.info("replication factor %d -> %d: adding or removing copies", c.map.replication_factor, rf)
        if await c.update_map(lambda m: replace(m, replication_factor=rf) if m is not None else m):
            c.replan_soon()

    def _apply_here(self, s: ClusterSettings) -> None:
        self.c.use_settings(s)
        set_log_level(s.log_level)
