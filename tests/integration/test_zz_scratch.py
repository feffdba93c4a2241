from torua import Client
from torua.graph import rules
from torua.protocol.messages import EdgeData, VertexData


async def test_scratch(shared_cluster):
    async with Client(shared_cluster.nats_url) as db:
        g = db.graph("scratch-redo")
        await g.create(vector_dim=2)
        n = g._num_shards()
        d = "d/note"
        cs = [f"c/note/{i}" for i in range(40)]
        cs = [c for c in cs if rules.vertex_shard("scratch-redo", c, n) != rules.vertex_shard("scratch-redo", d, n)][:20]
        vs = [VertexData(c, "Chunk", {"i": 1}, [1.0, 0.0]) for c in cs]
        for rnd in range(5):
            await g.put_many([VertexData(d, "Doc", {})] + vs, [EdgeData(d, "HAS", c) for c in cs])
            for c in cs:
                await g.delete_vertex(c)
        print("ok")
