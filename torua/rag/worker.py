"""`torua worker`: takes documents from the ingestion queue (`torua.rag.queue`),
runs the pipeline on them (`torua.rag.pipeline`) and writes them into their corpus
graph (`torua.rag.ingest`) (docs/design/graphrag.md section 4). Runs on any machine that reaches the NATS cluster; as many as wanted.

A worker ingests up to `documents` documents at once: their pipeline work
(embedding, parsing, resolving) runs in a thread, one document at a time (the
models and the resolver are the worker's, and the CPU is the budget), while
their writes to the cluster, which are mostly waiting, overlap. The event loop
keeps the NATS connection and the `in_progress` signals going meanwhile.
Each corpus's entity resolver lives as long as the worker: it learns the names it
has seen, so later documents merge with them (another worker's names it does not
know: two workers may make two near names two entities; the resolution doc says
when that matters).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from nats.errors import TimeoutError as NatsTimeout

from torua.client import Client
from torua.metrics import WorkerMetrics, metrics_server
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import RagJob, RagReply, RagRequest, SupportItem
from torua.protocol.vocabulary import RagTask
from torua.rag import community_build, queue, schema
from torua.rag.corpus import CorpusSettings
from torua.rag.engines import Engines
from torua.rag.ingest import CorpusWriter
from torua.rag.pipeline import plan_document
from torua.rag.resolution import Resolver
from torua.rag.service import RagService

log = logging.getLogger("torua.worker")

FOR_GOOD = frozenset({"bad_request", "not_found", "value_too_large", "conflict", "forbidden", "unauthorized"})
RETRY_DELAY_S = 2.0
QUEUE_READ_S = 5.0  # how often the queue's depth is read for /metrics
OPS = frozenset({"create", "get", "documents", "job", "delete_document", "query", "communities"})
API_SUBJECT = "torua.rag.api"  # RagRequest -> RagReply, from the gateways
API_QUEUE = "torua-rag"


class Worker:
    def __init__(
        self, client: Client, engines: Engines, ack_wait: float = queue.ACK_WAIT, metrics: WorkerMetrics | None = None, documents: int = 8,
        tries: int = queue.MAX_DELIVER,
    ) -> None:
        self.client = client
        self.ack_wait = ack_wait
        self.tries = tries  # the queue's consumer's, once taking (the first worker's value holds)
        self.at_once = documents
        self.planning = asyncio.Lock()  # one document's models' work at a time
        self.busy: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}  # (corpus, document id) -> its lock, its users
        self.metrics = metrics or WorkerMetrics()
        self.engines = engines
        self.resolvers: dict[str, Resolver] = {}
        self.done = 0
        self.failed = 0
        self.calls: set[asyncio.Future[Any]] = set()  # GraphRAG calls being answered (cancelled at a stop)

    async def serve_api(self) -> Any:
        """Answer the gateways' `RagRequest`s (one queue group: any worker answers one)."""
        nc = self.client._nc
        assert nc is not None
        service = RagService(self.client, self.engines)

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

    async def run(self, stop: asyncio.Event) -> None:
        nc = self.client._nc
        assert nc is not None
        js = nc.jetstream()
        pulled, allowed = await queue.pull(js, self.ack_wait, self.tries)
        self.tries = min(self.tries, allowed)
        watch = asyncio.ensure_future(self._watch_queue(pulled))
        log.info("worker ready: taking documents from %s", queue.STREAM)
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
        """Take messages while fewer than `at_once` are being ingested; at a stop (or a
        cancel) the ones in progress are cancelled: unacknowledged, they are redelivered."""
        running: set[asyncio.Future[None]] = set()
        try:
            while not stop.is_set():
                if len(running) >= self.at_once:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    messages = await pulled.fetch(self.at_once - len(running), timeout=1.0)
                except NatsTimeout:
                    continue
                except Exception as exc:  # NATS reconnecting, JetStream without a leader for a while: try again
                    log.warning("taking from %s failed (%s); trying again in %g s", queue.STREAM, exc or type(exc).__name__, RETRY_DELAY_S)
                    await asyncio.sleep(RETRY_DELAY_S)
                    continue
                for msg in messages:
                    task = asyncio.ensure_future(self.take(msg))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            if running:
                await asyncio.wait(running, timeout=5.0)

    async def take(self, msg: Any) -> None:
        """One message: its document written, then acknowledged; or let go (see queue)."""
        try:
            job = decode(RagJob, msg.data)
        except ToruaError as exc:
            log.warning("garbage on the ingestion queue (%s): dropped", exc.message)
            await msg.term()
            return
        beat = asyncio.ensure_future(self._still_working(msg))
        started = time.monotonic()
        try:
            await self.ingest(job)
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
            self.done += 1
            self.metrics.documents.labels("done").inc()
            self.metrics.seconds.observe(time.monotonic() - started)

    async def _fail(self, msg: Any, job: RagJob, error: str) -> None:
        """The document counts as failed in its job (with `error`) and leaves the queue."""
        log.warning("document %r of corpus %s (job %s) failed: %s", job.id, job.corpus, job.job, error)
        self.failed += 1
        self.metrics.documents.labels("failed").inc()
        with contextlib.suppress(ToruaError):
            await self._record(job, failed=error)
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

    async def ingest(self, job: RagJob) -> None:
        """Two versions of one document (sent twice in a row) are written in turn."""
        key = (job.corpus, job.id)
        lock, users = self.busy.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                await self._ingest(job)
        finally:
            users[0] -= 1
            if not users[0]:
                del self.busy[key]

    async def _ingest(self, job: RagJob) -> None:
        graph = self.client.graph(job.corpus)
        settings = await self._settings(graph, job.corpus)
        e = self.engines
        if job.task == RagTask.COMMUNITIES:
            await community_build.build(graph, e.embedder_for(settings), job.job, community_build.summariser(e.llm_for(settings), settings.llm_model))
            await self._record(job)
            return
        writer = CorpusWriter(graph)
        previous = await writer.previous_chunks(job.id)
        resolver = self.resolvers.setdefault(job.corpus, Resolver())
        embedder, extractor = e.embedder_for(settings), e.extractor_for(settings)
        async with self.planning:
            plan = await asyncio.to_thread(plan_document, job.id, job.text, settings.chunking(), embedder, extractor, resolver, previous)
            names = sorted(plan.entities)
            vectors = await asyncio.to_thread(embedder.embed, [plan.entities[n][1] for n in names])
        await writer.write(plan, job.metadata, dict(zip(names, vectors)), previous)
        await self._record(job)
        for kind, count in (("new", len(plan.new)), ("kept", len(plan.kept)), ("removed", len(plan.gone))):
            self.metrics.chunks.labels(kind).inc(count)

    async def _record(self, job: RagJob, failed: str = "") -> None:
        """The document counts as done (or failed) in its job's progress (a set: a
        redelivered document counts once)."""
        graph = self.client.graph(job.corpus)
        target = schema.job_vertex(job.job) + ("/failed" if failed else "")
        await graph.support([SupportItem(target, label=schema.JOB, properties={"first_error": failed[:500]} if failed else {},
                                         added={job.id: json.dumps({"failed" if failed else "done": 1})})])


def _deliveries(msg: Any) -> int:
    """How many times JetStream has delivered `msg` (this time included)."""
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message (never the queue's): no count to go by
        return 1


async def run_worker(config: Any, stop: Any) -> None:
    """The `torua worker` process: connect, load the engines, take documents until stopped."""
    from torua.bus import connect
    from torua.stopping import unless_stopped

    nc = await unless_stopped(connect(config.nats_url, f"torua-worker-{config.id}", config.connect_timeout, auth=config.nats_auth()), stop.event)
    try:
        client = await Client(config.nats_url, nc=nc, api_key=config.api_key()).connect()
        engines = await asyncio.to_thread(Engines, config.threads)
        worker = Worker(client, engines, config.ack_wait, documents=config.documents, tries=config.tries)
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
