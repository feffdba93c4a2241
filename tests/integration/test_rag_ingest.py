"""GraphRAG ingestion on real processes (nats-server, coordinator, three nodes, a
gateway, two `torua worker`s): documents queued on JetStream, chunked, embedded,
extracted and written into their corpus graph by the workers; re-sent documents
touch only their changed chunks; deleting documents leaves exactly the graph a fresh
ingest of the others makes; a worker killed mid-job loses nothing
(docs/design/graphrag.md sections 3 and 4)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from torua.ports import free_port
from tests.support.processes import Cluster, ProcessGroup, start_nats, torua_command, wait_until
from tests.support.sim_cluster import wait_for
from torua import Client, ToruaError
from torua.protocol.messages import SupportItem
from torua.rag.engines import Engines
from torua.rag.service import CorpusService
from torua.storage.writer import DB_FILENAME

PEOPLE = [
    ("curie", "Marie Curie was born in Warsaw. Marie Curie moved to Paris. Pierre Curie married Marie Curie in Paris. "
              "Marie Curie won the Nobel Prize with Pierre Curie."),
    ("einstein", "Albert Einstein was born in Ulm. Albert Einstein worked in Bern at the patent office. "
                 "Albert Einstein later moved to Berlin. Albert Einstein emigrated to the United States."),
    ("turing", "Alan Turing was born in London. Alan Turing studied at Cambridge. Alan Turing worked at Bletchley Park. "
               "Alan Turing moved to Manchester."),
    ("lovelace", "Ada Lovelace was born in London. Ada Lovelace worked with Charles Babbage. "
                 "Charles Babbage designed the Analytical Engine in London."),
    ("darwin", "Charles Darwin was born in Shrewsbury. Charles Darwin sailed on the Beagle to Brazil. "
               "Charles Darwin lived in Kent. Charles Darwin studied at Cambridge."),
    ("noether", "Emmy Noether was born in Erlangen. Emmy Noether worked in Göttingen with David Hilbert. "
                "Emmy Noether emigrated to the United States."),
]
SETTINGS = {"chunk_tokens": 24, "overlap_tokens": 8}  # small chunks: every document has several


@pytest.fixture(scope="module")
def rag_cluster(tmp_path_factory) -> Cluster:
    group = ProcessGroup(tmp_path_factory.mktemp("rag"))
    try:
        _, url = start_nats(group)
        cluster = Cluster(group, url, shards=8).start(nodes=3)
        cluster.worker_metrics = free_port()  # type: ignore[attr-defined]
        workers = [cluster.start_worker("w1", ["--ack-wait", "4", "--tries", "3", "--metrics-port", str(cluster.worker_metrics)]),  # type: ignore[attr-defined]
                   cluster.start_worker("w2", ["--ack-wait", "4", "--tries", "3"])]
        wait_until(lambda: all("worker ready" in w.log() for w in workers), 60, "the workers to load their models")
        yield cluster
    finally:
        group.kill_all()


def docs(names: list[str] | None = None) -> list[dict]:
    return [{"id": name, "text": text, "metadata": {"person": name}} for name, text in PEOPLE if names is None or name in names]


NAMES = ["Marie Curie", "Albert Einstein", "Alan Turing", "Ada Lovelace", "Charles Darwin", "Emmy Noether", "Niels Bohr", "Lise Meitner"]
PLACES = ["Paris", "Berlin", "London", "Vienna", "Rome", "Madrid", "Prague", "Oslo"]


def note_version(v: int, sentences: int = 64) -> str:
    """Version `v` of a long note: the same people and places in every version, its
    sentences the same as version v + 8's but the first."""
    return f"This is version {v} of the note. " + " ".join(
        f"{NAMES[i % 8]} travelled to {PLACES[(i // 8 + v) % 8]} with {NAMES[(i // 8 + 3) % 8]}." for i in range(sentences))


def corpus_rows(cluster: Cluster, uid: str) -> dict[str, set]:
    """Every vertex, edge row and support row of graph `uid` in every primary copy's files
    (job vertices and the corpus vertex left out: they are not the corpus's content)."""
    out: dict[str, set] = {"vertices": set(), "edges": set(), "supports": set()}
    for shard in cluster.json("GET", "/shards")[1]["shards"]:
        path = Path(cluster.group.workdir) / shard["primary"] / "shards" / str(shard["shard_id"]) / DB_FILENAME
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            out["vertices"] |= {(id, label, _untimed(properties)) for id, label, properties in conn.execute("SELECT id, label, properties FROM g_vertex WHERE uid = ?", (uid,))
                                if label not in ("Job", "Corpus")}
            for src, type, dst, out_state, in_state, properties, weight in conn.execute(
                "SELECT src, type, dst, out_state, in_state, properties, weight FROM g_edge WHERE uid = ?", (uid,)
            ):  # an edge's halves are one row or two, as its ends share a shard or not: compare edges, not rows
                if out_state is not None:
                    out["edges"].add(("out", src, type, dst, out_state, properties, weight))
                if in_state is not None:
                    out["edges"].add(("in", src, type, dst, in_state, properties, weight))
            out["supports"] |= {r for r in conn.execute("SELECT src, type, dst, chunk, note FROM g_support WHERE uid = ?", (uid,)) if not r[0].startswith("j/")}
    return out


def same_corpora(cluster: Cluster, uids: dict[str, str], what: str) -> dict[str, dict[str, set]]:
    """The rows of two corpora (`uids`: name -> graph uid) once they are equal (a removed
    chunk's in-halves on other shards go by its outbox, a moment later); on a timeout,
    the part that differs fails with its difference."""
    def same() -> dict | None:
        both = {name: corpus_rows(cluster, uid) for name, uid in uids.items()}
        first, second = both.values()
        return both if first == second else None

    try:
        return wait_until(same, 20, what)
    except AssertionError:
        first, second = (corpus_rows(cluster, uid) for uid in uids.values())
        for part in ("vertices", "edges", "supports"):
            assert first[part] == second[part], part
        raise


def _untimed(properties: str) -> str:
    """Properties without `updated_at` (when a document was written is not its content)."""
    value = json.loads(properties)
    value.pop("updated_at", None)
    return json.dumps(value, sort_keys=True)


async def ingest(db: Client, corpus: str, documents: list[dict]) -> dict:
    rag = db.rag(corpus)
    job = await rag.add(documents)
    status = await rag.wait(job, timeout=120)
    assert status["done"] == len(documents) and status["failed"] == 0, status
    return status


async def test_documents_are_ingested_by_workers_and_naive_query_finds_them(rag_cluster):
    async with Client(rag_cluster.nats_url) as db:
        rag = db.rag("rag-people")
        assert (await rag.create(**SETTINGS))["created"] is True
        assert (await rag.create(**SETTINGS))["created"] is False
        with pytest.raises(ToruaError) as conflict:
            await rag.create(chunk_tokens=100)
        assert conflict.value.code == "conflict"
        await ingest(db, "rag-people", docs())
        for name, _ in PEOPLE:
            held = await rag.document(name)
            assert held["status"] == "complete" and len(held["chunks"]) >= 2 and held["metadata"] == {"person": name}
        g = db.graph("rag-people")
        assert (await g.get_vertex("e/person/marie curie"))["properties"] == {"name": "Marie Curie", "type": "PERSON"}
        married = {e["dst"]: e for e in (await g.edges("e/person/pierre curie", direction="out"))[0] if e["type"] == "RELATED"}
        assert married["e/person/marie curie"]["properties"]["predicates"].get("marry") == 1  # the triple: subject to object
        together = {e["dst"]: e for e in (await g.edges("e/person/marie curie", direction="out"))[0] if e["type"] == "RELATED"}
        pair = together["e/person/pierre curie"]  # co-occurrence: from the lower id; two sentences, each in one chunk or two
        assert pair["weight"] >= 2 and pair["properties"]["support"] == pair["weight"] and pair["properties"]["predicates"]["co-occurs"] >= 2
        mentions = (await g.edges("e/place/london", direction="in", limit=100))[0]
        assert {e["src"].split("/")[1] for e in mentions if e["type"] == "MENTIONS"} == {"turing", "lovelace"}
        answer = await rag.query("Where was Albert Einstein born?", k=3)
        assert answer["chunks"][0]["document_id"] == "einstein" and "Ulm" in answer["chunks"][0]["text"]
        assert all(c["score"] <= answer["chunks"][0]["score"] for c in answer["chunks"])
        for mode in ("naive", "hybrid"):  # a metadata filter: only the documents whose metadata holds it
            only = await rag.query("Where was Albert Einstein born?", mode=mode, k=3, metadata={"person": "turing"})
            assert only["chunks"] and {c["document_id"] for c in only["chunks"]} == {"turing"}, (mode, only["chunks"])
            assert (await rag.query("Where was Albert Einstein born?", mode=mode, metadata={"person": "nobody"}))["chunks"] == []
        married = await rag.query("Who did Pierre Curie marry?", mode="local", k=3)
        assert married["chunks"][0]["document_id"] == "curie" and "married" in married["chunks"][0]["text"]
        assert {"id": "e/person/pierre curie", "score": 1.0, "seed": True} in married["entities"]
        assert any(r["src"] == "e/person/pierre curie" and r["predicates"].get("marry") for r in married["relations"])
        # two hops: Babbage names no birthplace; the person who worked with him does
        for mode in ("local", "hybrid"):
            hop = await rag.query("Where was the mathematician who worked with Charles Babbage born?", mode=mode, k=3)
            assert any(c["document_id"] == "lovelace" and "born in London" in c["text"] for c in hop["chunks"]), (mode, hop["chunks"])
        for mode, k, words in [("cosmic", 3, "mode must be"), ("naive", 0, "k must be")]:
            with pytest.raises(ToruaError) as refused:
                await rag.query("x", mode=mode, k=k)
            assert refused.value.code == "bad_request" and words in refused.value.message
        with pytest.raises(ToruaError) as bad:
            await rag.add([{"text": ""}])
        assert bad.value.code == "bad_request"
        with pytest.raises(ToruaError) as missing:
            await db.rag("rag-nowhere").add(docs(["curie"]))
        assert missing.value.code == "not_found"


async def test_bm25_and_the_question_entities_do_not_wait_for_the_question_embedding(rag_cluster):
    """A hybrid query starts BM25's two rounds and the question's entity extraction at
    once, beside the embedder: an embedder that answers only once both started would
    hold up a query that waited for it first (it gives up after 30 s). It reads the
    chunks that mention its local entities and its bridge's entities in one hop."""
    async with Client(rag_cluster.nats_url) as db:
        await db.rag("rag-overlap").create(**SETTINGS)
        await ingest(db, "rag-overlap", docs(["lovelace", "turing"]))
        real = Engines(load=False)
        started = {"bm25": threading.Event(), "entities": threading.Event()}

        class Waiting:
            def embed(self, texts: list[str]) -> Any:
                for step, event in started.items():
                    if not event.wait(30):
                        raise AssertionError(f"the query waited for the embedding before {step}")
                return real.embedder.embed(texts)

        class Extracting:
            def extract(self, texts: list[str]) -> Any:
                started["entities"].set()
                return real.extractor.extract(texts)

        class Watched(Engines):
            def embedder_for(self, settings: Any) -> Any:
                return Waiting()

            def extractor_for(self, settings: Any) -> Any:
                return Extracting()

        corpus = CorpusService(db, "rag-overlap", Watched(load=False))
        text_search = corpus.graph.text_search

        async def bm25(*args: Any, **kwargs: Any) -> Any:
            started["bm25"].set()
            return await text_search(*args, **kwargs)

        corpus.graph.text_search = bm25  # type: ignore[method-assign]
        edges_of, hops = corpus.graph.edges_of, []

        async def counted(ids: Any, direction: str = "out", type: str | None = None, limit: int = 100) -> Any:
            hops.append((direction, type, len(ids)))
            return await edges_of(ids, direction, type, limit)

        corpus.graph.edges_of = counted  # type: ignore[method-assign]
        question = "Where was the mathematician who worked with Charles Babbage born?"
        async with asyncio.timeout(60):
            answer = await corpus.query(question, mode="hybrid", k=3)
        assert any(c["document_id"] == "lovelace" and "born in London" in c["text"] for c in answer["chunks"]), answer["chunks"]
        mentions_in = [n for direction, type, n in hops if (direction, type) == ("in", "MENTIONS")]
        assert len(mentions_in) == 1 and mentions_in[0] >= len(answer["entities"]), hops  # local's entities and the bridge's, in one hop


async def test_communities_partition_the_entity_graph_and_global_queries_read_their_summaries(rag_cluster):
    import networkx as nx

    async with Client(rag_cluster.nats_url) as db:
        rag, g = db.rag("rag-topics"), db.graph("rag-topics")
        await rag.create(**SETTINGS)
        await ingest(db, "rag-topics", docs())
        with pytest.raises(ToruaError) as none_yet:
            await rag.query("Who won the Nobel Prize?", mode="global")
        assert none_yet.value.code == "conflict" and "communities" in none_yet.value.message
        assert (await rag.info())["communities"] is None
        job = await rag.build_communities()
        assert (await rag.wait(job, timeout=120))["done"] == 1
        run = (await rag.info())["communities"]
        assert run["run"] == job and run["communities"] >= 4

        async def partition() -> tuple[nx.Graph, dict[str, set[str]]]:
            """The entity graph (networkx) and each community of the run in use -> its
            members, read back through the graph API."""
            entity_graph = nx.Graph()
            rows = (await g.cypher("MATCH (a:Vertex)-[e:Edge]->(b:Vertex) WHERE NOT a.stub AND e.type = 'RELATED' RETURN a.id, b.id"))["rows"]
            entity_graph.add_edges_from(tuple(r["values"]) for r in rows)
            held = (await g.cypher("MATCH (v:Vertex) WHERE NOT v.stub AND v.label = 'Community' RETURN v.id"))["rows"]
            members = {}
            for (cid,) in (r["values"] for r in held):
                page, _ = await g.edges(cid, direction="in", type="IN_COMMUNITY", limit=1000)
                members[cid] = {e["src"] for e in page}
            return entity_graph, members

        entity_graph, members = await partition()
        from torua.rag.community_build import scan_edges, scan_ids

        query = "MATCH (a:Vertex)-[e:Edge]->(b:Vertex) WHERE NOT a.stub AND e.type = 'RELATED' RETURN a.id, b.id"
        every = {tuple(r["values"]) for r in (await g.cypher(query))["rows"]}
        relations = await scan_edges(g, "RELATED", page=3)  # paged: three rows per shard at a time
        assert len(every) > 20 and len(relations) == len(every) and {(a, b) for a, b, _ in relations} == every
        assert sorted(await scan_ids(g, "Community", page=1)) == sorted(members)
        current = (await rag.info())["communities"]["run"]
        assert set(members) == {f"m/{current}/{n}" for n in range(run["communities"])}  # no other run's vertices
        everyone = [e for m in members.values() for e in m]
        assert len(everyone) == len(set(everyone)) == run["entities"]  # a partition: each entity in one community
        components = list(nx.connected_components(entity_graph))
        for cid, m in members.items():
            assert len(m) >= 2 and any(m <= c for c in components), (cid, m)  # never across unconnected entities
        assert nx.community.modularity(entity_graph, [*members.values(), *({e} for e in entity_graph if e not in everyone)]) > 0.3
        of = {e: cid for cid, m in members.items() for e in m}
        assert of["e/person/marie curie"] == of["e/person/pierre curie"] != of["e/person/albert einstein"]
        answer = await rag.query("Marie Curie and Pierre Curie, the Nobel Prize in Paris", mode="global", k=4)
        top = answer["communities"][0]
        assert top["id"] == of["e/person/marie curie"] and "Marie Curie" in top["summary"], answer["communities"]
        assert answer["chunks"] and all(c["document_id"] == "curie" for c in answer["chunks"][:2]), answer["chunks"]
        assert {"id": "e/person/marie curie", "community": top["id"]} in answer["entities"]
        # the corpus changes, a new run: the earlier run's communities are gone, the deleted document's entities with them
        await rag.delete_document("curie")
        again = await rag.build_communities()
        assert (await rag.wait(again, timeout=120))["done"] == 1
        entity_graph, members = await partition()
        assert set(members) == {f"m/{again}/{n}" for n in range((await rag.info())["communities"]["communities"])}
        assert not any("e/person/marie curie" in m for m in members.values())
        assert all(c["document_id"] != "curie" for c in (await rag.query("Marie Curie, Nobel Prize", mode="global", k=5))["chunks"])


async def test_an_llm_endpoint_extracts_embeds_answers_and_summarises(rag_cluster):
    """A corpus over an OpenAI-compatible endpoint (the fake in tests/support/fake_llm.py,
    whose extraction is spaCy's reading as JSON): the same entities as the spaCy corpus,
    remote embeddings, answers citing chunk ids, LLM community summaries; bad settings
    and a broken endpoint are clear errors."""
    from tests.support.fake_llm import DIM, FakeLlm

    async with Client(rag_cluster.nats_url) as db:
        with FakeLlm() as llm:
            rag, spacy_rag = db.rag("rag-llm"), db.rag("rag-llm-spacy")
            settings = {**SETTINGS, "extractor": "llm", "embedder": "openai", "dim": DIM, "llm_url": llm.url, "llm_model": "fake-chat",
                        "embedding_model": "fake-embed"}
            assert (await rag.create(**settings))["settings"]["llm_url"] == llm.url
            await spacy_rag.create(**SETTINGS)
            await ingest(db, "rag-llm", docs())
            await ingest(db, "rag-llm-spacy", docs())
            assert llm.calls["extract"] >= len(PEOPLE) and llm.calls["embed"] >= len(PEOPLE)

            async def entities(corpus: str) -> set[str]:
                rows = (await db.graph(corpus).cypher("MATCH (v:Vertex) WHERE NOT v.stub AND v.label = 'Entity' RETURN v.id"))["rows"]
                return {r["values"][0] for r in rows}

            assert await entities("rag-llm") == await entities("rag-llm-spacy") != set()
            g = db.graph("rag-llm")
            married = {e["dst"]: e for e in (await g.edges("e/person/pierre curie", direction="out", type="RELATED"))[0]}
            assert married["e/person/marie curie"]["properties"]["predicates"].get("marry") == 1  # the model's triple
            assert len((await g.get_vertex(f"c/curie/{(await rag.document('curie'))['chunks'][0]}", embedding=True))["embedding"]) == DIM

            answer = await rag.query("Where was Albert Einstein born?", mode="naive", k=3, answer=True)
            first = answer["chunks"][0]
            assert first["document_id"] == "einstein" and answer["citations"] == [first["id"]], answer
            assert answer["answer"].startswith(f"From [{first['id']}]") and "Ulm" in answer["answer"]
            assert "answer" not in await rag.query("Where was Albert Einstein born?", k=1)

            await rag.wait(await rag.build_communities(), timeout=120)
            summaries = await rag.query("Marie Curie in Paris", mode="global", k=2)
            assert summaries["communities"] and all(c["summary"].startswith("Summary: Entities:") for c in summaries["communities"])
            assert llm.calls["summary"] >= (await rag.info())["communities"]["communities"]

            for bad, words in [({"extractor": "llm"}, "need llm_url, llm_model"), ({"embedder": "openai", "llm_url": llm.url}, "need embedding_model"),
                               ({"llm_url": "ftp://x", "llm_model": "m"}, "http(s) URL"), ({"embedder": "openai", "dim": 0, "llm_url": llm.url, "embedding_model": "e"}, "dim must be")]:
                with pytest.raises(ToruaError) as refused:
                    await db.rag("rag-llm-bad").create(**bad)
                assert refused.value.code == "bad_request" and words in refused.value.message, (bad, refused.value.message)
            with pytest.raises(ToruaError) as no_model:
                await spacy_rag.query("Where was Albert Einstein born?", answer=True)
            assert no_model.value.code == "bad_request" and "no chat model" in no_model.value.message
            broken = db.rag("rag-llm-broken")
            await broken.create(**SETTINGS, llm_url=llm.url, llm_model="broken")
            await ingest(db, "rag-llm-broken", docs(["curie"]))  # the offline pipeline: no chat model needed
            with pytest.raises(ToruaError) as down:
                await broken.query("Who married Marie Curie?", answer=True)
            assert down.value.code == "unavailable" and "HTTP 500" in down.value.message and llm.url in down.value.message

            # An extractor that keeps failing: the document is tried --tries times, then
            # counts as failed with the endpoint's error, and its job ends.
            failing = db.rag("rag-llm-failing")
            await failing.create(**SETTINGS, extractor="llm", llm_url=llm.url, llm_model="broken")
            tried = llm.calls["broken"]
            status = await failing.wait(await failing.add(docs(["curie"])), timeout=120)
            assert (status["state"], status["done"], status["failed"]) == ("done", 0, 1), status
            assert "HTTP 500" in status["first_error"] and "gave up after 3 tries" in status["first_error"], status
            assert llm.calls["broken"] - tried >= 3
            assert (await failing.document("curie") or {}).get("status") != "complete"


async def test_a_batch_with_a_failing_document_writes_the_others(rag_cluster):
    """A worker writes the documents it took together as one batch; one whose planning
    fails (its extraction: the fake model refuses a text that says POISON) is left out
    and taken on its own: the others are complete, planned once, and the bad one counts
    as failed with its error; each message is acknowledged or ended. The messages
    are real JetStream messages of a stream of the test's own, taken by a `Worker` in
    this process (the cluster's workers take from theirs)."""
    from nats.js.api import StreamConfig

    from tests.support.fake_llm import DIM, FakeLlm
    from torua.protocol.codec import encode
    from torua.protocol.messages import RagJob
    from torua.rag.engines import Engines
    from torua.rag.worker import Worker

    async with Client(rag_cluster.nats_url) as db:
        with FakeLlm() as llm:
            rag = db.rag("rag-batch")
            await rag.create(**SETTINGS, extractor="llm", embedder="openai", dim=DIM, llm_url=llm.url, llm_model="fake-chat", embedding_model="fake-embed")
            js = db._nc.jetstream()
            await js.add_stream(StreamConfig(name="TEST_BATCH", subjects=["test.batch"]))
            try:
                jobs = [RagJob("b1", "rag-batch", name, text) for name, text in PEOPLE[:2]]
                jobs.insert(1, RagJob("b1", "rag-batch", "poison", "Alan Turing was born in London. POISON."))
                for job in jobs:
                    await js.publish("test.batch", encode(job))
                pulled = await js.pull_subscribe("test.batch", durable="test-batch")
                messages = []
                while len(messages) < len(jobs):
                    messages += await pulled.fetch(len(jobs) - len(messages), timeout=5)
                worker = Worker(db, Engines(load=False), documents=8, tries=1)
                assert len(messages) <= worker.batch
                await worker.take_many(messages)
                assert (worker.done, worker.failed, llm.calls["poisoned"]) == (2, 1, 2)  # tried in the batch, then alone
                written = [await rag.document(name) for name, _ in PEOPLE[:2]]
                assert all(d["status"] == "complete" for d in written), written
                assert llm.calls["extract"] == sum(len(d["chunks"]) for d in written)  # one call per chunk: the others were planned once
                assert (await rag.document("poison") or {}).get("status") != "complete"
                failed = await db.graph("rag-batch").get_vertex("j/b1/failed")
                assert "HTTP 500" in failed["properties"]["first_error"], failed
                assert (await pulled.consumer_info()).num_ack_pending == 0  # every message acknowledged or ended
            finally:
                await js.delete_stream("TEST_BATCH")


async def test_a_document_whose_last_try_was_cut_short_counts_as_failed(rag_cluster):
    """A worker that dies during a document's last try never says how it went: the
    consumer delivers the message once more than the tries (`torua.rag.queue`), and the
    worker that gets that delivery counts the document as failed, without trying it,
    so its job ends. Real JetStream messages of a stream and consumer of the test's own
    (max_deliver = tries + 1, as the queue's), taken by a `Worker` in this process; the
    first delivery is left unacknowledged, as a killed worker leaves it."""
    from nats.js.api import StreamConfig

    from torua.protocol.codec import encode
    from torua.protocol.messages import RagJob
    from torua.rag import queue
    from torua.rag.engines import Engines
    from torua.rag.worker import Worker

    async with Client(rag_cluster.nats_url) as db:
        rag = db.rag("rag-cut-short")
        await rag.create(**SETTINGS)
        js = db._nc.jetstream()
        await js.add_stream(StreamConfig(name="TEST_CUT", subjects=["test.cut"]))
        try:
            await js.publish("test.cut", encode(RagJob("c1", "rag-cut-short", "curie", PEOPLE[0][1])))
            config = queue.consumer_config(ack_wait=1.0, tries=1)
            assert config.max_deliver == 2
            pulled = await js.pull_subscribe("test.cut", durable="test-cut", config=config)
            first = await pulled.fetch(1, timeout=5)
            assert first[0].metadata.num_delivered == 1  # taken, never acknowledged: its worker "died"
            again = await pulled.fetch(1, timeout=10)  # redelivered once ack_wait passed
            assert again[0].metadata.num_delivered == 2
            worker = Worker(db, Engines(load=False), tries=1)
            await worker.take_many(again)
            assert (worker.done, worker.failed) == (0, 1)
            failed = await db.graph("rag-cut-short").get_vertex("j/c1/failed")
            assert "gave up after 1 tries" in failed["properties"]["first_error"] and "stopped before it finished" in failed["properties"]["first_error"]
            assert await rag.document("curie") is None  # not tried again
            assert (await pulled.consumer_info()).num_ack_pending == 0
        finally:
            await js.delete_stream("TEST_CUT")


async def test_versions_of_a_document_are_written_in_the_order_they_were_sent(rag_cluster):
    """Two workers may hold two versions of one document, or a version may come back
    (its worker died) after a newer one was written: the claims (torua.rag.claims)
    keep the queue's order. An older version after a newer one is not written (and
    counts as done in its job); a newer one waits while an older one is written; a
    delete comes after the versions sent before it (they are then not written) and
    before those sent after it. Real JetStream messages of a stream of the test's
    own, the claims in the cluster's bucket, a `Worker` in this process."""
    from nats.js.api import StreamConfig

    from torua.protocol.codec import encode
    from torua.protocol.messages import RagJob
    from torua.rag.claim_store import ClaimStore
    from torua.rag.claims import message_version
    from torua.rag.engines import Engines
    from torua.rag.service import CorpusService
    from torua.rag.worker import Worker

    def version_text(n: int) -> str:
        return f"Marie Curie was born in Warsaw. This is version {n} of the note about her."

    async with Client(rag_cluster.nats_url) as db:
        rag = db.rag("rag-order")
        await rag.create(**SETTINGS)
        js = db._nc.jetstream()
        await js.add_stream(StreamConfig(name="TEST_ORDER", subjects=["test.order"]))

        async def text_now() -> str | None:
            held = await rag.document("note")
            if held is None or held["status"] != "complete":
                return None
            chunks = [await db.graph("rag-order").get_vertex(f"c/note/{h}") for h in held["chunks"]]
            return " ".join(c["properties"]["text"] for c in chunks if c is not None)

        async def done(job: str) -> int:
            return (await db.graph("rag-order").support([SupportItem(f"j/{job}")]))[0]

        try:
            pulled = await js.pull_subscribe("test.order", durable="test-order")

            async def send(versions: range) -> list:
                for n in versions:
                    await js.publish("test.order", encode(RagJob(f"v{n}", "rag-order", "note", version_text(n))))
                taken: list = []
                while len(taken) < len(versions):
                    taken += await pulled.fetch(len(versions) - len(taken), timeout=5)
                assert [m.metadata.sequence.stream for m in taken] == list(versions)
                return taken

            messages = await send(range(1, 5))
            worker = Worker(db, Engines(load=False), stream="TEST_ORDER")
            assert worker.claims is not None
            decisions: list[str] = []
            claim = worker.claims.claim

            async def recorded(*args):
                decisions.append(await claim(*args))
                return decisions[-1]

            worker.claims.claim = recorded  # type: ignore[method-assign]

            # version 2 is written first; version 1 comes back after it: not written, done in its job
            await worker.take_many([messages[1]])
            assert "version 2" in (await text_now() or "")
            await worker.take_many([messages[0]])
            assert decisions == ["take", "superseded"]
            assert "version 2" in (await text_now() or "") and await done("v1") == 1

            # an older version being written (a claim held by version 5, between messages 2 and 3): version 3 waits for it
            other = ClaimStore(js, stream="TEST_ORDER")
            assert await other.claim("rag-order", "note", message_version(2) + 1) == "take"
            taking = asyncio.ensure_future(worker.take_many([messages[2]]))
            await wait_for(lambda: "wait" in decisions, 30, "version 3 to find an older version being written")
            assert not taking.done() and "version 2" in (await text_now() or "")
            await other.release("rag-order", "note", message_version(2) + 1, written=False)
            await asyncio.wait_for(taking, 60)
            assert "version 3" in (await text_now() or "")

            # a delete after message 4 was sent (not written yet): message 4 is then not written, message 5 sent after it is
            service = CorpusService(db, "rag-order", claims=ClaimStore(js, stream="TEST_ORDER"))
            assert await service.delete_document("note") is True
            assert await rag.document("note") is None
            await worker.take_many([messages[3]])
            assert decisions[-1] == "superseded" and await rag.document("note") is None and await done("v4") == 1
            await worker.take_many(await send(range(5, 6)))
            assert decisions[-1] == "take" and "version 5" in (await text_now() or "")

            # in a batch: a version superseded by a newer one being written (held by version 100 here) is left
            # out, the batch's other document is written
            assert await other.claim("rag-order", "note", 100) == "take"
            await js.publish("test.order", encode(RagJob("v6", "rag-order", "other", "Pierre Curie was born in Paris.")))
            batch: list = []
            await js.publish("test.order", encode(RagJob("v7", "rag-order", "note", version_text(7))))
            while len(batch) < 2:
                batch += await pulled.fetch(2 - len(batch), timeout=5)
            decisions.clear()
            await worker.take_many(batch)
            assert sorted(decisions) == ["superseded", "take"]
            assert "version 5" in (await text_now() or "") and (await rag.document("other") or {}).get("status") == "complete"
            assert await done("v6") == 1 and await done("v7") == 1
            await other.release("rag-order", "note", 100, written=False)

            assert (await pulled.consumer_info()).num_ack_pending == 0

            # the queue made again (its sequences start again): its first message is not "older" than what was written
            await js.delete_stream("TEST_ORDER")
            await js.add_stream(StreamConfig(name="TEST_ORDER", subjects=["test.order"]))
            await js.publish("test.order", encode(RagJob("v8", "rag-order", "note", version_text(8))))
            again = await js.pull_subscribe("test.order", durable="test-order-again")
            first = await again.fetch(1, timeout=5)
            assert first[0].metadata.sequence.stream == 1
            decisions.clear()
            await worker.take_many(first)
            assert decisions[-1] == "take" and "version 8" in (await text_now() or "")
        finally:
            await js.delete_stream("TEST_ORDER")


async def test_a_worker_paused_past_its_claim_is_fenced_off_and_the_next_version_cleans_up_after_it(rag_cluster, monkeypatch):
    """A worker stopped in the middle of version 1 (its chunks and their entity support
    written, the relations' not yet) and not renewing its claim: version 2's worker
    waits until that claim is stale, takes it over, removes whatever version 1 left
    (the document is not complete) and writes version 2. When the first worker wakes
    up, its next write carries a fence that has passed and the node refuses it: the
    graph is exactly what a fresh ingest of version 2 makes, and version 1's message,
    delivered again, is superseded. Two `Worker`s in this process, each with its own
    connection and claims, on a stream of the test's own; the pause holds the first
    one's writes and its claim renewals (what SIGSTOP of its process would)."""
    from nats.js.api import StreamConfig

    from torua.graph.client import Graph
    from torua.protocol.codec import encode
    from torua.protocol.messages import RagJob
    from torua.rag.worker import Worker

    texts = [note_version(0, 24), note_version(1, 24), note_version(9, 24)]  # 9 shares all but its first sentence with 1
    async with Client(rag_cluster.nats_url) as db, Client(rag_cluster.nats_url) as first_db, Client(rag_cluster.nats_url) as second_db:
        rag = db.rag("rag-pause")
        await rag.create(**SETTINGS)
        js = db._nc.jetstream()
        await js.add_stream(StreamConfig(name="TEST_PAUSE", subjects=["test.pause"]))
        try:
            for n, text in enumerate(texts):
                await js.publish("test.pause", encode(RagJob(f"p{n}", "rag-pause", "note", text)))
            pulled = await js.pull_subscribe("test.pause", durable="test-pause")
            messages: list = []
            while len(messages) < 3:
                messages += await pulled.fetch(3 - len(messages), timeout=5)
            first = Worker(first_db, Engines(load=False), ack_wait=1.5, stream="TEST_PAUSE")  # its claims go stale 3 s after their last renewal
            second = Worker(second_db, Engines(load=False), ack_wait=1.5, stream="TEST_PAUSE")
            await first.take_many([messages[0]])
            assert (await rag.document("note") or {}).get("status") == "complete"

            async def curie_support() -> int:
                return (await db.graph("rag-pause").support([SupportItem("e/person/marie curie")]))[0]

            before = await curie_support()

            paused, woken = asyncio.Event(), asyncio.Event()
            calls: list[str] = []
            refused: list[str] = []
            support = Graph.support

            async def held_support(self: Graph, items: list) -> list[int]:
                if self.client is first_db and self._not_after is not None and self.name == "rag-pause":
                    calls.append("support")
                    if len(calls) == 2:  # version 1's relations: its chunks and their entities' support are in
                        paused.set()
                        await woken.wait()
                        try:
                            return await support(self, items)
                        except ToruaError as exc:
                            refused.append(exc.code)
                            raise
                return await support(self, items)

            renew = first.claims.renew

            async def held_renew(*args: Any) -> bool:
                if paused.is_set():
                    await woken.wait()
                return await renew(*args)

            monkeypatch.setattr(Graph, "support", held_support)
            first.claims.renew = held_renew  # type: ignore[method-assign]
            writing_first = asyncio.ensure_future(first.take_many([messages[1]]))
            await asyncio.wait_for(paused.wait(), 60)
            marked = await rag.document("note") or {}
            assert marked.get("status") == "ingesting" and marked.get("planned")
            first_chunk = await db.graph("rag-pause").get_vertex(f"c/note/{marked['planned'][0]}")
            assert first_chunk is not None and "version 1" in first_chunk["properties"]["text"], "version 1's chunks are written before the pause"
            assert await curie_support() > before, "and their entities' support"

            await asyncio.wait_for(second.take_many([messages[2]]), 60)  # waits for the first's claim to go stale
            document = await rag.document("note")
            assert document is not None and document["status"] == "complete"
            woken.set()
            await asyncio.wait_for(writing_first, 60)
            assert refused == ["fenced"], "the first worker's write after its claim went stale is refused"
            assert await rag.document("note") == document, "and changes nothing"

            again = await pulled.fetch(1, timeout=10)  # version 1 again (given back after its failure)
            assert again[0].metadata.sequence.stream == 2
            await second.take_many(again)
            assert (await pulled.consumer_info()).num_ack_pending == 0
            assert await rag.document("note") == document, "version 1, delivered again, is superseded"
        finally:
            await js.delete_stream("TEST_PAUSE")
        await db.rag("rag-pause-fresh").create(**SETTINGS)
        await ingest(db, "rag-pause-fresh", [{"id": "note", "text": texts[2]}])
        uids = {name: (await db.graph(name).info())["uid"] for name in ("rag-pause", "rag-pause-fresh")}

    both = same_corpora(rag_cluster, uids, "the graph to be a fresh ingest of version 2")
    assert any(r[0] == "e/person/alan turing" for r in both["rag-pause"]["vertices"])
    assert {r[1] for r in both["rag-pause"]["supports"]} == {"", "RELATED"}, "entities' and relations' support both there"


REQUEST_SECONDS = 20


async def test_a_worker_stopped_with_sigstop_mid_document_is_fenced_off_when_it_wakes(rag_cluster):
    """Real processes: the worker writing version 1 of a long document is stopped
    (SIGSTOP) and version 2 is sent; the other worker waits until the stopped one's
    claim is stale, takes it over, removes what version 1 left and writes version 2.
    The stopped worker is woken at once, before its requests time out: its next write
    carries a fence that has passed and the node refuses it (`fenced`), and its
    message, delivered again, is superseded. The document is version 2, the queue
    empty, the graph what a fresh ingest of version 2 makes. Two workers of a short
    ack wait (their claims go stale 2 s after their last renewal) do it; the module's
    two are stopped meanwhile, so versions go straight on the queue and progress is
    read from the graph (the gateway's GraphRAG calls go to the workers)."""
    from torua.protocol.codec import decode, encode
    from torua.protocol.messages import RagJob
    from torua.rag import queue
    from torua.rag.claims import CLAIMS_BUCKET, DocumentClaim, claim_key

    module_workers = [p for p in rag_cluster.group.procs if p.name.startswith("worker-") and p.alive()]
    # requests of 20 s (not the default 5): the takeover below must end before they time out, also on a busy machine
    ours = {name: rag_cluster.start_worker(name, ["--ack-wait", "1", "--request-timeout", str(REQUEST_SECONDS)]) for name in ("s1", "s2")}
    stopped: list = []
    try:
        await asyncio.to_thread(wait_until, lambda: all("worker ready" in w.log() for w in ours.values()), 60, "the two workers")
        assert all(f"time out after {REQUEST_SECONDS:g} s" in w.log() for w in ours.values())
        async with Client(rag_cluster.nats_url) as db:
            rag, g, js = db.rag("rag-stop"), db.graph("rag-stop"), db._nc.jetstream()
            await rag.create(**SETTINGS)
            for worker in module_workers:
                worker.pause()
            stopped += module_workers
            claims = await js.key_value(CLAIMS_BUCKET)

            async def send(v: int) -> None:
                await js.publish(queue.subject("rag-stop"), encode(RagJob(f"stop-{v}", "rag-stop", "note", note_version(v))), stream=queue.STREAM)

            async def status() -> str | None:
                held = await g.get_vertex("d/note")
                return None if held is None else held["properties"]["status"]

            async def is_version(v: int) -> bool:
                held = await g.get_vertex("d/note")
                if held is None or held["properties"]["status"] != "complete":
                    return False
                chunks = await g.get_vertices([f"c/note/{h}" for h in held["properties"]["chunks"]])
                return f"version {v} of" in " ".join(c["properties"]["text"] for c in chunks.values() if c is not None)

            async def claim() -> DocumentClaim:
                return decode(DocumentClaim, (await claims.get(claim_key("rag-stop", "note"))).value)

            await send(0)
            await _until(lambda: is_version(0), 60, "version 0")
            writer = None
            for v in range(1, 5):  # until the stop lands while version v is being written
                await send(v)
                await _until(lambda: _status_is(status, "ingesting"), 60, f"version {v} to be written")
                writer = ours.get((await claim()).holder.split(":")[0])
                if writer is not None:
                    writer.pause()
                    paused_at = time.monotonic()
                    stopped.append(writer)
                    if not await _turns(status, "complete", 0.3):
                        break
                    writer.resume()  # it ended before the stop: again
                    stopped.remove(writer)
                await _until(lambda: is_version(v), 60, f"version {v} to be complete")
            assert writer is not None and writer in stopped, "a worker was stopped while it wrote a version"
            await send(9)
            await _until(lambda: _taken_from(claim, writer), 30, "the other worker to take the claim over")
            writer.resume()
            stopped.remove(writer)
            assert time.monotonic() - paused_at < REQUEST_SECONDS, "woken before its requests time out (--request-timeout)"
            await _until(lambda: is_version(9), 60, "version 9 to be written")

            async def queue_empty() -> bool:
                info = await js.consumer_info(queue.STREAM, queue.CONSUMER)
                return info.num_pending == 0 and info.num_ack_pending == 0

            await _until(queue_empty, 60, "every message of the queue to be acknowledged (the stopped one's superseded)")
            assert await is_version(9), "the stopped writer changed nothing once awake"
            assert "fenced" in writer.log(), "its write after waking was refused by the fence"
            for worker in module_workers:
                worker.resume()
            stopped = []
            await db.rag("rag-stop-fresh").create(**SETTINGS)
            await ingest(db, "rag-stop-fresh", [{"id": "note", "text": note_version(9)}])
            uids = {name: (await db.graph(name).info())["uid"] for name in ("rag-stop", "rag-stop-fresh")}
    finally:
        for worker in stopped:
            worker.resume()
        for worker in ours.values():
            worker.terminate()

    same_corpora(rag_cluster, uids, "the graph to be a fresh ingest of the last version")


async def _taken_from(claim, writer) -> bool:
    held = await claim()
    return held.held != 0 and not held.holder.startswith(writer.name.removeprefix("worker-") + ":")


async def _status_is(status, expected: str) -> bool:
    return await status() == expected


async def _turns(status, expected: str, within: float) -> bool:
    """Whether the document's status becomes `expected` within `within` seconds (polled)."""
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await status() == expected:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_near_name_merges_with_an_entity_another_worker_made_or_the_corpus_holds(rag_cluster):
    """Each worker's resolver learns the entities other workers make (`EntityNames` on
    torua.rag.names.<corpus>) and, when it first meets a corpus, the corpus's own: "Marie
    Curiee" met by worker B, or by a worker started afterwards, is the entity "Marie
    Curie" worker A made, not a new one. Workers in this process, real JetStream
    messages of a stream of the test's own."""
    from nats.js.api import StreamConfig

    from torua.protocol.codec import encode
    from torua.protocol.messages import RagJob
    from torua.rag.engines import Engines
    from torua.rag.worker import Worker

    async with Client(rag_cluster.nats_url, timeout=REQUEST_SECONDS) as db:  # the workers' requests: seeding reads every shard
        rag = db.rag("rag-names")
        await rag.create(**SETTINGS)
        graph = db.graph("rag-names")
        js = db._nc.jetstream()
        await js.add_stream(StreamConfig(name="TEST_NAMES", subjects=["test.names"]))
        pulled = await js.pull_subscribe("test.names", durable="test-names")

        async def ingest_by(worker: Worker, document_id: str, text: str) -> None:
            await js.publish("test.names", encode(RagJob("n1", "rag-names", document_id, text)))
            await worker.take_many(await pulled.fetch(1, timeout=5))
            assert (await rag.document(document_id) or {}).get("status") == "complete"

        try:
            engines = Engines(load=False)
            a, b = Worker(db, engines, stream="TEST_NAMES"), Worker(db, engines, stream="TEST_NAMES")
            subscriptions = [await a.listen_names(), await b.listen_names()]
            await ingest_by(b, "paris", "Paris is the capital of France.")  # b knows the corpus (no person in it yet)
            assert "rag-names" in b.seeded
            await db._nc.publish("torua.rag.names.rag-names", b"not a message")  # garbage: dropped, the workers go on
            await ingest_by(a, "born", "Marie Curie was born in Warsaw.")
            await wait_for(lambda: "e/person/marie curie" in b.resolvers["rag-names"].entities, 30, "b to hear of Marie Curie")
            await ingest_by(b, "moved", "Marie Curiee moved to Paris in 1891.")
            assert await graph.get_vertex("e/person/marie curiee") is None
            mentioned = {e["src"] for e in (await graph.edges("e/person/marie curie", direction="in", type="MENTIONS"))[0]}
            assert any(c.startswith("c/moved/") for c in mentioned), mentioned
            later = Worker(db, engines, stream="TEST_NAMES")  # started afterwards: reads the corpus's entities first
            await ingest_by(later, "visit", "Albert Einstein visited Marie Curiee in Paris.")
            assert await graph.get_vertex("e/person/marie curiee") is None
            mentioned = {e["src"] for e in (await graph.edges("e/person/marie curie", direction="in", type="MENTIONS"))[0]}
            assert any(c.startswith("c/visit/") for c in mentioned), mentioned
            for subscription in subscriptions:
                await subscription.unsubscribe()
        finally:
            await js.delete_stream("TEST_NAMES")


async def test_a_document_sent_again_rewrites_only_its_changed_chunks(rag_cluster):
    async with Client(rag_cluster.nats_url) as db:
        rag = db.rag("rag-again")
        await rag.create(**SETTINGS)
        await ingest(db, "rag-again", docs(["einstein"]))
        before = (await rag.document("einstein"))["chunks"]
        text = dict(PEOPLE)["einstein"].replace("emigrated to the United States", "emigrated to Princeton in the United States")
        await ingest(db, "rag-again", [{"id": "einstein", "text": text, "metadata": {"person": "einstein"}}])
        after = (await rag.document("einstein"))["chunks"]
        kept = [h for h in after if h in before]
        assert kept and len(kept) < len(after) and after[: len(kept)] == before[: len(kept)]  # the start is unchanged
        g = db.graph("rag-again")
        for gone in set(before) - set(after):
            assert await g.get_vertex(f"c/einstein/{gone}") is None
        for new in set(after) - set(before):
            assert "Princeton" in (await g.get_vertex(f"c/einstein/{new}"))["properties"]["text"]
        assert (await rag.query("Princeton", k=1))["chunks"][0]["id"].split("/")[2] in set(after) - set(before)


async def test_deleting_half_the_documents_leaves_the_graph_a_fresh_ingest_of_the_rest_makes(rag_cluster):
    kept, dropped = ["curie", "turing", "noether"], ["einstein", "lovelace", "darwin"]
    async with Client(rag_cluster.nats_url) as db:
        await db.rag("rag-all").create(**SETTINGS)
        await ingest(db, "rag-all", docs())
        # a chunk darwin's vertex does not list, as a version written at the same time by another
        # worker leaves it: linked by HAS_CHUNK, supporting an entity of its own; the delete takes it too
        g, orphan, unit = db.graph("rag-all"), "c/darwin/ffffffffffffffff", [0.0] * 383 + [1.0]
        await g.support([SupportItem("e/place/atlantis", label="Entity", properties={"name": "Atlantis", "type": "GPE"}, embedding=unit,
                                     added={orphan: json.dumps({"mentions": 1})})])
        await g.put_vertex(orphan, "Chunk", {"text": "Darwin never sailed to Atlantis.", "document_id": "darwin", "index": 9, "start": 0, "end": 32,
                                             "entities": ["e/place/atlantis"], "relations": []}, unit)
        await g.put_edge("d/darwin", "HAS_CHUNK", orphan)
        for name in dropped:
            await db.rag("rag-all").delete_document(name)
            assert await db.rag("rag-all").document(name) is None
        await db.rag("rag-all").delete_document("einstein")  # idempotent
        await db.rag("rag-half").create(**SETTINGS)
        await ingest(db, "rag-half", docs(kept))
        uids = {name: (await db.graph(name).info())["uid"] for name in ("rag-all", "rag-half")}

    both = same_corpora(rag_cluster, uids, "the graph after the deletes to be the fresh ingest's")
    assert both["rag-half"]["vertices"] and both["rag-half"]["supports"] and both["rag-half"]["edges"]
    assert {state for kind, *_, state, _, _ in both["rag-all"]["edges"]} <= {"committed", "confirmed"}  # every edge settled
    assert not any(r[0] in ("e/place/ulm", "e/place/atlantis", "c/darwin/ffffffffffffffff") for r in both["rag-all"]["vertices"])  # only the deleted named them


async def test_a_worker_killed_mid_job_loses_no_document(rag_cluster):
    many = [{"id": f"{name}-{n}", "text": text} for n in range(6) for name, text in PEOPLE]
    async with Client(rag_cluster.nats_url) as db:
        rag = db.rag("rag-kill")
        await rag.create(**SETTINGS)
        job = await rag.add(many)
        victim = next(p for p in rag_cluster.group.procs if p.name == "worker-w2")
        await _until(lambda: _done(rag, job, 3), 60, "three documents done")
        victim.kill()
        status = await rag.wait(job, timeout=120)
        assert status == {"job": job, "documents": len(many), "done": len(many), "failed": 0, "state": "done"}
        for item in many:
            held = await rag.document(item["id"])
            assert held is not None and held["status"] == "complete", item["id"]
        rag_cluster.start_worker("w2", ["--ack-wait", "4"])  # the module's other tests keep two workers
        wait_until(lambda: "worker ready" in [p for p in rag_cluster.group.procs if p.name == "worker-w2"][-1].log(), 60, "the new worker")


async def _done(rag, job: str, at_least: int) -> bool:
    return (await rag.job(job))["done"] >= at_least


async def _until(predicate, timeout: float, what: str) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def test_the_rest_api_walks_a_corpus(rag_cluster):
    c = rag_cluster
    status, made = c.json("PUT", "/rag/rag-rest", SETTINGS)
    assert status == 201 and made["settings"]["chunk_tokens"] == 24 and made["created"] is True
    assert c.json("PUT", "/rag/rag-rest", SETTINGS)[0] == 200
    assert c.json("PUT", "/rag/rag-rest", {"chunk_tokens": 300})[0] == 400
    lines = b"".join(json.dumps(d).encode() + b"\n" for d in docs(["turing", "darwin"]))
    bad = lines + b'{"text": ""}\n'
    status, refused, _ = c.request("POST", "/rag/rag-rest/documents", bad, {"Content-Type": "application/x-ndjson"})
    assert status == 400 and b"document 3" in refused, refused  # nothing queued
    too_big = lines + json.dumps({"id": "huge", "text": "word " * (190 << 10)}).encode() + b"\n"  # 950 KiB of text
    status, refused, _ = c.request("POST", "/rag/rag-rest/documents", too_big, {"Content-Type": "application/x-ndjson"})
    assert status == 413 and b"line 3: a document holds at most 921600 bytes of text" in refused, refused
    status, refused, _ = c.request("POST", "/rag/rag-nowhere/documents", lines, {"Content-Type": "application/x-ndjson"})
    assert status == 404 and b"rag-nowhere" in refused, refused
    status, body, _ = c.request("POST", "/rag/rag-rest/documents", lines, {"Content-Type": "application/x-ndjson"})
    accepted = json.loads(body)
    assert status == 202 and accepted["documents"] == 2, body
    job = accepted["job"]
    wait_until(lambda: c.json("GET", f"/rag/rag-rest/jobs/{job}")[1].get("state") == "done", 60, "the job")
    assert c.json("GET", f"/rag/rag-rest/jobs/{job}")[1] == {"job": job, "documents": 2, "done": 2, "failed": 0, "state": "done"}

    def query(body: dict) -> tuple[int, dict]:
        """Right after writes (an ingest, a community run) a shard's index may still be
        catching up: a query then answers 503 or 504 "try again" (docs/design/graph.md
        section 1), and a client asks again, as `torua rag ingest` and `eval` do."""
        return wait_until(lambda: r if (r := c.json("POST", "/rag/rag-rest/query", body))[0] not in (503, 504) else None,
                          60, "the corpus to answer once its indexes caught up")

    status, answer = query({"question": "Where did Charles Darwin sail?", "mode": "hybrid", "k": 2})
    assert status == 200 and answer["chunks"][0]["document_id"] == "darwin" and "Beagle" in answer["chunks"][0]["text"], answer
    status, only = query({"question": "Where did Charles Darwin sail?", "k": 2, "metadata": {"person": "turing"}})
    assert status == 200 and {x["document_id"] for x in only["chunks"]} == {"turing"}, only
    assert c.json("POST", "/rag/rag-rest/query", {"question": "x", "metadata": ["turing"]})[0] == 400
    status, info = c.json("GET", "/rag/rag-rest")
    assert status == 200 and info["counts"]["vertices"] > 4
    status, body, _ = c.request("POST", "/rag/rag-rest/communities", b"")
    assert status == 202, body
    run = json.loads(body)["job"]
    wait_until(lambda: c.json("GET", f"/rag/rag-rest/jobs/{run}")[1].get("state") == "done", 60, "the community run")
    assert c.json("GET", "/rag/rag-rest")[1]["communities"]["run"] == run
    status, answer = query({"question": "Beagle, Brazil and Shrewsbury", "mode": "global", "k": 2})
    assert status == 200 and answer["communities"] and answer["chunks"][0]["document_id"] == "darwin", answer
    assert c.json("POST", "/rag/rag-nowhere/communities", {})[0] == 404
    assert c.request("DELETE", "/rag/rag-rest/documents/darwin")[0] == 204
    assert c.json("GET", "/graphs/rag-rest/vertices/d%2Fdarwin")[0] == 404
    assert c.json("GET", "/rag/rag-nowhere")[0] == 404
    assert c.request("DELETE", "/rag/rag-nowhere/documents/darwin")[0] == 404
    assert c.json("GET", "/rag/rag-rest/jobs/nope")[0] == 404


def test_torua_rag_ingests_a_directory_and_answers_from_the_shell(rag_cluster, tmp_path):
    from tests.integration.test_client import run_torua

    url = rag_cluster.nats_url
    folder = tmp_path / "notes"
    (folder / "people").mkdir(parents=True)
    for name, text in PEOPLE[:3]:
        (folder / "people" / f"{name}.txt").write_text(text)
    (folder / "more.ndjson").write_text("".join(json.dumps(d) + "\n" for d in docs(["noether"])))
    (folder / "skipped.bin").write_bytes(b"\x00")
    assert run_torua("rag", "create", "--nats-url", url, "rag-cli", "--chunk-tokens", "40", "--overlap-tokens", "8").returncode == 0
    out = run_torua("rag", "ingest", "--nats-url", url, "rag-cli", str(folder), "--progress", "lines")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["documents"], summary["done"], summary["failed"]) == (4, 4, 0)
    assert b"4/4 documents: 4 done, 0 failed" in out.stderr
    answer = run_torua("rag", "query", "--nats-url", url, "rag-cli", "Where did Emmy Noether work?", "--mode", "local", "-k", "1")
    assert answer.returncode == 0 and json.loads(answer.stdout)["chunks"][0]["document_id"] == "noether", answer.stdout
    info = json.loads(run_torua("rag", "info", "--nats-url", url, "rag-cli").stdout)
    assert info["settings"]["chunk_tokens"] == 40 and info["communities"] is None
    built = run_torua("rag", "communities", "--nats-url", url, "rag-cli")
    assert built.returncode == 0 and json.loads(built.stdout)["communities"] >= 1, built.stderr
    assert run_torua("rag", "rm", "--nats-url", url, "rag-cli", "people/turing.txt").returncode == 0
    missing = run_torua("rag", "ingest", "--nats-url", url, "rag-cli", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and b"no such file or directory" in missing.stderr
    unknown = run_torua("rag", "query", "--nats-url", url, "rag-nowhere", "x")
    assert unknown.returncode == 1 and b"not_found" in unknown.stderr


def test_a_worker_reports_what_it_did_and_the_queue_on_metrics(rag_cluster):
    import re
    import urllib.request

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{rag_cluster.worker_metrics}/metrics", timeout=5) as resp:
            return resp.read().decode()

    text = wait_until(lambda: t if "torua_worker_queue_pending" in (t := scrape()) else None, 20, "the queue depth on /metrics")
    done = float(re.search(r'^torua_worker_documents_total\{outcome="done"\} (\S+)$', text, re.M).group(1))
    assert done >= 1  # the earlier tests' documents, some of them taken by this worker
    assert re.search(r'^torua_worker_chunks_total\{kind="new"\} [1-9]', text, re.M)
    assert re.search(r'^torua_worker_document_seconds_count [1-9]', text, re.M)
    assert 'torua_build_info{role="worker"' in text


def test_torua_rag_eval_ingests_the_frozen_set_and_scores_each_mode(rag_cluster):
    from tests.integration.test_client import run_torua

    out = subprocess.run(
        torua_command() + ["rag", "eval", "--nats-url", rag_cluster.nats_url, "--timeout", "30", "rag-eval", "--ingest", "--half", "dev", "--limit", "4", "--documents", "30", "--json"],
        capture_output=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["questions"] == 4 and 30 < report["documents"] <= 38 and set(report["results"]) == {"vector", "bm25", "fusion", "local", "global", "hybrid"}
    for mode, scores in report["results"].items():
        assert set(scores) == {"both@5", "both@10", "recall@10", "rr", "p50_ms"} and all(0 <= scores[m] <= 1 for m in ("both@5", "both@10", "recall@10", "rr")), mode
    assert report["results"]["hybrid"]["recall@10"] > 0  # the set's documents were ingested and are found
    bad = run_torua("rag", "eval", "--nats-url", rag_cluster.nats_url, "rag-eval", "--modes", "vector,magic")
    assert bad.returncode == 1 and b"unknown eval mode" in bad.stderr
    alone = run_torua("rag", "eval", "--nats-url", rag_cluster.nats_url, "rag-eval", "--documents", "5")
    assert alone.returncode == 1 and b"--documents picks what --ingest sends" in alone.stderr


async def test_a_version_this_worker_writes_already_is_not_taken_again_by_it(rag_cluster):
    """A message delivered again while the worker still writes its first delivery: the
    claim says `wait` (taken twice, the first release left the second's writes without a
    fence: fenced, counted failed, on CI), and once the first is written, `superseded`.
    Real JetStream claims."""
    from torua.rag.claim_store import ClaimStore

    async with Client(rag_cluster.nats_url) as db:
        js = db._nc.jetstream()
        mine, other = ClaimStore(js, stale_after=60, name="t1"), ClaimStore(js, stale_after=60, name="t2")
        assert await mine.claim("rag-twice", "doc", 7) == "take"
        assert await mine.claim("rag-twice", "doc", 7) == "wait"
        assert await other.claim("rag-twice", "doc", 7) == "wait"
        await mine.release("rag-twice", "doc", 7, written=True)
        assert await mine.claim("rag-twice", "doc", 7) == "superseded"
        assert await mine.claim("rag-twice", "doc", 8) == "take"
