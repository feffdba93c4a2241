"""GraphRAG's evidence on a real cluster (nats-server, coordinator, three nodes): the
chunks that support entity vertices and relation edges, through `torua.Client`
straight to the nodes (torua/node/graph_support.py, docs/design/graphrag.md
section 3). A vertex is made by its first chunk and deleted with its last; an edge's
weight is its number of chunks, and it goes with the last; concurrent changes
converge."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from torua import Client, ToruaError
from torua.graph import rules
from torua.protocol.messages import SupportItem


async def poll(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def on_other_shards(graph: str, count: int, shards: int = 16) -> list[str]:
    """`count` entity ids of `graph`, each on a shard of its own."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        id = f"e/person/p{n}"
        found.setdefault(rules.vertex_shard(graph, id, shards), id)
        n += 1
    return list(found.values())


def entity(id: str, added=(), removed=()) -> SupportItem:
    return SupportItem(id, label="Entity", properties={"name": id.rsplit("/", 1)[1]}, embedding=[1.0, 0.0, 0.0],
                       added={c: json.dumps({"mentions": 1}) for c in added}, removed=list(removed))


def related(src: str, dst: str, added: dict[str, dict[str, int]] | None = None, removed=()) -> SupportItem:
    return SupportItem(src, "RELATED", dst, added={c: json.dumps(p) for c, p in (added or {}).items()}, removed=list(removed))


async def out_edges(g, id: str) -> list[dict]:
    return (await g.edges(id, direction="out"))[0]


async def test_entities_live_while_a_chunk_supports_them_and_relations_weigh_their_chunks(shared_cluster):
    async with Client(shared_cluster.nats_url) as db:
        g = db.graph("sup-basic")
        await g.create(vector_dim=3, text_properties=["name"])
        a, b = on_other_shards("sup-basic", 2)
        assert await g.support([entity(a, ["c1"]), entity(b, ["c1", "c2"])]) == [1, 2]
        assert await g.get_vertex(a, embedding=True) == {"id": a, "label": "Entity", "properties": {"name": "p" + a.rsplit("p", 1)[1]}, "embedding": [1.0, 0.0, 0.0]}
        assert await g.support([entity(a, ["c1"])]) == [1]  # again: nothing changes

        assert await g.support([related(a, b, {"c1": {"marry": 1, "co-occurs": 1}, "c2": {"co-occurs": 2}})]) == [2]
        (edge,) = await out_edges(g, a)
        assert (edge["dst"], edge["type"], edge["weight"]) == (b, "RELATED", 2.0)
        assert edge["properties"] == {"support": 2, "chunks": ["c1", "c2"], "predicates": {"co-occurs": 3, "marry": 1}}
        assert [(e["src"], e["weight"]) for e in (await g.edges(b, direction="in"))[0]] == [(a, 2.0)]  # both halves

        assert await g.support([related(a, b, removed=["c1"])]) == [1]
        assert [e["weight"] for e in await out_edges(g, a)] == [1.0]
        assert await g.support([related(a, b, removed=["c2", "c9"])]) == [0]
        assert await out_edges(g, a) == [] and (await g.edges(b, direction="in"))[0] == []

        # an entity whose last chunk goes is deleted, and its edges with it (on both shards)
        await g.support([related(a, b, {"c3": {"knows": 1}})])
        assert await g.support([entity(b, removed=["c1"])]) == [1]
        assert await g.get_vertex(b) is not None
        assert await g.support([entity(b, removed=["c2"])]) == [0]
        assert await g.get_vertex(b) is None
        await poll(lambda: _empty(out_edges(g, a)), 10, "the deleted entity's in-edge to go from its src's shard")
        # the first chunk again makes it anew
        assert await g.support([entity(b, ["c4"])]) == [1]
        assert (await g.get_vertex(b))["label"] == "Entity"


async def test_a_relations_share_removed_after_its_src_entity_went_is_logged_not_refused(shared_cluster):
    """The chunks of one document removed at once (a delete, a version written again
    after one that stopped half-way): one chunk's removal may delete an entity before
    another removes its share of a relation of it. That removal is not refused (the
    writer would fail for good on it) and leaves no support behind: the entity made
    again by the same chunks weighs its relation as anew."""
    async with Client(shared_cluster.nats_url) as db:
        g = db.graph("sup-gone-src")
        await g.create(vector_dim=3)
        a, b = on_other_shards("sup-gone-src", 2)
        await g.support([entity(a, ["c1", "c2"]), entity(b, ["c1", "c2"])])
        await g.support([related(a, b, {"c1": {"knows": 1}, "c2": {"knows": 1}})])
        assert await g.support([related(a, b, removed=["c1"]), entity(a, removed=["c1"])]) == [1, 1]
        assert await g.support([entity(a, removed=["c2"])]) == [0]  # c2's removal of a, before its removal of (a, b)
        assert await g.get_vertex(a) is None
        assert await g.support([related(a, b, removed=["c2"])]) == [0]
        with pytest.raises(ToruaError) as adding:
            await g.support([related(a, b, {"c3": {"knows": 1}})])
        assert adding.value.code == "not_found" and a in adding.value.message, "adding to a relation of a missing entity still is an error"
        await g.support([entity(a, ["c2"])])
        assert await g.support([related(a, b, {"c2": {"knows": 1}})]) == [1], "nothing of the removed support came back"
        assert [(e["dst"], e["weight"]) for e in await out_edges(g, a)] == [(b, 1.0)]


async def _empty(awaitable) -> bool:
    return not await awaitable


async def test_concurrent_changes_from_many_writers_converge(shared_cluster):
    async with Client(shared_cluster.nats_url) as db:
        g = db.graph("sup-many")
        await g.create(vector_dim=3)
        a, b, c = on_other_shards("sup-many", 3)
        await g.support([entity(a, ["seed"]), entity(b, ["seed"]), entity(c, ["seed"])])
        chunks = [f"k{i}" for i in range(24)]
        await asyncio.gather(*(g.support([related(a, b, {k: {"p": 1}}), related(a, c, {k: {"q": 1}}), entity(b, [k])]) for k in chunks))
        weights = {e["dst"]: e["weight"] for e in await out_edges(g, a)}
        assert weights == {b: 24.0, c: 24.0}
        edge = next(e for e in await out_edges(g, a) if e["dst"] == b)
        assert edge["properties"]["support"] == 24 and edge["properties"]["predicates"] == {"p": 24} and len(edge["properties"]["chunks"]) == 16
        # half go, half are added again at the same time: set semantics, whatever the order
        await asyncio.gather(
            *(g.support([related(a, b, removed=[k])]) for k in chunks[:12]),
            *(g.support([related(a, b, {k: {"p": 1}})]) for k in chunks[12:]),
        )
        assert {e["dst"]: e["weight"] for e in await out_edges(g, a)} == {b: 12.0, c: 24.0}
        await asyncio.gather(*(g.support([related(a, b, removed=[k]), related(a, c, removed=[k]), entity(b, removed=[k])]) for k in chunks))
        assert await out_edges(g, a) == []
        assert await g.get_vertex(b) is not None  # "seed" still supports it
        assert await g.support([entity(b, removed=["seed"])]) == [0] and await g.get_vertex(b) is None


@pytest.mark.parametrize(
    "items, code, words",
    [
        ([SupportItem("e/x", added={"c": "{}"}, removed=["c"])], "bad_request", "both added and removed"),
        ([SupportItem("e/x", added={"c": "not json"})], "bad_request", "JSON object"),
        ([SupportItem("e/x", added={"c": "[1]"})], "bad_request", "JSON object"),
        ([SupportItem("e/x", added={"": "{}"})], "bad_request", "chunk id"),
        ([SupportItem("e/x", dst="e/y", added={"c": "{}"})], "bad_request", "names no dst"),
        ([SupportItem("e/x", "bad type\n", "e/y", added={"c": "{}"})], "bad_request", "type"),
        ([SupportItem("e/x", added={"c": "{}"}), SupportItem("e/x", removed=["d"])], "bad_request", "each vertex or edge once"),
        ([SupportItem("e/nobody", "RELATED", "e/x", added={"c": "{}"})], "not_found", "e/nobody"),
        ([SupportItem("e/x", added={f"c{i}": "{}" for i in range(1001)})], "bad_request", "at most 1000 chunks"),
    ],
)
async def test_bad_support_is_refused_and_changes_nothing(shared_cluster, items, code, words):
    async with Client(shared_cluster.nats_url) as db:
        g = db.graph("sup-bad")
        await g.create(vector_dim=0)
        with pytest.raises(ToruaError) as refused:
            await g.support(items)
        assert refused.value.code == code and words in refused.value.message, refused.value
        assert await g.get_vertex("e/x") is None and (await g.info())["counts"]["vertices"] == 0
