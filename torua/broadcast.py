"""Asking every node at once: publish one `BroadcastMessage` on
`torua.cluster.broadcast` with a reply inbox, and gather the nodes' `BroadcastReply`
until every expected node has answered or the deadline passes.

Used by the coordinator (a settings change) and the gateway (`POST /broadcast`).
The expected nodes are the ones the coordinator knows as healthy; a node that
answers without being expected is reported too, an expected one that did not
answer is `missing`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import BroadcastMessage, BroadcastReply

log = logging.getLogger("torua.broadcast")

# Nodes answer from memory; a healthy one that is silent this long is reported missing.
BROADCAST_TIMEOUT = 2.0
MAX_KIND_CHARS = 64


@dataclass(frozen=True)
class Gathered:
    replies: list[BroadcastReply]  # one per node, sorted by node id
    missing: list[str]  # expected nodes that did not answer in time, sorted

    def acked(self) -> list[str]:
        """The nodes that answered ok."""
        return [r.node_id for r in self.replies if r.ok]


def check_kind(kind: Any) -> str:
    """A broadcast kind: a short non-empty string; `bad_request` otherwise."""
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KIND_CHARS or not kind.isprintable():
        raise ToruaError("bad_request", f"kind must be a string of 1 to {MAX_KIND_CHARS} printable characters")
    return kind


def missing(expected: set[str] | None, answered: set[str]) -> list[str]:
    """Expected nodes that have not answered (none when nothing was expected)."""
    return sorted((expected or set()) - answered)


async def gather(nc: Any, kind: str, body: dict[str, Any], expected: set[str] | None, timeout: float = BROADCAST_TIMEOUT) -> Gathered:
    """Broadcast and gather replies. With `expected` None (nobody could say which
    nodes are healthy) it waits the whole `timeout`; otherwise until all expected answered."""
    try:
        payload = encode(BroadcastMessage(kind=kind, body=body, sent_at=time.time()))
    except (OverflowError, ValueError, TypeError) as exc:  # e.g. an integer msgpack cannot carry
        raise ToruaError("bad_request", f"the broadcast body cannot be encoded: {exc}") from None
    replies: dict[str, BroadcastReply] = {}
    done = asyncio.Event()
    if expected is not None and not expected:
        done.set()

    async def on_reply(msg: Any) -> None:
        try:
            reply = decode(BroadcastReply, msg.data)
        except ToruaError as exc:
            log.warning("ignoring a malformed broadcast reply: %s", exc.message)
            return
        replies.setdefault(reply.node_id, reply)
        if expected is not None and expected <= replies.keys():
            done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        # The subscription goes to the server before the publish, on the same connection.
        await nc.publish(subjects.BROADCAST, payload, reply=inbox)
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            pass
    finally:
        try:
            await sub.unsubscribe()
        except Exception:  # the connection is gone already
            pass
    answered = dict(sorted(replies.items()))
    return Gathered(list(answered.values()), missing(expected, set(answered)))
