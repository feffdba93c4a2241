"""`torua worker`: takes documents from the ingestion queue (`torua.rag.queue`),
runs the pipeline on them (`torua.rag.pipeline`) and writes them into their corpus
graph (`torua.rag.ingest`) (docs/design/graphrag.md section 4). Runs on any machine that reaches the NATS cluster; as many as wanted.

A worker ingests up to `documents` documents at once, in batches of up to half
of them (at most `BATCH`) taken from the queue together: a batch's pipeline work
(embedding, parsing, resolving) runs in a thread, one document at a time (the
models and the resolver are the worker's, and the CPU is the budget), then its
documents are written together (`CorpusWriter.write`: one request per shard and
step for the batch), while the next batch is planned. A batch that fails is
taken again one document at a time, so one bad document fails alone. The event loop
keeps the NATS connection and the `in_progress` signals going meanwhile.
Each corpus's entity resolver lives as long as the worker: it first learns the
corpus's entities (their names, read from the graph), then the names it meets and
the entities other workers make (`torua.rag.names.<corpus>`, `EntityNames`), so
a near name merges with an entity whoever made it (two workers meeting two near
new names at the same moment may still make two entities).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from nats.errors import TimeoutError as NatsTimeout

from torua.client import Client
from torua.metrics import WorkerMetrics, metrics_server
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EntityNames, RagJob, RagReply, RagRequest, SupportItem
from torua.protocol.vocabulary import RagTask
from torua.rag import community_build, queue, schema
from torua.rag.claim_store import ClaimStore
from torua.rag.claims import Decision, message_version
from torua.rag.corpus import CorpusSettings
from torua.rag.engines import Engines
from torua.rag.ingest import CorpusWriter, Planned
from torua.rag.pipeline import plan_document
from torua.rag.resolution import Resolver
from torua.rag.service import RagService

log = logging.getLogger("torua.worker")

FOR_GOOD = frozenset({"bad_request", "not_found", "value_too_large", "conflict", "forbidden", "unauthorized"})
RETRY_DELAY_S = 2.0
BATCH = 32  # documents of one corpus planned, then written together, at most
IN_FLIGHT = 2  # batches at once: one planned while the other is written
QUEUE_READ_S = 5.0  # how often the queue's depth is read for /metrics
OPS = frozenset({"create", "get", "documents", "job", "delete_document", "query", "communities"})
API_SUBJECT = "torua.rag.api"  # RagRequest -> RagReply, from the gateways
API_QUEUE = "torua-rag"
NAMES_SUBJECT = "torua.rag.names"  # .<corpus>: EntityNames, from every worker to every worker
SEED_TIMEOUT_S = 60.0  # reading a corpus's entity names for a resolver, at most
SEED_RETRY_S = 30.0  # a read that failed is tried again this long after, at the next document


class Worker:
    def __init__(
        self, client: Client, engines: Engines, ack_wait: float = queue.ACK_WAIT, metrics: WorkerMetrics | None = None, documents: int = 32,
        tries: int = queue.MAX_DELIVER, stream: str = queue.STREAM, name: str = "",
    ) -> None:
        self.client = client
        self.ack_wait = ack_wait
        self.tries = tries  # the queue's consumer's, once taking (the first worker's value holds)
        self.in_flight = min(IN_FLIGHT, documents)
        self.batch = max(1, min(BATCH, documents // self.in_flight))
        self.planning = asyncio.Lock()  # one document's models' work at a time
        self.busy: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}  # (corpus, document id) -> its lock, its users
        self.metrics = metrics or WorkerMetrics()
        self.engines = engines
        self.resolvers: dict[str, Resolver] = {}
        self.heard: dict[str, list[tuple[str, str]]] = {}  # corpus -> entities to learn (read from its graph, told by other workers)
        self.seeded: set[str] = set()  # corpora whose entities the resolver has read
        self.seed_after: dict[str, float] = {}  # corpus -> when its entities may be read again (a read failed)
        self.done = 0
        self.failed = 0
        self.calls: set[asyncio.Future[Any]] = set()  # GraphRAG calls being answered (cancelled at a stop)
        nc = client._nc
        # which version of a document may be written (torua.rag.claims); None without JetStream
        self.claims: ClaimStore | None = ClaimStore(nc.jetstream(), stale_after=2 * ack_wait, stream=stream, name=name) if nc is not None else None

    async def serve_api(self) -> Any:
        """Answer the gateways' `RagRequest`s (one queue group: any worker answers one)."""
        nc = self.client._nc
        assert nc is not None
        service = RagService(self.client, self.engines, self.claims)

        async def on_request(msg: Any) -> None:
            try:
                request = decode(RagRequest, msg.data)
            except ToruaError as exc:
                await msg.respond(encode(RagReply(False, exc.code, exc.message)))
                return
            try:
                reply = RagReply(True, result=await service.answer(request))
            except ToruaError as exc:
                reply = RagReply(False, exc.code, exc.message)
            except Exception as exc:
                log.exception("GraphRAG %s on corpus %s failed", request.op, request.corpus)
                reply = RagReply(False, "internal", str(exc))
            op = request.op if request.op in OPS else "other"
            self.metrics.queries.labels(op, "ok" if reply.ok else reply.error_code or "internal").inc()
            await msg.respond(encode(reply))

        async def on_message(msg: Any) -> None:
            task = asyncio.ensure_future(on_request(msg))  # a query does not hold up the next
            self.calls.add(task)
            task.add_done_callback(self.calls.discard)

        return await nc.subscribe(API_SUBJECT, queue=API_QUEUE, cb=on_message)

    async def listen_names(self) -> Any:
        """Learn the entities other workers make (`EntityNames`), for the corpora this
        worker has a resolver of (the others read them from the graph when they first
        need them)."""
        nc = self.client._nc
        assert nc is not None

        async def on_names(msg: Any) -> None:
            try:
                told = decode(EntityNames, msg.data)
            except ToruaError as exc:
                log.warning("garbage on %s (%s): dropped", msg.subject, exc.message)
                return
            resolver = self.resolvers.get(told.corpus)
            if resolver is None:
                return
            self.heard.setdefault(told.corpus, []).extend(told.entities)
            if not self.planning.locked():  # else a plan may be using it: learnt before the next one
                self._learn(told.corpus, resolver)

        return await nc.subscribe(f"{NAMES_SUBJECT}.>", cb=on_names)

    async def _resolver(self, corpus: str, graph: Any) -> Resolver:
        """The corpus's resolver; the first time (and again after a failed read), the
        corpus's entities are read for it to learn (before the next document is planned)."""
        resolver = self.resolvers.setdefault(corpus, Resolver())
        if corpus not in self.seeded and time.monotonic() >= self.seed_after.get(corpus, 0.0):
            try:
                names = await asyncio.wait_for(community_build.scan_names(graph), SEED_TIMEOUT_S)
            except Exception as exc:  # the corpus's indexes catching up, a node failing over: the resolver goes on with what it knows
                log.warning("the entities of corpus %s could not be read for its resolver (%s); trying again in %g s", corpus, exc or type(exc).__name__, SEED_RETRY_S)
                self.seed_after[corpus] = time.monotonic() + SEED_RETRY_S
            else:
                self.heard.setdefault(corpus, []).extend(names)
                self.seeded.add(corpus)
        return resolver

    def _learn(self, corpus: str, resolver: Resolver) -> None:
        """What the resolver has been told, learnt (never while a plan uses it)."""
        for entity_id, name in self.heard.pop(corpus, []):
            resolver.learn(entity_id, name)

    async def _tell(self, corpus: str, resolver: Resolver) -> None:
        """The entities the resolver made, to the other workers (best effort)."""
        fresh, resolver.fresh = resolver.fresh, []
        nc = self.client._nc
        if not fresh or nc is None:
            return
        for start in range(0, len(fresh), 1000):
            with contextlib.suppress(Exception):
                await nc.publish(f"{NAMES_SUBJECT}.{corpus}", encode(EntityNames(corpus, [(e.id, e.name) for e in fresh[start : start + 1000]])))

    async def run(self, stop: asyncio.Event) -> None:
        nc = self.client._nc
        assert nc is not None
        await self.listen_names()
        js = nc.jetstream()
        pulled, allowed = await queue.pull(js, self.ack_wait, self.tries)
        self.tries = min(self.tries, allowed)
        watch = asyncio.ensure_future(self._watch_queue(pulled))
        log.info("worker ready: taking documents from %s (requests to the cluster time out after %g s)", queue.STREAM, self.client.timeout)
        try:
            await self._take_until(stop, pulled)
        finally:
            watch.cancel()

    async def _watch_queue(self, pulled: Any) -> None:
        """The queue's depth into the metrics, every `QUEUE_READ_S` (the consumer's info)."""
        while True:
            with contextlib.suppress(Exception):
                info = await pulled.consumer_info()
                self.metrics.pending.set(info.num_pending or 0)
                self.metrics.in_progress.set(info.num_ack_pending or 0)
            await asyncio.sleep(QUEUE_READ_S)

    async def _take_until(self, stop: asyncio.Event, pulled: Any) -> None:
        """Take up to `batch` messages at a time (`take_many`), while fewer than
        `in_flight` batches are being ingested: a busy queue then fills each batch
        (what came while the others were planned and written), and a quiet one is
        taken a message at a time. At a stop (or a cancel) the ones in progress are
        cancelled: unacknowledged, they are redelivered."""
        running: set[asyncio.Future[None]] = set()
        try:
            while not stop.is_set():
                if len(running) >= self.in_flight:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    messages = await pulled.fetch(self.batch, timeout=1.0)
                except NatsTimeout:
                    continue
                except Exception as exc:  # NATS reconnecting, JetStream without a leader for a while: try again
                    log.warning("taking from %s failed (%s); trying again in %g s", queue.STREAM, exc or type(exc).__name__, RETRY_DELAY_S)
                    await asyncio.sleep(RETRY_DELAY_S)
                    continue
                if messages:
                    task = asyncio.ensure_future(self.take_many(messages))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            if running:
                await asyncio.wait(running, timeout=5.0)

    async def take_many(self, messages: list[Any]) -> None:
        """Messages fetched together: the documents among them written as batches
        (`together`), one corpus each, in the order they came; other tasks on their own."""
        jobs: list[tuple[Any, RagJob]] = []
        for msg in messages:
            try:
                jobs.append((msg, decode(RagJob, msg.data)))
            except ToruaError as exc:
                log.warning("garbage on the ingestion queue (%s): dropped", exc.message)
                await msg.term()
        for msg, job in jobs:
            if _deliveries(msg) > self.tries:  # the delivery kept for this: its last try's worker died before it said how it went
                await self._fail(msg, job, f"gave up after {self.tries} tries (the worker of the last one stopped before it finished)")
        jobs = [(msg, job) for msg, job in jobs if _deliveries(msg) <= self.tries]
        others = [(msg, job) for msg, job in jobs if job.task != RagTask.DOCUMENT]
        batches = together([(msg, job) for msg, job in jobs if job.task == RagTask.DOCUMENT], self.batch)
        await asyncio.gather(*(self.take(msg, job) for msg, job in others), self._take_batches(batches))

    async def _take_batches(self, batches: list[list[tuple[Any, RagJob]]]) -> None:
        for batch in batches:
            await self._take_batch(batch)

    async def _take_batch(self, batch: list[tuple[Any, RagJob]]) -> None:
        """Documents of one corpus written together, then acknowledged. Each document's
        claim is taken first (torua.rag.claims): one superseded by a newer version is
        not written, one an older version is being written of waits, on its own,
        afterwards. A document whose planning fails is left out and taken on its own
        afterwards; when the writes fail, each document is taken on its own (its error
        is then its own)."""
        if len(batch) == 1:
            await self.take(*batch[0])
            return
        beats = [asyncio.ensure_future(self._still_working(msg)) for msg, _ in batch]
        started = time.monotonic()
        claimed: list[tuple[Any, RagJob]] = []
        later: list[tuple[Any, RagJob]] = []
        left: list[RagJob] | None = []
        try:
            try:
                decisions = await asyncio.gather(*(self._claim(msg, job) for msg, job in batch))
            except ToruaError as exc:
                log.info("the claims of %d documents of corpus %s could not be taken (%s); taking each on its own", len(batch), batch[0][1].corpus, exc.message)
                decisions = ["wait"] * len(batch)
            for (msg, job), decision in zip(batch, decisions):
                if decision == "superseded":
                    await self._superseded(msg, job, started)
                else:
                    (claimed if decision == "take" else later).append((msg, job))
            if claimed:
                try:
                    async with self._kept(claimed) as fence, self._holding([(job.corpus, job.id) for _, job in claimed]):  # renewed while it waits its turn too
                        left = await self._ingest_documents([job for _, job in claimed], fence)
                except Exception as exc:
                    log.info("%d documents of corpus %s written together failed (%s); writing each on its own", len(claimed), batch[0][1].corpus, exc)
                    left = None
                await asyncio.gather(*(self._release(msg, job, written=left is not None and job not in left) for msg, job in claimed))
        finally:
            for beat in beats:
                beat.cancel()
        alone = claimed if left is None else [(msg, job) for msg, job in claimed if job in left]
        for msg, job in claimed:
            if (msg, job) not in alone:
                await msg.ack_sync()
                self._done(started)
        await asyncio.gather(*(self.take(msg, job) for msg, job in alone + later))

    def _done(self, started: float) -> None:
        self.done += 1
        self.metrics.documents.labels("done").inc()
        self.metrics.seconds.observe(time.monotonic() - started)

    async def take(self, msg: Any, job: RagJob) -> None:
        """One message: its document written (or its task done), then acknowledged; or
        let go (see queue). A document's claim is taken first, waiting while an older
        version is written (torua.rag.claims)."""
        beat = asyncio.ensure_future(self._still_working(msg))
        started = time.monotonic()
        try:
            if job.task == RagTask.DOCUMENT:
                decision = await self._claim(msg, job, wait_s=self._claim_wait_s())
                if decision == "superseded":
                    await self._superseded(msg, job, started)
                    return
                if decision == "wait":
                    raise ToruaError("unavailable", "an older version of the document is still being written")
            written = False
            try:
                async with self._kept([(msg, job)] if job.task == RagTask.DOCUMENT else []) as fence:
                    await self.ingest(job, fence)
                written = True
            finally:
                if job.task == RagTask.DOCUMENT:
                    await self._release(msg, job, written)
        except ToruaError as exc:
            if exc.code in FOR_GOOD:
                await self._fail(msg, job, exc.message)
            else:
                await self._again(msg, job, f"{exc.code}: {exc.message}")
            return
        except Exception as exc:
            log.exception("document %r of corpus %s (job %s) failed", job.id, job.corpus, job.job)
            await self._again(msg, job, f"{type(exc).__name__}: {exc}")
            return
        finally:
            beat.cancel()
        await msg.ack_sync()
        if job.task == RagTask.DOCUMENT:
            self._done(started)

    def _claim_wait_s(self) -> float:
        return (self.claims.stale_after if self.claims is not None else 0.0) + self.ack_wait

    async def _claim(self, msg: Any, job: RagJob, wait_s: float | None = None) -> Decision:
        """Take the claim of the message's version of its document (with `wait_s`, waiting
        that long at most while an older version is written)."""
        version = _version(msg, self.claims)
        if not version or self.claims is None:
            return "take"  # not a message of the queue: no order to keep
        if wait_s is None:
            return await self.claims.claim(job.corpus, job.id, version)
        return await self.claims.claim_waiting(job.corpus, job.id, version, time.monotonic() + wait_s)

    @contextlib.asynccontextmanager
    async def _kept(self, claimed: list[tuple[Any, RagJob]]) -> AsyncIterator[Callable[[], float] | None]:
        """The claims of these documents renewed while inside; yields the fence of their
        writes (torua.rag.claims; None: no claims, nothing to fence)."""
        held = [(job.corpus, job.id, version) for msg, job in claimed if (version := _version(msg, self.claims))]
        if not held or self.claims is None:
            yield None
            return
        async with self.claims.keeping(held) as fence:
            yield fence

    async def _release(self, msg: Any, job: RagJob, written: bool) -> None:
        version = _version(msg, self.claims)
        if version and self.claims is not None:
            await self.claims.release(job.corpus, job.id, version, written)

    async def _superseded(self, msg: Any, job: RagJob, started: float) -> None:
        """Not written (a newer version is, or will be; or the document was deleted after
        this one was sent): done in its job all the same."""
        log.info("document %r of corpus %s (job %s): a newer version of it is written, or it was deleted after this one was sent: this one is not written",
                 job.id, job.corpus, job.job)
        await self._record([job])
        await msg.ack_sync()
        self.done += 1
        self.metrics.documents.labels("superseded").inc()
        self.metrics.seconds.observe(time.monotonic() - started)

    async def _fail(self, msg: Any, job: RagJob, error: str) -> None:
        """The document counts as failed in its job (with `error`) and leaves the queue."""
        log.warning("document %r of corpus %s (job %s) failed: %s", job.id, job.corpus, job.job, error)
        self.failed += 1
        self.metrics.documents.labels("failed").inc()
        with contextlib.suppress(ToruaError):
            await self._record([job], failed=error)
        await msg.term()

    async def _again(self, msg: Any, job: RagJob, error: str) -> None:
        """Delivered again after a pause; on its last try the document fails (its job ends)."""
        tried = _deliveries(msg)
        if tried >= self.tries:
            await self._fail(msg, job, f"{error} (gave up after {tried} tries)")
            return
        log.info("document %r of corpus %s: %s; it is delivered again (try %d of %d)", job.id, job.corpus, error, tried, self.tries)
        await msg.nak(delay=RETRY_DELAY_S)

    async def _still_working(self, msg: Any) -> None:
        while True:
            await asyncio.sleep(self.ack_wait / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _settings(self, graph: Any, corpus: str) -> CorpusSettings:
        """Read for each document: a corpus deleted and made again with other settings is
        ingested with its new ones."""
        vertex = await graph.get_vertex(schema.CORPUS_VERTEX)
        if vertex is None:
            raise ToruaError("not_found", f"graph {corpus!r} is not a corpus (it has no corpus vertex)")
        return CorpusSettings.of(vertex["properties"])

    @contextlib.asynccontextmanager
    async def _holding(self, keys: list[tuple[str, str]]) -> AsyncIterator[None]:
        """Hold the locks of these (corpus, document id)s, taken in order: two versions of
        one document (sent twice in a row) are written in turn."""
        held = [(key, *self.busy.setdefault(key, (asyncio.Lock(), [0]))) for key in sorted(set(keys))]
        for _, _, users in held:
            users[0] += 1
        try:
            async with contextlib.AsyncExitStack() as stack:
                for _, lock, _ in held:
                    await stack.enter_async_context(lock)
                yield
        finally:
            for key, _, users in held:
                users[0] -= 1
                if not users[0]:
                    del self.busy[key]

    async def ingest(self, job: RagJob, fence: Callable[[], float] | None = None) -> None:
        """One job (its document, with its writes fenced by `fence`, or its task)."""
        async with self._holding([(job.corpus, job.id)]):
            if job.task == RagTask.COMMUNITIES:
                graph = self.client.graph(job.corpus)
                settings = await self._settings(graph, job.corpus)
                summarise = community_build.summariser(self.engines.llm_for(settings), settings.llm_model)
                await community_build.build(graph, self.engines.embedder_for(settings), job.job, summarise)
                await self._record([job])
            else:
                await self._ingest_documents([job], fence)

    async def _ingest_documents(self, jobs: list[RagJob], fence: Callable[[], float] | None = None) -> list[RagJob]:
        """Documents of one corpus, each named once: planned one after another (the
        models are the worker's), then written together (`CorpusWriter.write`, each
        write carrying `fence`: the nodes refuse it once the claims may have gone to
        another worker). Of several, those whose planning fails are left out and
        returned (one alone raises its error)."""
        corpus = jobs[0].corpus
        graph = self.client.graph(corpus)
        settings = await self._settings(graph, corpus)
        writer = CorpusWriter(graph if fence is None else graph.fenced(fence))
        previous = await writer.previous_of([job.id for job in jobs])
        resolver = await self._resolver(corpus, graph)
        embedder, extractor = self.engines.embedder_for(settings), self.engines.extractor_for(settings)
        planned: list[Planned] = []
        written: list[RagJob] = []
        left: list[RagJob] = []
        for job, held in zip(jobs, previous):
            try:
                async with self.planning:
                    self._learn(corpus, resolver)
                    try:
                        plan = await asyncio.to_thread(plan_document, job.id, job.text, settings.chunking(), embedder, extractor, resolver,
                                                     held.chunks if held is not None and held.complete else ())  # an unfinished one is written as new
                    finally:
                        await self._tell(corpus, resolver)
                    names = sorted(plan.entities)
                    vectors = await asyncio.to_thread(embedder.embed, [plan.entities[n][1] for n in names])
            except Exception as exc:
                if len(jobs) == 1:
                    raise
                log.info("document %r of corpus %s: %s; taken on its own", job.id, corpus, exc)
                left.append(job)
                continue
            planned.append(Planned(plan, job.metadata, dict(zip(names, vectors)), held))
            written.append(job)
        if planned:
            await writer.write(planned)
            await self._record(written)
        for p in planned:
            for kind, count in (("new", len(p.plan.new)), ("kept", len(p.plan.kept)), ("removed", len(p.plan.gone))):
                self.metrics.chunks.labels(kind).inc(count)
        return left

    async def _record(self, jobs: list[RagJob], failed: str = "") -> None:
        """The documents count as done (or failed) in their jobs' progress (a set: a
        redelivered document counts once)."""
        graph = self.client.graph(jobs[0].corpus)
        items: dict[str, SupportItem] = {}
        for job in jobs:
            target = schema.job_vertex(job.job) + ("/failed" if failed else "")
            item = items.setdefault(target, SupportItem(target, label=schema.JOB, properties={"first_error": failed[:500]} if failed else {}))
            item.added[job.id] = json.dumps({"failed" if failed else "done": 1})
        await graph.support(list(items.values()))


def together(jobs: list[tuple[Any, RagJob]], most: int) -> list[list[tuple[Any, RagJob]]]:
    """Documents to write as batches, in order: one corpus each, at most `most`, each
    (corpus, document id) once (a second version of a document goes in a later batch,
    so the two are written in turn).

    >>> j = lambda c, d: (d, RagJob("j", c, d, ""))
    >>> [[m for m, _ in b] for b in together([j("a", "1"), j("b", "2"), j("a", "3"), j("a", "1"), j("a", "4")], 2)]
    [['1', '3'], ['2'], ['1', '4']]
    """
    batches: list[list[tuple[Any, RagJob]]] = []
    current: dict[str, list[tuple[Any, RagJob]]] = {}
    for msg, job in jobs:
        batch = current.get(job.corpus)
        if batch is None or len(batch) >= most or any(other.id == job.id for _, other in batch):
            batch = current[job.corpus] = []
            batches.append(batch)
        batch.append((msg, job))
    return batches


def _version(msg: Any, claims: ClaimStore | None) -> int:
    """The message's version of its document (torua.rag.claims.message_version of its
    stream sequence); 0 for a message that is not the queue's."""
    try:
        if claims is None or msg.metadata.stream != claims.stream:
            return 0
        return message_version(int(msg.metadata.sequence.stream))
    except Exception:
        return 0


def _deliveries(msg: Any) -> int:
    """How many times JetStream has delivered `msg` (this time included)."""
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message (never the queue's): no count to go by
        return 1


async def run_worker(config: Any, stop: Any) -> None:
    """The `torua worker` process: connect, load the engines, take documents until stopped."""
    from torua.arrow_only import keep_pandas_out
    from torua.bus import connect
    from torua.stopping import unless_stopped

    keep_pandas_out()  # community runs hand Kuzu Arrow tables
    nc = await unless_stopped(connect(config.nats_url, f"torua-worker-{config.id}", config.connect_timeout, auth=config.nats_auth()), stop.event)
    try:
        client = await Client(config.nats_url, timeout=config.request_timeout, nc=nc, api_key=config.api_key()).connect()
        engines = await asyncio.to_thread(Engines, config.threads)
        worker = Worker(client, engines, config.ack_wait, documents=config.documents, tries=config.tries, name=config.id)
        async with metrics_server(worker.metrics.registry, config.metrics_host, config.metrics_port):
            await worker.serve_api()
            task = asyncio.ensure_future(worker.run(stop.event))
            await stop.wait()
            task.cancel()
            for call in list(worker.calls):
                call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info("worker %s stopped: %d documents done, %d failed", config.id, worker.done, worker.failed)
        await client.close()
    finally:
        if not nc.is_closed:
            await nc.close()
