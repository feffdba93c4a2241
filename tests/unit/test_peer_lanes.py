"""PeerLanes: callers asking one peer shard at once share messages, each gets its own
answers or the error of the message that carried its halves (torua.node.peer_lanes).
The peer here is a function: what the lanes decide is what is tested; the edge
protocol over real nodes is tests/integration/test_graph_*.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from torua.node.peer_lanes import BATCH, PeerLanes
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EdgeHalf

GRAPH = SimpleNamespace(uid="u")


class Peer:
    """Answers each half with its token + 1000; holds every message until released."""

    def __init__(self, fail: ToruaError | None = None) -> None:
        self.messages: list[list[EdgeHalf]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def send(self, shard: int, op: str, graph: object, halves: list[EdgeHalf], timeout: float) -> list[EdgeHalf]:
        self.messages.append(list(halves))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [EdgeHalf(h.src, h.type, h.dst, h.token + 1000) for h in halves]


def halves(*tokens: int, src: str = "a") -> list[EdgeHalf]:
    return [EdgeHalf(f"{src}{t}", "t", "b", t) for t in tokens]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_callers_waiting_behind_a_message_share_the_next_and_get_their_own_answers():
    peer = Peer()
    lanes = PeerLanes(peer.send, asyncio.ensure_future, in_flight=1)
    first = asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(1), 5))
    await settle()
    later = [asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(10 * i, 10 * i + 1), 5)) for i in range(1, 4)]
    await settle()
    assert [len(m) for m in peer.messages] == [1]  # the rest wait for the one in flight
    peer.release.set()
    assert [h.token for h in await first] == [1001]
    assert [[h.token for h in await f] for f in later] == [[1010, 1011], [1020, 1021], [1030, 1031]]
    assert [len(m) for m in peer.messages] == [1, 6]
    assert len(lanes) == 0  # an idle lane is forgotten


@pytest.mark.parametrize(
    "second, messages",
    [
        (halves(2), [1, 1]),  # another edge: same message would do, but the first is in flight
        (halves(1), [1, 1]),
    ],
)
async def test_in_flight_limit_sends_at_once(second, messages):
    peer = Peer()
    lanes = PeerLanes(peer.send, asyncio.ensure_future, in_flight=2)
    a = asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(1), 5))
    await settle()
    b = asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, second, 5))
    await settle()
    assert [len(m) for m in peer.messages] == messages
    peer.release.set()
    await asyncio.gather(a, b)


async def test_one_edge_twice_and_a_full_message_start_new_messages():
    peer = Peer()
    lanes = PeerLanes(peer.send, asyncio.ensure_future, in_flight=1)
    blocker = asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(0, src="z"), 5))
    await settle()
    asks = [
        lanes.ask(1, "edge.attach", GRAPH, halves(1, 2), 5),
        lanes.ask(1, "edge.attach", GRAPH, halves(2), 5),  # edge a2 again: never twice in one message
        lanes.ask(1, "edge.attach", GRAPH, halves(*range(100, 100 + BATCH)), 5),  # a full message of its own
    ]
    tasks = [asyncio.ensure_future(a) for a in asks]
    await settle()
    peer.release.set()
    await blocker
    answers = await asyncio.gather(*tasks)
    assert [len(a) for a in answers] == [2, 1, BATCH]
    assert [len(m) for m in peer.messages] == [1, 2, 1, BATCH]
    for message in peer.messages:
        keys = [(h.src, h.type, h.dst) for h in message]
        assert len(keys) == len(set(keys)) and len(message) <= BATCH


async def test_lanes_are_per_shard_op_and_graph():
    peer = Peer()
    lanes = PeerLanes(peer.send, asyncio.ensure_future, in_flight=1)
    other = SimpleNamespace(uid="w")
    tasks = [
        asyncio.ensure_future(lanes.ask(shard, op, graph, halves(1), 5))
        for shard, op, graph in [(1, "edge.attach", GRAPH), (2, "edge.attach", GRAPH), (1, "edge.confirm", GRAPH), (1, "edge.attach", other)]
    ]
    await settle()
    assert len(peer.messages) == 4 and len(lanes) == 4
    peer.release.set()
    await asyncio.gather(*tasks)
    assert len(lanes) == 0


async def test_every_caller_of_a_failed_message_gets_its_error_and_the_lane_goes_on():
    peer = Peer(fail=ToruaError("timeout", "no answer", retry_after=1.0))
    lanes = PeerLanes(peer.send, asyncio.ensure_future, in_flight=1)
    tasks = [asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(i), 5)) for i in range(3)]
    await settle()
    peer.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, ToruaError) and o.code == "timeout" and o.retry_after == 1.0 for o in outcomes)
    peer.fail = None
    assert [h.token for h in await lanes.ask(1, "edge.attach", GRAPH, halves(7), 5)] == [1007]


async def test_a_caller_cancelled_while_waiting_leaves_the_others_their_answers():
    peer = Peer()
    lanes = PeerLanes(peer.send, asyncio.ensure_future, in_flight=1)
    first = asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(1), 5))
    await settle()
    gone = asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(2), 5))
    kept = asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(3), 5))
    await settle()
    gone.cancel()
    peer.release.set()
    assert [h.token for h in await first] == [1001]
    assert [h.token for h in await kept] == [1003]
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_message_cancelled_in_flight_fails_its_callers_as_unavailable():
    peer = Peer()
    spawned: list[asyncio.Future] = []

    def spawn(coro):
        task = asyncio.ensure_future(coro)
        spawned.append(task)
        return task

    lanes = PeerLanes(peer.send, spawn, in_flight=1)
    asked = asyncio.ensure_future(lanes.ask(1, "edge.attach", GRAPH, halves(1), 5))
    await settle()
    spawned[0].cancel()  # the node stops
    with pytest.raises(ToruaError) as refused:
        await asked
    assert refused.value.code == "unavailable"


async def test_more_than_a_batch_is_refused_and_nothing_is_sent():
    peer = Peer()
    lanes = PeerLanes(peer.send, asyncio.ensure_future)
    with pytest.raises(ValueError):
        await lanes.ask(1, "edge.attach", GRAPH, halves(*range(BATCH + 1)), 5)
    assert await lanes.ask(1, "edge.attach", GRAPH, [], 5) == []
    assert peer.messages == [] and len(lanes) == 0


async def test_a_message_whose_carrier_never_ran_fails_its_callers_and_frees_the_lane():
    peer = Peer()
    peer.release.set()
    spawned: list[asyncio.Future] = []

    def spawn(coro):
        task = asyncio.ensure_future(coro)
        spawned.append(task)
        task.cancel()  # cancelled before its first step (the node stopping)
        return task

    lanes = PeerLanes(peer.send, spawn, in_flight=1)
    with pytest.raises(ToruaError) as refused:
        await lanes.ask(1, "edge.attach", GRAPH, halves(1), 5)
    assert refused.value.code == "unavailable" and peer.messages == [] and len(lanes) == 0
