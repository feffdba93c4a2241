"""Edge protocol messages to several shards of one node, sent as one message.

`PeerLanes` shares a message among the callers asking one peer *shard* at once.
A GraphRAG ingest spreads its edges thin: a batch of documents gives each shard a
few edges for each of the fifteen others, so the lanes sent one message per edge,
nearly: two per edge with its confirm. Those shards live on a few nodes. A
`NodeMux` gathers the lane messages that leave in the same turns of the event loop
for shards of one node (by the shard map: their primary) into one `GraphRequest`
naming its `shards`; that node handles each shard's halves as a message of its own
(`GraphService._edge_parts`) and answers every half, with the error of each shard it
could not serve.

A shard's part that comes back refused (moved since the map was read, not led
there any more), and a whole message the node refused (a node of an older release
takes `shards` only for searches), are sent again on their own, shard by shard (the
router then finds the primary); a message that timed out fails its parts with that
(sending again would only wait again). One message carries at most `BATCH` halves
and one part per shard (so never one edge twice).

>>> import asyncio
>>> from types import SimpleNamespace
>>> sent = []
>>> async def by_node(shards, op, graph, halves, timeout):
...     sent.append(("node", shards))
...     return [f"{h}!" for h in halves], {}
>>> async def by_shard(shard, op, graph, halves, timeout):
...     sent.append(("shard", shard))
...     return [f"{h}?" for h in halves]
>>> async def demo():
...     mux = NodeMux({1: "n1", 2: "n1", 3: "n2"}.get, by_node, by_shard)
...     g = SimpleNamespace(uid="u")
...     return await asyncio.gather(mux.send(1, "a", g, ["x"], 1.0), mux.send(2, "a", g, ["y", "z"], 1.0), mux.send(3, "a", g, ["w"], 1.0))
>>> asyncio.run(demo()), sent
([['x!'], ['y!', 'z!'], ['w?']], [('node', [1, 2]), ('shard', 3)])
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from torua.node.peer_lanes import BATCH, Send
from torua.protocol.errors import ToruaError

# shards, op, graph, halves, timeout -> (an answer per half, the error of each shard not served)
SendNode = Callable[[list[int], Any, Any, list[Any], float], Awaitable[tuple[list[Any], dict[int, ToruaError]]]]
GIVE_UP = frozenset({"timeout"})  # a message that failed so fails its parts; any other failure: each part on its own


@dataclass
class _Part:
    shard: int
    halves: list[Any]
    timeout: float
    answered: asyncio.Future[list[Any]]


@dataclass
class _Message:
    graph: Any
    parts: list[_Part] = field(default_factory=list)
    size: int = 0

    def takes(self, shard: int, halves: list[Any]) -> bool:
        return self.size + len(halves) <= BATCH and all(p.shard != shard for p in self.parts)


class NodeMux:
    def __init__(self, node_of: Callable[[int], str | None], send_node: SendNode, send_shard: Send) -> None:
        self._node_of = node_of
        self._send_node = send_node
        self._send_shard = send_shard
        self._open: dict[tuple[str, Any, str], _Message] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # messages being delivered (referenced until done)

    def __len__(self) -> int:
        return len(self._open)

    async def send(self, shard: int, op: Any, graph: Any, halves: list[Any], timeout: float) -> list[Any]:
        """The answers of `shard`'s primary to `halves` (what `PeerLanes` sends)."""
        node = self._node_of(shard)
        if node is None:
            return await self._send_shard(shard, op, graph, halves, timeout)
        key = (node, op, graph.uid)
        message = self._open.get(key)
        if message is None or not message.takes(shard, halves):
            message = self._open[key] = _Message(graph)
            loop = asyncio.get_running_loop()
            # two turns: the lanes' carriers started in this turn ask in the next one
            loop.call_soon(loop.call_soon, self._close, key, message, op)
        answered: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        message.parts.append(_Part(shard, list(halves), timeout, answered))
        message.size += len(halves)
        return await answered

    def _close(self, key: tuple[str, Any, str], message: _Message, op: Any) -> None:
        if self._open.get(key) is message:
            del self._open[key]
        task = asyncio.ensure_future(self._deliver(message, op))
        self._tasks.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its parts were told

    async def _deliver(self, message: _Message, op: Any) -> None:
        parts = message.parts
        if len(parts) == 1:
            await self._alone(parts[0], op, message.graph)
            return
        halves = [h for p in parts for h in p.halves]
        try:
            answers, refused = await self._send_node([p.shard for p in parts], op, message.graph, halves, max(p.timeout for p in parts))
        except ToruaError as exc:
            if exc.code in GIVE_UP:
                for p in parts:
                    _settle(p, exc)
                return
            answers, refused = [], {p.shard: exc for p in parts}
        except BaseException as exc:
            for p in parts:
                _settle(p, ToruaError("unavailable", f"the message to shard {p.shard} was not sent ({type(exc).__name__})"))
            raise
        start = 0
        again = []
        for p in parts:
            if p.shard in refused:
                again.append(p)
            else:
                _settle(p, answers[start : start + len(p.halves)])
            start += len(p.halves)
        await asyncio.gather(*(self._alone(p, op, message.graph) for p in again))

    async def _alone(self, part: _Part, op: Any, graph: Any) -> None:
        try:
            _settle(part, await self._send_shard(part.shard, op, graph, part.halves, part.timeout))
        except ToruaError as exc:
            _settle(part, exc)
        except BaseException as exc:
            _settle(part, ToruaError("unavailable", f"the message to shard {part.shard} was not sent ({type(exc).__name__})"))
            raise


def _settle(part: _Part, outcome: list[Any] | ToruaError) -> None:
    if part.answered.done():
        return
    if isinstance(outcome, ToruaError):
        part.answered.set_exception(ToruaError(outcome.code, outcome.message, retry_after=outcome.retry_after))
    else:
        part.answered.set_result(outcome)
