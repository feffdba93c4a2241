"""What a node does with a broadcast on `torua.cluster.broadcast`, and with the
cluster settings the coordinator sends it.

Kinds: `ping` answers who the node is (version, map epoch, shard count, settings
revision); `config` takes the settings that concern a node (the heartbeat
interval, the log level) from a `SettingsUpdate`. Any other kind, or a body that
does not decode, is answered `ok: false` with `bad_request` and changes nothing.
The same settings also come in a LeaseGrant when the node's heartbeat shows an
older `settings_revision` (a node that started later or missed the broadcast).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from torua import __version__
from torua.bus import set_log_level
from torua.cluster_settings import SettingsError, from_dict as settings_from_dict
from torua.leadership import accept_term
from torua.node.replies import reply
from torua.protocol.codec import from_dict, unpack
from torua.protocol.errors import ToruaError
from torua.protocol.messages import BroadcastMessage, BroadcastReply, SettingsUpdate

if TYPE_CHECKING:
    from torua.node.service import Node

log = logging.getLogger("torua.node.broadcast")

KINDS = ("config", "ping")


async def on_broadcast(node: "Node", msg: Any) -> None:
    raw: Any = None
    try:
        raw = unpack(msg.data)
        message = from_dict(BroadcastMessage, raw)
    except ToruaError as exc:
        log.warning("ignoring a malformed broadcast: %s", exc.message)
        # the kind asked, known or not (the codec refuses a kind this node does not know)
        kind = raw.get("kind") if isinstance(raw, dict) and isinstance(raw.get("kind"), str) else ""
        result = BroadcastReply(node.config.id, False, kind, error_code=exc.code, error_message=exc.message)
    else:
        result = answer(node, message)
    await reply(msg, result)


def answer(node: "Node", message: BroadcastMessage) -> BroadcastReply:
    me = node.config.id
    try:
        if message.kind == "ping":
            return BroadcastReply(me, True, "ping", detail=ping(node))
        if message.kind == "config":
            apply_settings(node, from_dict(SettingsUpdate, message.body))
            return BroadcastReply(me, True, "config", detail={"settings_revision": node.settings_revision})
        raise ToruaError("bad_request", f"unknown broadcast kind {message.kind!r}; a node knows {', '.join(KINDS)}")
    except ToruaError as exc:
        log.warning("broadcast %r refused: %s", message.kind, exc.message)
        return BroadcastReply(me, False, message.kind, error_code=exc.code, error_message=exc.message)


def ping(node: "Node") -> dict[str, Any]:
    return {
        "version": __version__,
        "epoch": node.epoch,
        "shards": sum(1 for h in node.holdings.values() if h.store is not None and h.role != "absent"),
        "settings_revision": node.settings_revision,
        "heartbeat_interval": node.config.heartbeat_interval,
        "log_level": node.config.log_level,
    }


def apply_settings(node: "Node", update: SettingsUpdate) -> None:
    """Take the settings that concern a node; `ToruaError` (and no change) if they
    come from an older coordinator term or do not validate. The revision is the
    settings key's JetStream revision, which only grows, whoever leads: an update
    older than the one in force (a heartbeat reply overtaken by the broadcast of a
    newer change) is ignored."""
    if not accept_term(node.term, update.term):
        raise ToruaError("stale_epoch", f"coordinator term {update.term} is older than {node.term}: a newer leader speaks for the cluster")
    try:
        settings = settings_from_dict(update.settings)
    except SettingsError as exc:
        raise ToruaError("bad_request", f"settings refused: {exc}", fields=exc.problems) from None
    node.follow_term(update.term)
    if update.revision < node.settings_revision:
        log.debug("ignoring settings revision %d: revision %d is in force", update.revision, node.settings_revision)
        return
    old = node.config
    node.config = replace(old, heartbeat_interval=settings.heartbeat_interval, log_level=settings.log_level)
    node.settings_revision = update.revision
    if settings.log_level != old.log_level:
        set_log_level(settings.log_level)
    log.info("cluster settings revision %d: heartbeat every %gs, log level %s", update.revision, settings.heartbeat_interval, settings.log_level)
    if settings.heartbeat_interval != old.heartbeat_interval:
        node.heartbeat_soon()  # the loop waits out the old interval otherwise
