"""`NodeMux` (torua/node/node_mux.py): lane messages leaving at once for shards of one
node go as one message; refused parts, and messages a node refuses, go again shard
by shard; a timed out message fails its parts. The senders here stand for the
peer's answers (the node side is tested in tests/simulation/test_graph_node.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from torua.node.node_mux import NodeMux
from torua.node.peer_lanes import BATCH
from torua.protocol.errors import ToruaError

NODES = {0: "n1", 1: "n1", 2: "n1", 3: "n2"}
GRAPH = SimpleNamespace(uid="u")


class Peers:
    """Records what was sent; `refuse`: shard -> code its node answers for its part;
    `whole`: the error of every message by node."""

    def __init__(self, refuse: dict[int, str] | None = None, whole: str = "") -> None:
        self.sent: list[tuple[str, Any]] = []
        self.refuse = refuse or {}
        self.whole = whole

    async def by_node(self, shards: list[int], op: Any, graph: Any, halves: list[Any], timeout: float) -> tuple[list[Any], dict[int, ToruaError]]:
        self.sent.append(("node", tuple(shards)))
        await asyncio.sleep(0)
        if self.whole:
            raise ToruaError(self.whole, "refused whole")
        refused = {s: ToruaError(code, "refused part") for s, code in self.refuse.items() if s in shards}
        return [f"{h}@node" for h in halves], refused

    async def by_shard(self, shard: int, op: Any, graph: Any, halves: list[Any], timeout: float) -> list[Any]:
        self.sent.append(("shard", shard))
        await asyncio.sleep(0)
        return [f"{h}@{shard}" for h in halves]


async def ask(peers: Peers, asks: list[tuple[int, list[str]]]) -> list[Any]:
    mux = NodeMux(NODES.get, peers.by_node, peers.by_shard)
    out = await asyncio.gather(*(mux.send(shard, "edge.attach", GRAPH, halves, 1.0) for shard, halves in asks), return_exceptions=True)
    assert len(mux) == 0
    return [o.code if isinstance(o, ToruaError) else o for o in out]


@pytest.mark.parametrize(
    "peers, asks, answers, sent",
    [
        # one node's shards share a message; a shard alone on its node goes alone
        (Peers(), [(0, ["a"]), (1, ["b", "c"]), (3, ["d"])], [["a@node"], ["b@node", "c@node"], ["d@3"]], [("node", (0, 1)), ("shard", 3)]),
        # a shard the node refused goes again on its own; the others keep the node's answers
        (Peers(refuse={1: "moved"}), [(0, ["a"]), (1, ["b"]), (2, ["c"])], [["a@node"], ["b@1"], ["c@node"]], [("node", (0, 1, 2)), ("shard", 1)]),
        # a node that refuses `shards` (an older release): every part on its own
        (Peers(whole="bad_request"), [(0, ["a"]), (1, ["b"])], [["a@0"], ["b@1"]], [("node", (0, 1)), ("shard", 0), ("shard", 1)]),
        # a message that timed out fails its parts, and nothing is sent again
        (Peers(whole="timeout"), [(0, ["a"]), (1, ["b"])], ["timeout", "timeout"], [("node", (0, 1))]),
        # two lane messages for one shard never share a message (one edge twice)
        (Peers(), [(0, ["a"]), (0, ["a"]), (1, ["b"])], [["a@0"], ["a@node"], ["b@node"]], [("shard", 0), ("node", (0, 1))]),
        # a shard the map does not place goes on its own at once
        (Peers(), [(9, ["z"]), (0, ["a"])], [["z@9"], ["a@0"]], [("shard", 9), ("shard", 0)]),
    ],
)
async def test_what_goes_in_one_message_and_what_goes_again(peers: Peers, asks: list, answers: list, sent: list) -> None:
    assert await ask(peers, asks) == answers
    assert sorted(peers.sent) == sorted(sent)


async def test_a_message_holds_at_most_batch_halves() -> None:
    peers = Peers()
    half = BATCH // 2 + 1
    answers = await ask(peers, [(0, [f"a{i}" for i in range(half)]), (1, [f"b{i}" for i in range(half)]), (2, ["c"])])
    assert [len(a) for a in answers] == [half, half, 1]
    assert sorted(peers.sent) == [("node", (1, 2)), ("shard", 0)]
