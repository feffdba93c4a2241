"""Answering a request a node got over NATS."""

from __future__ import annotations

import logging
from typing import Any

from torua.protocol.codec import encode

log = logging.getLogger("torua.node")


async def reply(msg: Any, message: Any) -> None:
    """Send `message` (a protocol dataclass) to `msg`'s reply subject, if it has one;
    a reply that cannot be sent (the connection is gone) is logged, not raised."""
    if not msg.reply:
        return
    try:
        await msg.respond(encode(message))
    except Exception as exc:
        log.warning("could not reply on %s: %s", msg.subject, exc)
