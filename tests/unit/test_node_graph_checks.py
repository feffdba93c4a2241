"""What a node checks in a graph request beyond the shared graph rules
(torua.node.graph_checks), and the key locks that order a primary's graph writes."""

from __future__ import annotations

import asyncio

import pytest

from torua.graph.rules import vertex_shard
from torua.node import graph_checks as checks
from torua.node.key_locks import KeyLocks
from torua.protocol.errors import ToruaError
from torua.protocol.messages import GraphRef

HOME = vertex_shard("people", "ada", 16)


@pytest.mark.parametrize(
    "properties, limit, expected",
    [
        (None, 10, "{}"),
        ({}, 10, "{}"),
        ({"b": [1, {"z": None, "a": True}], "a": "é"}, 100, '{"a":"é","b":[1,{"a":true,"z":null}]}'),
        ({"x": "y" * 8}, 16, '{"x":"yyyyyyyy"}'),  # exactly the limit
    ],
)
def test_properties_are_stored_as_canonical_json(properties, limit, expected) -> None:
    assert checks.canonical_properties(properties, limit) == expected


@pytest.mark.parametrize(
    "properties, limit, code, message",
    [
        ([1], 100, "bad_request", "must be a JSON object"),
        ({1: "x"}, 100, "bad_request", "must be a JSON object"),
        ({"x": float("nan")}, 100, "bad_request", "plain JSON"),
        ({"x": b"bytes"}, 100, "bad_request", "plain JSON"),
        ({"x": "y" * 8}, 13, "value_too_large", "16 bytes of JSON; the limit is 13"),
        ({"x": "é" * 4}, 13, "value_too_large", "16 bytes"),  # bytes of UTF-8, not characters
    ],
)
def test_properties_refused(properties, limit, code, message) -> None:
    with pytest.raises(ToruaError) as refused:
        checks.canonical_properties(properties, limit)
    assert refused.value.code == code and message in refused.value.message


@pytest.mark.parametrize(
    "id, shard, num_shards, message",
    [
        ("ada", HOME, 16, None),
        ("ada", (HOME + 1) % 16, 16, f"belongs to shard {HOME}"),
        ("ada", 3, 0, None),  # the shard count not known yet: not checked
        ("", HOME, 16, "id must not be empty"),
        ("a\x00b", HOME, 16, "NUL"),
        ("x" * 1025, HOME, 16, "the limit is 1024"),
        (7, HOME, 16, "must be a string"),
    ],
)
def test_a_vertex_belongs_to_the_shard_asked(id, shard, num_shards, message) -> None:
    if message is None:
        assert checks.vertex_in_shard("people", id, shard, num_shards) == id
    else:
        with pytest.raises(ToruaError, match=message):
            checks.vertex_in_shard("people", id, shard, num_shards)


def test_ids_and_limits_and_graph_refs() -> None:
    assert checks.ids_in_shard("people", ["ada", "ada"], HOME, 16) == ["ada"]
    for ids, message in [([], "at least one"), (["ada"] * (checks.MAX_IDS + 1), "at most")]:
        with pytest.raises(ToruaError, match=message):
            checks.ids_in_shard("people", ids, HOME, 16)
    assert checks.limit_in(5, 10) == 5
    for limit in (0, 11, True, 2.5):
        with pytest.raises(ToruaError, match="limit must be 1 to 10"):
            checks.limit_in(limit, 10)
    assert checks.graph_ref(GraphRef("people", "u1")).uid == "u1"
    for ref, message in [(GraphRef("a b", "u"), "graph must be"), (GraphRef("g", ""), "uid"), (GraphRef("g", "u", vector_dim=-1), "vector_dim")]:
        with pytest.raises(ToruaError, match=message):
            checks.graph_ref(ref)


async def test_key_locks_order_holders_of_a_key_and_let_other_keys_through() -> None:
    locks = KeyLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold(("v", "a"), ("v", "b")):
            order.append("first")
            first_in.set()
            await release.wait()
        order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with locks.hold(("v", "b")):
            order.append("second")

    async def other() -> None:
        await first_in.wait()
        async with locks.hold(("v", "c")):
            order.append("other")

    tasks = [asyncio.ensure_future(c()) for c in (first, second, other)]
    await first_in.wait()
    while "other" not in order:
        await asyncio.sleep(0)
    assert order == ["first", "other"]  # a key not held goes through; "b" waits
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "other", "first out", "second"]
    assert len(locks) == 0  # nothing held, nothing kept


async def test_two_holders_of_overlapping_keys_in_any_order_do_not_deadlock() -> None:
    locks = KeyLocks()

    async def hold(keys: list[tuple[str, str]]) -> None:
        for _ in range(50):
            async with locks.hold(*keys):
                await asyncio.sleep(0)

    async with asyncio.timeout(10):
        await asyncio.gather(hold([("v", "a"), ("v", "b")]), hold([("v", "b"), ("v", "a")]), hold([("v", "b")]))
    assert len(locks) == 0


async def test_a_waiter_cancelled_before_or_after_its_turn_leaves_the_key_to_the_next() -> None:
    locks = KeyLocks()
    got: list[str] = []
    go = asyncio.Event()
    go.set()

    async def holder(name: str, until: asyncio.Event) -> None:
        async with locks.hold(("v", "a")):
            got.append(name)
            await until.wait()

    async with asyncio.timeout(10):
        release = asyncio.Event()
        first = asyncio.ensure_future(holder("first", release))
        await asyncio.sleep(0)
        waiting, third = asyncio.ensure_future(holder("cancelled while waiting", go)), asyncio.ensure_future(holder("third", go))
        await asyncio.sleep(0)
        waiting.cancel()  # before its turn
        release.set()
        await asyncio.gather(first, third)
        assert waiting.cancelled() and got == ["first", "third"]

        release = asyncio.Event()
        a = asyncio.ensure_future(holder("a", release))
        await asyncio.sleep(0)
        b, c = asyncio.ensure_future(holder("cancelled on its turn", go)), asyncio.ensure_future(holder("c", go))
        await asyncio.sleep(0)
        release.set()
        await asyncio.sleep(0)  # a leaves and hands the key to b, which has not run yet
        b.cancel()
        await asyncio.gather(a, c)
        assert b.cancelled() and got[2:] == ["a", "c"]
        assert len(locks) == 0
