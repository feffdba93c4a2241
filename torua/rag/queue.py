"""The ingestion queue: a JetStream work-queue stream of `RagJob`s, one document
per message, taken by `torua worker` processes through one durable pull consumer
(docs/design/graphrag.md section 4).

A worker acknowledges a message once its document is written `complete`; until
then it tells JetStream it is still working (`in_progress`) every third of
`ACK_WAIT`. A worker that dies never acknowledges: after `ACK_WAIT` the message goes
to another worker, which writes the same document again (every write is
idempotent). A document that fails for good (bad input, its corpus deleted) is
terminated, not redelivered; one that fails for a while (a node failing over) is
delivered again after a pause, at most `MAX_DELIVER` times in all (a worker's
`--tries`): on its last try a document that fails again counts as failed in its
job (with its error), so the job ends instead of waiting for ever. The consumer
delivers a message once more than that (`max_deliver` = tries + 1): a worker that
died during the last try never said so, and the extra delivery lets the next
worker count the document as failed without trying it again.
"""

from __future__ import annotations

from typing import Any

from nats.js import api
from nats.js.errors import BadRequestError

from torua.protocol.codec import encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import RagJob

STREAM = "TORUA_RAG"
SUBJECTS = "torua.rag.jobs"
CONSUMER = "torua-rag-workers"
ACK_WAIT = 60.0  # seconds a worker may go silent on a document before it goes to another
MAX_DELIVER = 20  # tries of one document (deliveries: a worker that died counts as one)
MAX_DOCUMENT_BYTES = 900 << 10  # a message under NATS's default 1 MiB payload, with room for the rest


def subject(corpus: str) -> str:
    return f"{SUBJECTS}.{corpus}"


def stream_config(replicas: int = 1) -> api.StreamConfig:
    return api.StreamConfig(
        name=STREAM, subjects=[f"{SUBJECTS}.>"], retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE,
        description="Torua GraphRAG ingestion: one document per message (torua worker)", num_replicas=replicas,
    )


def consumer_config(ack_wait: float = ACK_WAIT, tries: int = MAX_DELIVER) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=CONSUMER, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ack_wait, max_deliver=tries + 1,
        filter_subject=f"{SUBJECTS}.>", max_ack_pending=1000,
    )


async def ensure_stream(js: Any, replicas: int = 1) -> None:
    """The stream exists (made with `replicas` copies if not; one made by another
    process is used as it is: the coordinator makes it with the cluster's copies at
    its start, and raises the copies of one a worker or gateway made first)."""
    try:
        await js.add_stream(stream_config(replicas))
    except BadRequestError as exc:
        if getattr(exc, "err_code", None) != 10058:  # stream name already in use
            raise


async def publish(js: Any, job: RagJob) -> None:
    """Queue one document; `value_too_large` above `MAX_DOCUMENT_BYTES` of text."""
    if len(job.text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise ToruaError("value_too_large", f"document {job.id!r} is over {MAX_DOCUMENT_BYTES} bytes of text; split it")
    await js.publish(subject(job.corpus), encode(job), stream=STREAM)


async def pull(js: Any, ack_wait: float = ACK_WAIT, tries: int = MAX_DELIVER) -> tuple[Any, int]:
    """The workers' shared pull subscription (its consumer made with `ack_wait` and
    `tries` if it is not there yet), and the tries its consumer allows (the first
    worker's value holds: its `max_deliver` less the delivery kept for counting a
    document whose last try's worker died)."""
    await ensure_stream(js)
    pulled = await js.pull_subscribe(f"{SUBJECTS}.>", durable=CONSUMER, stream=STREAM, config=consumer_config(ack_wait, tries))
    try:
        allowed = (await pulled.consumer_info()).config.max_deliver
    except Exception:  # not answered now: this worker's own value (the consumer's is read again at its next start)
        allowed = tries
    return pulled, max(1, allowed - 1) if allowed and allowed > 0 else tries
