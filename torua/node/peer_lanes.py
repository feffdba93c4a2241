"""Edge protocol messages to one peer shard, shared by the callers that ask at once.

A primary's edge work (`torua.node.graph_edges`) asks the primaries of other shards
about edge halves: attach, confirm, detach, drop, check. An import gives each of a
node's shards a few hundred edges whose dst shards are all the others, so each
shard asked every peer shard about a few dozen halves, one message and one write
on the peer each. A lane per (peer shard, op, graph) lets `IN_FLIGHT` messages be
on their way at once; what callers ask meanwhile waits and goes together in the
next message (at most `BATCH` halves, and never one edge twice in one message, so
the peer decides each half against the rows as they were). Each caller gets the
answers to its own halves, or the error of the message that carried them: the
same outcome as a message of its own.

No caller holds a lock a peer's answer needs while it waits here (the peer's
handlers take vertex locks of its own shard, which callers never hold while they
ask), so waiting for a shared message adds no cycle.

>>> from types import SimpleNamespace
>>> sent = []
>>> async def send(shard, op, graph, halves, timeout):
...     sent.append(len(halves))
...     await asyncio.sleep(0)
...     return [f"{h}!" for h in halves]
>>> async def demo():
...     lanes = PeerLanes(send, asyncio.ensure_future, in_flight=1)
...     graph = SimpleNamespace(uid="u")
...     first = asyncio.ensure_future(lanes.ask(3, "edge.attach", graph, ["a"], 1.0))
...     await asyncio.sleep(0)  # its message is on its way: the next four share one
...     rest = await asyncio.gather(*(lanes.ask(3, "edge.attach", graph, [f"h{i}"], 1.0) for i in range(4)))
...     return await first, rest, sent, len(lanes)
>>> asyncio.run(demo())
(['a!'], [['h0!'], ['h1!'], ['h2!'], ['h3!']], [1, 4], 0)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from torua.protocol.errors import ToruaError

BATCH = 500  # halves per message at most (what a peer takes at once)
IN_FLIGHT = 2  # messages on their way to one lane at once

Send = Callable[[int, Any, Any, list[Any], float], Awaitable[list[Any]]]


def _key(half: Any) -> Hashable:
    return (getattr(half, "src", half), getattr(half, "type", None), getattr(half, "dst", None))


@dataclass
class _Message:
    graph: Any
    timeout: float
    halves: list[Any] = field(default_factory=list)
    keys: set[Hashable] = field(default_factory=set)
    waiters: list[tuple[int, int, asyncio.Future[list[Any]]]] = field(default_factory=list)

    def takes(self, halves: list[Any], keys: set[Hashable]) -> bool:
        return len(self.halves) + len(halves) <= BATCH and not (keys & self.keys)


@dataclass
class _Lane:
    waiting: deque[_Message] = field(default_factory=deque)
    in_flight: int = 0  # carriers started (each takes one waiting message, or took it and sends it)
    starting: int = 0  # carriers started that have not taken their message yet


class PeerLanes:
    def __init__(self, send: Send, spawn: Callable[[Awaitable[Any]], Any], in_flight: int = IN_FLIGHT) -> None:
        self._send = send
        self._spawn = spawn
        self._in_flight = in_flight
        self._lanes: dict[tuple[int, Any, str], _Lane] = {}

    def __len__(self) -> int:
        return len(self._lanes)

    async def ask(self, shard_id: int, op: Any, graph: Any, halves: list[Any], timeout: float) -> list[Any]:
        """The peer's answers to `halves` (at most `BATCH`), in their order."""
        if len(halves) > BATCH:
            raise ValueError(f"at most {BATCH} halves at once")
        if not halves:
            return []
        lane_key = (shard_id, op, graph.uid)
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane()
        keys = {_key(h) for h in halves}
        message = lane.waiting[-1] if lane.waiting and lane.waiting[-1].takes(halves, keys) else None
        if message is None:
            message = _Message(graph, timeout)
            lane.waiting.append(message)
        start = len(message.halves)
        message.halves.extend(halves)
        message.keys |= keys
        answered: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        message.waiters.append((start, len(message.halves), answered))
        self._pump(lane_key, lane)
        return await answered

    def _pump(self, lane_key: tuple[int, Any, str], lane: _Lane) -> None:
        while lane.in_flight < self._in_flight and lane.starting < len(lane.waiting):
            lane.in_flight += 1
            lane.starting += 1
            began = [False]
            task = self._spawn(self._carry(lane_key, lane, began))
            task.add_done_callback(lambda _, began=began: began[0] or self._never_began(lane_key, lane))
        if not lane.in_flight and not lane.waiting and self._lanes.get(lane_key) is lane:
            del self._lanes[lane_key]

    def _never_began(self, lane_key: tuple[int, Any, str], lane: _Lane) -> None:
        """A carrier cancelled before it ran (the node stops): its message fails."""
        lane.starting -= 1
        lane.in_flight -= 1
        if lane.waiting:
            _fail(lane.waiting.popleft(), ToruaError("unavailable", f"the message to shard {lane_key[0]} was not sent (stopping)"))
        self._pump(lane_key, lane)

    async def _carry(self, lane_key: tuple[int, Any, str], lane: _Lane, began: list[bool]) -> None:
        """Send the lane's oldest waiting message (taken when this task runs, so that
        callers that asked since it was started join it) and hand out the answers."""
        began[0] = True
        lane.starting -= 1
        message = lane.waiting.popleft() if lane.waiting else None
        try:
            if message is None:
                return
            shard_id, op, _ = lane_key
            try:
                answers = await self._send(shard_id, op, message.graph, message.halves, message.timeout)
            except ToruaError as exc:
                _fail(message, exc)
                return
            except BaseException as exc:
                _fail(message, ToruaError("unavailable", f"the message to shard {shard_id} was not sent ({type(exc).__name__})"))
                raise
            for start, end, answered in message.waiters:
                if not answered.done():
                    answered.set_result(answers[start:end])
        finally:
            lane.in_flight -= 1
            self._pump(lane_key, lane)


def _fail(message: _Message, error: ToruaError) -> None:
    """Each caller of `message` gets an error of its own (raised in its own task)."""
    for _, _, answered in message.waiters:
        if not answered.done():
            answered.set_exception(ToruaError(error.code, error.message, retry_after=error.retry_after))
