"""The node's graph service through real nodes and coordinator over the in-memory bus
(tests/support/sim_cluster.py): vertices and edges across shards, what each request
refuses, imports, and the two halves of every edge after deletes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from tests.support.graph_client import (
    GraphClient,
    graph_copies_compared,
    primaries,
    scan_rows,
)
from tests.support.graph_row_ops import graph_rows
from tests.support.sim_cluster import SimCluster, sim_seed, wait_for
from torua.graph.search import merge_hits, sum_text_stats
from torua.graph.rules import vertex_shard
from torua.node.graph_edges import vertex_lock
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EdgeData, EdgeHalf, GraphHit, GraphRef, GraphRequest, ShardHits, ShardMap, VertexData
from torua.protocol.vocabulary import Direction, GraphOp, HalfState
from torua.storage.operations import EdgePut

GRAPH = GraphRef("people", "uid-1", vector_dim=2)


def graph_client(cluster: SimCluster, graph: GraphRef = GRAPH) -> GraphClient:
    assert cluster.gateway is not None
    return GraphClient(cluster.gateway.router, graph)


def hits_of(parts: dict[int, ShardHits]) -> dict[int, list[GraphHit]]:
    return {shard: part.hits for shard, part in parts.items()}


def ids_on_other_shards(n: int, shards: int, name: str = "people") -> list[str]:
    """Vertex ids spread so that consecutive ones are on different shards."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        candidate = f"v{i}"
        if not out or vertex_shard(name, candidate, shards) != vertex_shard(name, out[-1], shards):
            out.append(candidate)
        i += 1
    return out


async def settled(cluster: SimCluster, uid: str = GRAPH.uid, name: str = GRAPH.name, timeout: float = 20.0):
    """Wait until repair has nothing left on any shard; the scan then."""

    def done():
        scan = scan_rows(primaries(cluster), uid)  # type: ignore[arg-type]
        return scan if not scan.unsettled() else None

    try:
        return await wait_for(done, timeout, "every edge's halves settled")
    except AssertionError:
        scan = scan_rows(primaries(cluster), uid)  # type: ignore[arg-type]
        raise AssertionError(f"not settled: {scan.unsettled()[:20]}; {scan.problems(name, cluster.map.num_shards)[:20]}") from None


@pytest.mark.timeout(90)
async def test_vertices_and_edges_across_shards(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=3, shards=4, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            a, b, c = ids_on_other_shards(3, 4)
            assert (await g.put_vertex(a, "Person", {"name": "A"}, [1.0, 0.0])).created
            assert not (await g.put_vertex(a, "Person", {"name": "A2"}, [1.0, 0.0])).created
            await g.put_vertex(b, "Person")
            await g.put_vertex(c, "Doc", {"text": "hello"})
            got = await g.get_vertex(a, with_embedding=True)
            assert (got.label, got.properties, got.embedding) == ("Person", {"name": "A2"}, [1.0, 0.0])
            assert (await g.get_vertex(a)).embedding is None

            await g.put_edge(a, "knows", b, {"since": 2020}, 2.5)
            await g.put_edge(a, "wrote", c)
            await g.put_edge(b, "knows", a)
            assert [(e.src, e.type, e.dst, e.properties, e.weight) for e in await g.edges(a)] == [(a, "knows", b, {"since": 2020}, 2.5), (a, "wrote", c, {}, 1.0)]
            assert [(e.src, e.dst) for e in await g.edges(b, "in")] == [(a, b)]
            assert [(e.src, e.dst) for e in await g.edges(a, "both")] == [(a, b), (a, c), (b, a)]
            assert [e.dst for e in await g.edges(a, "out", types=["wrote"])] == [c]
            assert [e.dst for e in await g.edges(a, "out", limit=1)] == [b, c]  # two pages

            with pytest.raises(ToruaError) as missing:
                await g.put_edge(a, "knows", "nobody")
            assert missing.value.code == "not_found" and "'nobody' (dst)" in missing.value.message
            with pytest.raises(ToruaError) as missing:
                await g.put_edge("ghost", "knows", a)
            assert missing.value.code == "not_found" and "'ghost' (src)" in missing.value.message

            await g.delete_edge(a, "wrote", c)
            await g.delete_edge(a, "wrote", c)  # idempotent
            assert [e.dst for e in await g.edges(c, "in")] == []
            await g.delete_vertex(b)  # its edges go on both sides
            await g.delete_vertex(b)
            with pytest.raises(ToruaError) as gone:
                await g.get_vertex(b)
            assert gone.value.code == "not_found" and repr(b) in gone.value.message
            scan = await settled(cluster)
            assert scan.problems(GRAPH.name, 4) == [] and scan.edges() == set()
            assert await g.edges(a, "both") == []
            stats = [(await g.call(s, GraphOp.STATS)).counts for s in range(4)]
            assert sum(s["vertices"] for s in stats) == 2 and sum(s["edges"] for s in stats) == 0
            await cluster.wait_green(caught_up=True)
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_a_retried_write_is_answered_as_its_first_attempt(tmp_path):
    """A gateway retries a write whose attempt timed out while the node went on with it;
    the retry (same request_id) must not answer created=False for the vertex or edge
    its own first attempt created, nor write again."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            a, b = ids_on_other_shards(2, 2)

            async def put(op: GraphOp, shard_id: int, request_id: str, **fields):
                return await g.call(shard_id, op, request_id=request_id, **fields)

            first = await put(GraphOp.VERTEX_PUT, g.shard(a), "r-1", vertex=VertexData(a, "V"))
            retry = await put(GraphOp.VERTEX_PUT, g.shard(a), "r-1", vertex=VertexData(a, "V"))
            assert first.created and retry.created and retry.seq == first.seq  # not written again
            other = await put(GraphOp.VERTEX_PUT, g.shard(a), "r-2", vertex=VertexData(a, "V"))
            assert not other.created and other.seq > first.seq
            await g.put_vertex(b)
            edge = EdgeData(a, "knows", b)
            assert (await put(GraphOp.EDGE_PUT, g.shard(a), "r-3", edge=edge)).created
            assert (await put(GraphOp.EDGE_PUT, g.shard(a), "r-3", edge=edge)).created
            assert not (await put(GraphOp.EDGE_PUT, g.shard(a), "r-4", edge=edge)).created
            # concurrent attempts of one write: one runs, the other waits for its answer
            c = ids_on_other_shards(3, 2)[2]
            both = await asyncio.gather(*(put(GraphOp.VERTEX_PUT, g.shard(c), "r-5", vertex=VertexData(c, "V")) for _ in range(2)))
            assert [r.created for r in both] == [True, True] and both[0].seq == both[1].seq
            with pytest.raises(ToruaError, match="request_id"):
                await put(GraphOp.VERTEX_PUT, g.shard(a), "x" * 129, vertex=VertexData(a, "V"))
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_bad_requests_are_refused_and_change_nothing(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=1)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            a = "alice"
            await g.put_vertex(a)
            shard = g.shard(a)
            other = 1 - shard
            cases = [
                (shard, GraphOp.VERTEX_PUT, {"vertex": VertexData(a, "L\n", {})}, "bad_request", "printable"),
                (shard, GraphOp.VERTEX_PUT, {"vertex": VertexData(a, "L", {}, [1.0])}, "bad_request", "graph vectors have 2 (vector_dim)"),
                (shard, GraphOp.VERTEX_PUT, {"vertex": VertexData(a, "L", {"x": "y" * 70000})}, "value_too_large", "the limit is 65536"),
                (other, GraphOp.VERTEX_PUT, {"vertex": VertexData(a, "L", {})}, "bad_request", f"belongs to shard {shard}"),
                (shard, GraphOp.VERTEX_GET, {"id": ""}, "bad_request", "id must not be empty"),
                (shard, GraphOp.VERTEX_GET, {"id": "x" * 1025}, "bad_request", "the limit is 1024"),
                (shard, GraphOp.EDGE_PUT, {"edge": EdgeData(a, "", a)}, "bad_request", "type must not be empty"),
                (shard, GraphOp.EDGE_PUT, {"edge": EdgeData(a, "t", a, weight=float("nan"))}, "bad_request", "weight must be a finite number"),
                (shard, GraphOp.EDGES, {"id": a, "limit": 0}, "bad_request", "limit must be 1 to 1000"),
                (shard, GraphOp.EDGES, {"id": a, "cursor": "garbage!"}, "bad_request", "not one this listing made"),
                (shard, GraphOp.EDGES, {"id": "nobody"} , "not_found", "'nobody'"),
                (shard, GraphOp.VERTICES, {"ids": []}, "bad_request", "at least one"),
                (shard, GraphOp.VECTOR_SEARCH, {"vector": [1.0, 0.0, 0.0]}, "bad_request", "graph vectors have 2"),
                (shard, GraphOp.VECTOR_SEARCH, {"vector": [1.0, 0.0], "k": 0}, "bad_request", "k must be 1 to 1000"),
                (shard, GraphOp.CYPHER, {"query": "CREATE (n:Vertex {id: 'x'})"}, "bad_request", ""),
                (shard, GraphOp.CYPHER, {"query": " "}, "bad_request", "query must not be empty"),
            ]
            for shard_id, op, fields, code, message in cases:
                with pytest.raises(ToruaError) as refused:
                    await g.call(shard_id, op, **fields)
                assert (refused.value.code, message in refused.value.message) == (code, True), (op, fields, refused.value)
            bad_ref = GraphClient(g.router, GraphRef("no spaces", "u"))
            with pytest.raises(ToruaError, match="graph must be 1 to 64"):
                await bad_ref.call(0, GraphOp.STATS)
            assert (await g.get_vertex(a)).label == "V"  # nothing changed
            await g.put_vertex("unlabelled", "")  # a vertex's label may be empty (torua.graph.rules), an edge's type not
            assert (await g.get_vertex("unlabelled")).label == ""
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_import_applies_good_lines_names_bad_ones_and_changes_nothing_the_second_time(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=3, shards=4, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            ids = [f"p{i}" for i in range(40)]
            vertices = [VertexData(i, "P", {"n": n}) for n, i in enumerate(ids)] + [VertexData("bad", "tab\there")]
            edges = [EdgeData(ids[n], "next", ids[(n + 1) % 40], {"n": n}) for n in range(40)]
            edges += [EdgeData(ids[0], "next", "nobody"), EdgeData("nobody", "next", ids[0]), EdgeData(ids[1], "", ids[2])]
            counts, problems = await g.import_batch(vertices, edges)
            assert counts == {"vertices": 40, "edges": 40}
            assert sorted((p.kind, p.error_code) for _, p in problems) == [("edge", "bad_request"), ("edge", "not_found"), ("edge", "not_found"), ("vertex", "bad_request")]
            scan = await settled(cluster)
            assert scan.problems(GRAPH.name, 4) == [] and len(scan.edges()) == 40
            before = {s: graph_rows(st.directory) for s, st in primaries(cluster).items()}  # type: ignore[attr-defined]
            counts, problems = await g.import_batch(vertices, edges)  # the same again
            assert counts == {"vertices": 40, "edges": 40} and len(problems) == 4
            assert {s: graph_rows(st.directory) for s, st in primaries(cluster).items()} == before  # type: ignore[attr-defined]
            assert [e.dst for e in await g.edges(ids[5])] == [ids[6]]
            assert [e.src for e in await g.edges(ids[5], "in")] == [ids[4]]
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_a_put_confirms_the_in_half_itself_and_leaves_nothing_to_repair(tmp_path):
    # Repair would run only at promotion: whatever is settled right after the answers, the puts settled.
    cluster = SimCluster(tmp_path, sim_seed(), nodes=3, shards=4, replicas=2, graph_repair_interval=3600)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            ids = ids_on_other_shards(30, 4)
            await g.import_batch([VertexData(i) for i in ids], [])
            edges = [EdgeData(ids[n], "next", ids[(n + 1) % 30]) for n in range(30)]
            assert (await g.import_batch([], edges))[0] == {"vertices": 0, "edges": 30}
            await g.put_edge(ids[0], "single", ids[1])
            scan = scan_rows(primaries(cluster), GRAPH.uid)  # type: ignore[arg-type]
            assert scan.unsettled() == [] and scan.problems(GRAPH.name, 4) == []
            for e in [*edges, EdgeData(ids[0], "single", ids[1])]:
                out_state, token = half_rows(cluster, (e.src, e.type, e.dst))["out"]  # type: ignore[misc]
                assert out_state == "committed" and half_rows(cluster, (e.src, e.type, e.dst))["in"] == ("confirmed", token)
            # A confirm that comes late (a newer incarnation is attached) or repeats changes nothing.
            key = (ids[0], "single", ids[1])
            before = half_rows(cluster, key)
            for token in (before["in"][1] - 1, before["in"][1]):  # type: ignore[index]
                answer = await g.call(g.shard(ids[1]), GraphOp.EDGE_CONFIRM, halves=[EdgeHalf(*key, token=token)])
                assert [h.state for h in answer.halves] == ["done"]
            assert half_rows(cluster, key) == before
    finally:
        await cluster.stop()


def half_rows(cluster: SimCluster, key: tuple[str, str, str], uid: str = GRAPH.uid) -> dict[str, object]:
    """The out-half and in-half of edge `key` as their shards' primaries hold them."""
    scan = scan_rows(primaries(cluster), uid)  # type: ignore[arg-type]
    found: dict[str, object] = {"out": None, "in": None}
    for rows in scan.rows.values():
        for r in rows:
            if r.key == key:
                if r.out_state is not None:
                    found["out"] = (r.out_state, r.out_token)
                if r.in_state is not None:
                    found["in"] = (r.in_state, r.in_token)
    return found


@pytest.mark.timeout(90)
async def test_late_messages_between_primaries_change_nothing_they_should_not(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=3, shards=4, replicas=1, graph_repair_interval=0.2)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            a, b = ids_on_other_shards(2, 4)
            await g.put_vertex(a)
            await g.put_vertex(b)
            key = (a, "knows", b)
            # An attach whose edge src's shard never held (an attach overtaken by its detach):
            # dst's shard holds the in-half until its repair asks src's shard, then it goes.
            late = await g.call(g.shard(b), GraphOp.EDGE_ATTACH, halves=[EdgeHalf(*key, token=99)])
            assert [h.state for h in late.halves] == ["attached"]
            await wait_for(lambda: half_rows(cluster, key) == {"out": None, "in": None}, 10, "the orphaned in-half removed by repair")

            await g.put_edge(*key)
            await settled(cluster)
            halves = half_rows(cluster, key)
            out_state, token = halves["out"]  # type: ignore[misc]
            assert out_state == "committed" and halves["in"] == ("confirmed", token)
            # Late messages of an older incarnation: nothing goes.
            for op, shard in ((GraphOp.EDGE_DETACH, g.shard(b)), (GraphOp.EDGE_DROP, g.shard(a))):
                answer = await g.call(shard, op, halves=[EdgeHalf(*key, token=token - 1)])
                assert [h.state for h in answer.halves] == ["done"]
            older = await g.call(g.shard(b), GraphOp.EDGE_ATTACH, halves=[EdgeHalf(*key, token=token - 1, properties={"old": True})])
            assert [h.state for h in older.halves] == ["newer"]
            assert half_rows(cluster, key) == halves
            check = await g.call(g.shard(a), GraphOp.EDGE_CHECK, halves=[EdgeHalf(*key, token=token)])
            assert [(h.state, h.token) for h in check.halves] == [("committed", token)]
            # Asked again with the same token: repeated messages are harmless.
            again = await g.call(g.shard(b), GraphOp.EDGE_ATTACH, halves=[EdgeHalf(*key, token=token)])
            assert [h.state for h in again.halves] == ["attached"] and half_rows(cluster, key) == halves
            # Peers are held to the rules too: a half of another shard, a token that is no seq.
            for op, shard, half, message in [
                (GraphOp.EDGE_ATTACH, g.shard(a), EdgeHalf(*key, token=1), "belongs to shard"),
                (GraphOp.EDGE_DETACH, g.shard(b), EdgeHalf(*key, token=0), "token"),
            ]:
                with pytest.raises(ToruaError, match=message):
                    await g.call(shard, op, halves=[half])
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_an_edge_message_naming_several_shards_of_a_node_is_answered_shard_by_shard(tmp_path):
    """What `NodeMux` sends (torua/node/node_mux.py): one `edge.attach` for several
    shards of one node is answered as a message per shard would be, in order; a shard
    the node does not lead is a refused part (the sender sends its halves alone), and
    a half on a shard the message does not name refuses the message."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=6, replicas=1)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            holder = {s: cluster.map.shards[s].primary for s in range(6)}
            ids = ids_on_other_shards(60, 6)
            node = holder[g.shard(ids[0])]
            mine = sorted({g.shard(i) for i in ids if holder[g.shard(i)] == node})
            other = next(s for s in range(6) if holder[s] != node)
            assert len(mine) >= 2
            dsts = [next(i for i in ids if g.shard(i) == s) for s in (mine[0], mine[1], other)]
            src = next(i for i in ids if g.shard(i) not in (mine[0], mine[1], other))
            for v in {src, *dsts}:
                await g.put_vertex(v)
            for dst in dsts:
                await g.put_edge(src, "knows", dst)
            await settled(cluster)
            tokens = {dst: half_rows(cluster, (src, "knows", dst))["out"][1] for dst in dsts}  # type: ignore[index]
            absent = next(i for i in ids if g.shard(i) == mine[0] and i not in dsts)  # never put
            halves = [EdgeHalf(src, "knows", dsts[1], tokens[dsts[1]]), EdgeHalf(src, "knows", dsts[0], tokens[dsts[0]]), EdgeHalf(src, "knows", absent, 7)]
            both = await g.call(mine[0], GraphOp.EDGE_ATTACH, shards=mine[:2], halves=halves)
            alone = [(await g.call(g.shard(h.dst), GraphOp.EDGE_ATTACH, halves=[h])).halves[0] for h in halves]
            assert [(h.dst, h.state) for h in both.halves] == [(h.dst, h.state) for h in alone] == [(dsts[1], "attached"), (dsts[0], "attached"), (halves[2].dst, "missing")]
            assert both.parts == []
            refused = await g.call(mine[0], GraphOp.EDGE_ATTACH, shards=[mine[0], other], halves=[halves[1], EdgeHalf(src, "knows", dsts[2], tokens[dsts[2]])])
            assert [h.state for h in refused.halves[:1]] == ["attached"]
            assert [(p.shard, p.error_code) for p in refused.parts] == [(other, "moved")]
            with pytest.raises(ToruaError, match="which shards does not name"):
                await g.call(mine[0], GraphOp.EDGE_ATTACH, shards=[mine[0]], halves=halves[:2])
            with pytest.raises(ToruaError, match="take several shards"):
                await g.call(mine[0], GraphOp.EDGE_PUT, shards=mine[:2], edge=EdgeData(src, "knows", dsts[0]))
            # A traversal hop over several shards of the node: their rows and edges, a part for the one it does not lead.
            hop = await g.call(mine[0], GraphOp.NEIGHBOURS, shards=[mine[0], mine[1], other], ids=dsts, direction=Direction.IN)
            assert sorted(v.id for v in hop.vertices) == sorted(dsts[:2]) and sorted((e.src, e.dst) for e in hop.edges) == sorted((src, d) for d in dsts[:2])
            assert [(p.shard, p.error_code) for p in hop.parts] == [(other, "moved")]
            with pytest.raises(ToruaError, match="which shards does not name"):
                await g.call(mine[0], GraphOp.NEIGHBOURS, shards=mine[:2], ids=dsts, direction=Direction.IN)
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_an_edge_left_behind_its_support_is_put_right_by_the_sweep(tmp_path):
    """A support change logged whose edge step never ran (its request failed and was
    never sent again) leaves the edge's weight behind its chunks: the primary's sweep
    (`SupportWork.repair`) puts it from the support as it is."""
    from torua.protocol.messages import SupportItem
    from torua.storage.operations import SupportChange

    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=4, replicas=1, graph_repair_interval=0.2)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            a, b = ids_on_other_shards(2, 4)
            for v in (a, b):
                await g.put_vertex(v, "Entity")
            await g.call(g.shard(a), GraphOp.SUPPORT, supports=[SupportItem(a, "RELATED", b, added={"c1": "{}"})])
            assert [(e.dst, e.weight) for e in await g.edges(a)] == [(b, 1.0)]
            node = cluster.nodes[cluster.map.shards[g.shard(a)].primary]
            await node.write(g.shard(a), [SupportChange(GRAPH.uid, a, "RELATED", b, added={"c2": '{"marry": 1}'})], "a change whose edge step never ran")
            assert [(e.dst, e.weight) for e in await g.edges(a)] == [(b, 1.0)]  # behind its two chunks
            # the sweep runs this every 30 s on each primary (here the graph is not in the
            # catalog, which the sweep would take for a deleted graph: the repair is asked alone)
            assert node.graph.edges.on_sweep == node.graph.supports.repair
            rows = node.holdings[g.shard(a)].store.engine("graph")
            assert rows.stale_supports() == [(GRAPH.uid, (a, "RELATED", b))]
            await node.graph.supports.repair(g.shard(a), rows)
            edges = await g.edges(a)
            assert [(e.dst, e.weight, e.properties) for e in edges] == [(b, 2.0, {"support": 2, "chunks": ["c1", "c2"], "predicates": {"marry": 1}})]
            assert rows.stale_supports() == []
            await settled(cluster)
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_steps_a_peer_missed_are_finished_by_repair_once_it_is_back(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=3, shards=3, replicas=1, graph_repair_interval=0.2, graph_peer_timeout=0.3)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            ids = ids_on_other_shards(30, 3)
            holder = {s: cluster.map.shards[s].primary for s in range(3)}
            a = ids[0]
            b = next(i for i in ids if holder[g.shard(i)] != holder[g.shard(a)])
            c = next(i for i in ids if holder[g.shard(i)] == holder[g.shard(b)] and i != b)
            for v in (a, b, c):
                await g.put_vertex(v)
            await g.put_edge(a, "knows", c)
            other = holder[g.shard(b)]
            assert other is not None and other != holder[g.shard(a)]
            cluster.bus.partition(holder[g.shard(a)], other)  # src's node cannot reach dst's
            with pytest.raises(ToruaError) as unknown:
                await g.put_edge(a, "knows", b)
            assert unknown.value.code == "timeout" and "pending" in unknown.value.message
            assert half_rows(cluster, (a, "knows", b))["out"][0] == "pending"  # type: ignore[index]
            await g.delete_vertex(a)  # its half toward c stays in the outbox meanwhile
            scan = scan_rows(primaries(cluster), GRAPH.uid)  # type: ignore[arg-type]
            assert scan.outbox[g.shard(a)] >= 1
            cluster.bus.heal()
            scan = await settled(cluster)
            assert scan.problems(GRAPH.name, 3) == [] and scan.edges() == set()
            assert await g.edges(c, "in") == [] and await g.edges(b, "in") == []
            # and a put that could not finish is finished by repair when both ends stay
            await g.put_vertex(a)
            cluster.bus.partition(holder[g.shard(a)], other)
            with pytest.raises(ToruaError):
                await g.put_edge(a, "likes", b)
            cluster.bus.heal()
            await settled(cluster)
            assert [e.dst for e in await g.edges(a)] == [b] and [e.src for e in await g.edges(b, "in")] == [a]
    finally:
        await cluster.stop()


@pytest.mark.timeout(120)
async def test_vector_text_and_cypher_queries_go_to_the_index_and_see_every_acknowledged_write(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(100):
            graph = GraphRef("docs", "uid-docs", vector_dim=2, text_properties=["text"])
            g = graph_client(cluster, graph)
            texts = {"d0": "the quick brown fox", "d1": "a lazy dog sleeps", "d2": "quick quick fox runs", "d3": "stone river night"}
            for n, (id, text) in enumerate(texts.items()):
                await g.put_vertex(id, "Doc", {"text": text}, [1.0, float(n)])
            await g.put_edge("d0", "cites", "d2")
            hits = []
            for shard in range(2):
                hits += (await g.call(shard, GraphOp.VECTOR_SEARCH, vector=[1.0, 0.0], k=2)).hits
            assert max(hits, key=lambda h: h.score).id == "d0"  # cosine similarity 1
            stats = [await g.call(shard, GraphOp.TEXT_STATS, query="quick fox") for shard in range(2)]
            docs = sum(s.docs for s in stats)
            term_docs = {t: sum(s.term_docs.get(t, 0) for s in stats) for t in ("quick", "fox")}
            assert docs == 4 and term_docs == {"quick": 2, "fox": 2}
            # Statistics of several shards of a node in one request: a part per shard, each
            # as asked alone (a shard the node does not lead: a refused part); the
            # gateway's sums over every shard, asked one request per node, the same.
            both = {p.shard: p for p in (await g.call(0, GraphOp.TEXT_STATS, query="quick fox", shards=[0, 1])).parts}
            assert sorted(both) == [0, 1] and not both[0].error_code
            for shard, part in both.items():
                assert part.error_code or (part.docs, part.term_docs) == (stats[shard].docs, stats[shard].term_docs)
            gateway = cluster.gateway
            assert gateway is not None

            def build_stats(shard: int, epoch: int, left: float) -> GraphRequest:
                return GraphRequest(GraphOp.TEXT_STATS, shard, epoch, graph, query="quick fox", timeout=left)

            parts = await gateway._graph_search_all(build_stats, asyncio.get_running_loop().time() + 10)
            assert sorted(parts) == [0, 1]
            assert sum(p.docs for p in parts.values()) == 4 and sum_text_stats((p.docs, p.term_docs) for p in parts.values()).term_docs == term_docs
            found = []
            for shard in range(2):
                found += (await g.call(shard, GraphOp.TEXT_SEARCH, query="quick fox", k=3, docs=docs, term_docs=term_docs)).hits
            assert {h.id for h in found} == {"d0", "d2"} and max(found, key=lambda h: h.score).id == "d2"
            rows = []
            for shard in range(2):
                reply = await g.call(shard, GraphOp.CYPHER, query="MATCH (v:Vertex) RETURN v.id ORDER BY v.id")
                rows += [r[0] for r in reply.rows]
            assert {"d0", "d1", "d2", "d3"} <= set(rows)
            await g.delete_vertex("d2")  # acknowledged: no query shows it any more
            for shard in range(2):
                assert "d2" not in [h.id for h in (await g.call(shard, GraphOp.VECTOR_SEARCH, vector=[1.0, 2.0], k=4)).hits]
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_a_search_of_several_shards_answers_a_part_per_shard_and_the_gateway_asks_the_refused_ones_again(tmp_path, monkeypatch):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=4, replicas=1)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            ids = ids_on_other_shards(24, 4)
            await g.import_batch([VertexData(i, "P", {"n": n}, [1.0, float(n)]) for n, i in enumerate(ids)], [])
            alone = {s: (await g.call(s, GraphOp.VECTOR_SEARCH, vector=[1.0, 3.0], k=3)).hits for s in range(4)}
            assert all(len(hits) == 3 for hits in alone.values())
            shard_map = cluster.gateway.router.shard_map()  # type: ignore[union-attr]
            leader = shard_map.entry(0).primary
            mine = [s for s in range(4) if shard_map.entry(s).primary == leader]
            others = [s for s in range(4) if s not in mine]
            assert others, "both nodes lead shards"

            # To the node: its own shards searched, a shard it does not lead refused in its part.
            both = await g.call(0, GraphOp.VECTOR_SEARCH, vector=[1.0, 3.0], k=3, shards=mine + others[:1])
            parts = {p.shard: p for p in both.parts}
            assert sorted(parts) == sorted(mine + others[:1]) and parts[others[0]].error_code and not parts[others[0]].hits
            assert merge_hits({s: parts[s].hits for s in mine}, 3) == merge_hits({s: alone[s] for s in mine}, 3)
            assert sum(len(parts[s].hits) for s in mine) == 3  # only the node's 3 best travel
            # A vector of the wrong size, checked once for the request: each shard's part says so, as each shard alone would.
            wrong = await g.call(0, GraphOp.VECTOR_SEARCH, vector=[1.0, 3.0, 0.0], k=3, shards=mine)
            assert [(p.shard, p.error_code, "graph vectors have 2" in p.error_message, p.hits) for p in wrong.parts] == [(s, "bad_request", True, []) for s in mine]
            for bad in ({"shards": [0, 0]}, {"shards": [0, 9]}, {"op": GraphOp.CYPHER, "query": "RETURN 1", "shards": [0]}):
                op = bad.pop("op", GraphOp.VECTOR_SEARCH)
                with pytest.raises(ToruaError) as refused:
                    await g.call(0, op, **{"vector": [1.0, 0.0], **bad})
                assert refused.value.code in ("bad_request", "unknown_shard")

            # The gateway: one request per node; with a map that says one node leads every shard
            # (a stale one, as after a move), the shards it does not lead are asked on their own.
            gateway = cluster.gateway
            assert gateway is not None
            ref = GraphRef(GRAPH.name, GRAPH.uid, vector_dim=2)

            def build(shard: int, epoch: int, left: float) -> GraphRequest:
                return GraphRequest(GraphOp.VECTOR_SEARCH, shard, epoch, ref, vector=[1.0, 3.0], k=3, timeout=left)

            deadline = asyncio.get_running_loop().time() + 10
            assert merge_hits(hits_of(await gateway._graph_search_all(build, deadline)), 3) == merge_hits(alone, 3)
            stale = replace(shard_map, shards=[replace(e, primary=leader) for e in shard_map.shards])

            async def stale_map() -> ShardMap:
                return stale

            monkeypatch.setattr(gateway, "_map", stale_map)
            sent: list[list[int]] = []
            ask = gateway._graph_ask

            async def counted(shard, build, timeout, patient=False):
                sent.append(build(shard_map.epoch).shards or [shard])
                return await ask(shard, build, timeout, patient)

            monkeypatch.setattr(gateway, "_graph_ask", counted)
            deadline = asyncio.get_running_loop().time() + 10
            assert merge_hits(hits_of(await gateway._graph_search_all(build, deadline)), 3) == merge_hits(alone, 3)
            assert sent[0] == [0, 1, 2, 3] and sorted(s for part in sent[1:] for s in part) == others
            # With no time left to ask them again, the refusal itself is the answer, naming its shard.
            monkeypatch.setattr("torua.gateway.graphs.SEARCH_RETRY_S", 3600.0)
            sent.clear()
            with pytest.raises(ToruaError) as refused:
                await gateway._graph_search_all(build, asyncio.get_running_loop().time() + 10)
            assert refused.value.code == parts[others[0]].error_code and f"shard {others[0]}" in refused.value.message
            assert sent == [[0, 1, 2, 3]]
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_a_primary_drops_the_graphs_the_catalog_no_longer_has(tmp_path, monkeypatch):
    monkeypatch.setattr("torua.node.graph_edges.SWEEP_SECONDS", 0.2)
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=2, graph_repair_interval=0.1)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            old, kept = GraphRef("people", "uid-old"), GraphRef("docs", "uid-docs")
            assert cluster.gateway is not None
            kv = await cluster.gateway.nc.jetstream().create_key_value(bucket="torua_graphs")
            for ref in (old, kept):
                await kv.put(ref.name, json.dumps({"name": ref.name, "uid": ref.uid}).encode())
                client = graph_client(cluster, ref)
                for i in range(6):
                    await client.put_vertex(f"v{i}")

            async def vertices(ref: GraphRef) -> int:
                return sum([(await graph_client(cluster, ref).call(s, GraphOp.STATS)).counts["vertices"] for s in range(2)])

            await asyncio.sleep(0.5)  # rounds that find each graph's uid in the catalog drop nothing (a wait for nothing to happen)
            assert await vertices(old) == 6
            await kv.put("people", json.dumps({"name": "people", "uid": "uid-new"}).encode())  # created again: a new uid

            async def dropped() -> bool:
                for s in range(2):
                    try:
                        await graph_client(cluster, old).call(s, GraphOp.STATS)
                    except ToruaError as exc:
                        if exc.code != "not_found":
                            return False
                    else:
                        return False
                return True

            await wait_for(dropped, 10, "the old uid dropped on every shard")
            for s in range(2):
                with pytest.raises(ToruaError, match="was deleted"):
                    await graph_client(cluster, old).call(s, GraphOp.STATS)
            assert await vertices(kept) == 6
            with pytest.raises(ToruaError, match="was deleted"):  # a late write for the old uid is refused
                await graph_client(cluster, old).put_vertex("v1")
    finally:
        await cluster.stop()


@pytest.mark.timeout(120)
async def test_a_move_and_a_failover_carry_the_graph_and_its_index(tmp_path):
    cluster = SimCluster(tmp_path, sim_seed(), nodes=3, shards=2, replicas=2)
    try:
        await cluster.start()
        async with asyncio.timeout(100):
            g = graph_client(cluster)
            ids = [f"m{i}" for i in range(30)]
            for n, id in enumerate(ids):
                await g.put_vertex(id, "M", {"n": n}, [1.0, float(n)])
            for n in range(29):
                await g.put_edge(ids[n], "next", ids[n + 1])
            await settled(cluster)
            entry = cluster.map.shards[0]
            source = entry.primary
            assert source is not None and cluster.coordinator is not None
            target = next(n for n in cluster.node_ids if n not in entry.copies)
            before = graph_rows(cluster.nodes[source].holdings[0].store.directory)  # type: ignore[union-attr]
            cluster.coordinator.start_move(0, source, target, reason="test")
            await wait_for(lambda: cluster.map.shards[0].primary == target and not cluster.coordinator.moves, 30, "the move")  # type: ignore[union-attr]
            await cluster.wait_green(caught_up=True)
            assert graph_rows(cluster.nodes[target].holdings[0].store.directory) == before  # type: ignore[union-attr]
            # the index is built from the rows on the new copy: queries see every vertex of the shard
            on_shard = [i for i in ids if g.shard(i) == 0]
            hits = (await g.call(0, GraphOp.VECTOR_SEARCH, vector=[1.0, 0.0], k=len(on_shard))).hits
            assert sorted(h.id for h in hits) == sorted(on_shard)
            # a failover of the new primary: its replica serves the same graph
            await cluster.crash(target)
            await wait_for(lambda: cluster.map.shards[0].primary not in (None, target), 20, "a failover")
            await g.put_edge(ids[0], "again", ids[29])
            scan = await settled(cluster)
            assert scan.problems(GRAPH.name, 2) == [] and len(scan.edges()) == 30
            assert [e.dst for e in await g.edges(ids[0], types=["again"])] == [ids[29]]
            await cluster.restart(target)
            await cluster.wait_green(30, caught_up=True)
            assert cluster.compare_copies()[1] == [] and await graph_copies_compared(cluster) == []
    finally:
        await cluster.stop()


async def edge_across_two_nodes(cluster: SimCluster, g: GraphClient) -> tuple[str, str, str, str]:
    """Vertices a and b put on shards led by different nodes (of a 2-shard cluster),
    and a new edge (a, "knows", b) {"w": 1}: (a, b, a's node, b's node)."""
    a, b = ids_on_other_shards(2, 2)
    node_a, node_b = cluster.map.shards[g.shard(a)].primary, cluster.map.shards[g.shard(b)].primary
    assert node_a is not None and node_b is not None and node_a != node_b
    await g.put_vertex(a)
    await g.put_vertex(b)
    assert (await g.put_edge(a, "knows", b, {"w": 1})).created
    return a, b, node_a, node_b


@pytest.mark.timeout(90)
@pytest.mark.parametrize("dst_again", [False, True], ids=["dst gone", "dst deleted and put again"])
async def test_a_put_of_a_committed_edge_after_its_dst_was_deleted(tmp_path, dst_again):
    """dst's delete leaves its shard a drop task for src's shard (the out-half there
    goes); while that task is on its way, the same edge is put again, with the same
    properties. Its src's shard must not answer from its committed out-half alone:
    with dst gone the put is a 404 naming dst; with dst put again it is a new edge
    that the late drop (of the older incarnation) leaves alone."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=1, graph_repair_interval=0.2, graph_peer_timeout=0.5)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            a, b, node_a, node_b = await edge_across_two_nodes(cluster, g)
            # dst's shard cannot reach src's: the drop task waits in its outbox
            cluster.bus.set_faults(node_b, node_a, drop=1.0, subject=f"torua.node.{node_a}.graph")
            await g.delete_vertex(b)
            if dst_again:
                await g.put_vertex(b)
                assert (await g.put_edge(a, "knows", b, {"w": 1})).created is False
            else:
                with pytest.raises(ToruaError) as missing:
                    await g.put_edge(a, "knows", b, {"w": 1})
                assert missing.value.code == "not_found" and f"{b!r} (dst)" in missing.value.message
            cluster.bus.clear_faults()  # the drop task arrives now
            scan = await settled(cluster)
            assert scan.problems(GRAPH.name, 2) == []
            expected = [(a, b)] if dst_again else []
            assert [(e.src, e.dst) for e in await g.edges(a)] == expected
            if dst_again:
                assert [(e.src, e.dst) for e in await g.edges(b, "in")] == expected
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_a_drop_that_lands_while_a_put_asks_dst_shard_again_leaves_the_edge_put(tmp_path):
    """The race GraphRAG's re-ingest hit (a chunk deleted, put again, and its
    `HAS_CHUNK` edge put again at once): src's shard finds the edge committed and
    asks dst's shard to attach that incarnation again; before dst's shard looks,
    its drop of that incarnation reaches src's shard (which removes the out-half)
    and leaves its outbox, so the attach is answered `attached`. The put must not
    fail with dst "not in graph" (dst is there): it puts a new incarnation."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=1, graph_repair_interval=0.2, graph_peer_timeout=5.0)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            a, b, node_a, node_b = await edge_across_two_nodes(cluster, g)
            await settled(cluster)
            cluster.bus.set_faults(node_b, node_a, drop=1.0, subject=f"torua.node.{node_a}.graph")  # the drop waits in b's outbox
            await g.delete_vertex(b)
            await g.put_vertex(b)
            assert half_rows(cluster, (a, "knows", b))["out"] is not None  # src's shard still holds the committed half
            attaches: list[object] = []
            cluster.bus.taps.append(
                lambda env: attaches.append(env)
                if env.outcome == "delivered" and (env.src, env.dst, env.subject) == (node_a, node_b, f"torua.node.{node_b}.graph")
                else None
            )
            b_node = cluster.nodes[node_b]
            async with b_node.graph.locks.hold(vertex_lock(GRAPH.uid, b)):  # dst's shard busy with b: the attach waits
                patient = GraphClient(g.router, GRAPH, timeout=30.0)  # one attempt: a retry would find the drop done
                put = asyncio.ensure_future(patient.put_edge(a, "knows", b, {"w": 1}))
                await wait_for(lambda: attaches, 10, "the attach at dst's shard")
                cluster.bus.clear_faults()
                b_rows = b_node.holdings[g.shard(b)].store.engine("graph")
                await wait_for(lambda: not b_rows.outbox() and half_rows(cluster, (a, "knows", b))["out"] is None, 10, "the drop delivered")
            await put
            scan = await settled(cluster)
            assert scan.problems(GRAPH.name, 2) == []
            assert [(e.src, e.dst) for e in await g.edges(a)] == [(a, b)]
            assert [(e.src, e.dst) for e in await g.edges(b, "in")] == [(a, b)]
    finally:
        await cluster.stop()


@pytest.mark.timeout(90)
async def test_an_attach_overtaken_by_its_detach_holds_nothing_a_late_answer_could_confirm(tmp_path):
    """Repair on dst's shard asks src's shard about the in-halves it holds attached
    (`edge.check`); src's shard answers "committed", then src is deleted. Its detach
    reaches dst's shard before the answer is acted on (the round waits for another
    vertex of its batch) and removes one in-half; an attach of that incarnation sent
    before the delete (a put asking dst's shard to hold it again) lands after the
    detach. Held anew, the in-half would look like the one asked about, and the
    answer, about the edge that went, would confirm it: a half with no out-half,
    which nothing removes. Found by test_graph_edge_faults (seed 475066384) on CI.
    dst's shard now attaches no incarnation it was told to detach."""
    cluster = SimCluster(tmp_path, sim_seed(), nodes=2, shards=2, replicas=1, graph_repair_interval=3600, graph_peer_timeout=5.0)
    try:
        await cluster.start()
        async with asyncio.timeout(60):
            g = graph_client(cluster)
            ids = [f"v{i}" for i in range(40)]
            a_shard = g.shard(ids[0])
            b_shard = 1 - a_shard
            a0, a1 = [i for i in ids if g.shard(i) == a_shard][:2]
            b0, b1 = sorted(i for i in ids if g.shard(i) == b_shard)[:2]  # the round takes b0's lock first
            node_a, node_b = cluster.map.shards[a_shard].primary, cluster.map.shards[b_shard].primary
            assert node_a is not None and node_b is not None and node_a != node_b
            for v in (a0, a1, b0, b1):
                await g.put_vertex(v)
            e0, e1 = (a0, "knows", b0), (a1, "knows", b1)
            tokens: dict[tuple[str, str, str], int] = {}
            for e in (e0, e1):
                await g.put_edge(*e, {"w": 1})
                tokens[e] = half_rows(cluster, e)["out"][1]  # type: ignore[index]
            b_node = cluster.nodes[node_b]
            b_rows = b_node.holdings[b_shard].store.engine("graph")
            # their confirms lost: dst's shard holds the in-halves attached
            await b_node.write(b_shard, [EdgePut(GRAPH.uid, *e, "in", '{"w":1}', 1.0, state="pending", token=tokens[e]) for e in (e0, e1)], "test")
            for e in (e0, e1):
                assert half_rows(cluster, e) == {"out": ("committed", tokens[e]), "in": ("attached", tokens[e])}
            answers: list[object] = []
            cluster.bus.taps.append(
                lambda env: answers.append(env) if env.outcome == "delivered" and (env.src, env.dst) == (node_a, node_b) and env.subject.startswith("_INBOX.") else None
            )
            async with b_node.graph.locks.hold(vertex_lock(GRAPH.uid, b0)):
                round_ = asyncio.ensure_future(b_node.graph.edges.repair(b_shard, b_rows))
                await wait_for(lambda: answers, 10, "src's shard answering the check")
                await g.delete_vertex(a1)
                await wait_for(lambda: half_rows(cluster, e1) == {"out": None, "in": None}, 10, "the delete's detach at dst's shard")
                for state in (HalfState.PENDING, HalfState.COMMITTED):  # a put's first attach, a put of the committed edge
                    late = await g.call(b_shard, GraphOp.EDGE_ATTACH, halves=[EdgeHalf(*e1, token=tokens[e1], state=state, properties={"w": 1})])
                    assert [h.state for h in late.halves] == ["absent"]
                assert not round_.done()
            await round_
            assert half_rows(cluster, e0)["in"] == ("confirmed", tokens[e0])  # the answer settles what it was about
            assert half_rows(cluster, e1) == {"out": None, "in": None}
            scan = scan_rows(primaries(cluster), GRAPH.uid)  # type: ignore[arg-type]
            assert scan.problems(GRAPH.name, 2) == [] and scan.unsettled() == []
    finally:
        await cluster.stop()
