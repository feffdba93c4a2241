"""Documents' claims in the JetStream KV bucket `torua.rag.claims.CLAIMS_BUCKET`, read
and changed by compare-and-set on their revision (the decisions are
`torua.rag.claims`'; this module is their I/O). A store is one holder: the claims it
takes are renewed while their versions are written (`keeping`), which gives the
fence those writes carry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from torua.bus import open_bucket
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.rag import queue
from torua.rag.claims import CLAIM_TTL_S, CLAIMS_BUCKET, Decision, DocumentClaim, claim_key, decide, fence_deadline, released, renewed, taken

log = logging.getLogger("torua.worker")

TRIES = 20  # compare-and-set rounds before a change gives up (others changed the claim each time)
WAIT_FIRST_S, WAIT_MOST_S = 0.05, 1.0  # polling a claim held by an older version: from this, doubling up to that
RENEWALS = 6  # a claim held is renewed this many times per `stale_after` (three times per half: its fence)

Held = tuple[str, str, int]  # (corpus, document id, version): a claim this store took


async def open_claims(js: Any, replicas: int = 1) -> Any:
    """The claims bucket, made with `replicas` copies on first use."""
    return await open_bucket(js, CLAIMS_BUCKET, replicas, history=1, ttl=CLAIM_TTL_S, description="Torua GraphRAG: which version of each document is written")


class ClaimStore:
    def __init__(self, js: Any, stale_after: float = 2 * queue.ACK_WAIT, stream: str = queue.STREAM, name: str = "") -> None:
        self.js = js
        self.stale_after = stale_after
        self.stream = stream  # the queue whose sequences are the versions
        self.holder = f"{name}:{uuid.uuid4().hex[:12]}"  # this store, in the claims it takes (`name`: its worker's id, for people)
        self._kv: Any = None
        self._queue = ""  # that stream's creation time (a stream made again starts its sequences again), once read
        self._since: dict[Held, float] = {}  # the claims this store holds: when each was taken or last renewed (wall clock)

    async def _bucket(self) -> Any:
        if self._kv is None:
            self._kv = await open_claims(self.js)
        return self._kv

    async def _read(self, key: str) -> tuple[DocumentClaim | None, int]:
        kv = await self._bucket()
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None, 0
        if not entry.value:  # deleted or purged
            return None, int(entry.revision or 0)
        try:
            return decode(DocumentClaim, entry.value), int(entry.revision)
        except ToruaError as exc:
            log.warning("the claim %s cannot be read (%s): taken as none", key, exc.message)
            return None, int(entry.revision)

    async def _write(self, key: str, claim: DocumentClaim, revision: int) -> bool:
        """False when the claim changed since `revision` was read."""
        kv = await self._bucket()
        try:
            if revision:
                await kv.update(key, encode(claim), last=revision)
            else:
                await kv.create(key, encode(claim))
        except KeyWrongLastSequenceError:
            return False
        return True

    async def _queue_id(self, again: bool = False) -> str:
        if not self._queue or again:
            try:
                info = await self.js.stream_info(self.stream)
            except NotFoundError:
                return ""
            self._queue = str(info.created or "")
        return self._queue

    async def claim(self, corpus: str, document_id: str, version: int) -> Decision:
        """`decide` on the claim as it is; `take` having taken it. A version found
        superseded is decided again once the queue's identity is read again: the stream
        may have been made again since it was read (its sequences start again)."""
        key = claim_key(corpus, document_id)
        in_hand = (corpus, document_id, version) in self._since
        rechecked = False
        try:
            for _ in range(TRIES):
                queue_id = await self._queue_id()
                held, revision = await self._read(key)
                decision = decide(held, version, time.time(), self.stale_after, queue_id, self.holder, in_hand)
                if decision == "superseded" and not rechecked:
                    rechecked = True
                    if await self._queue_id(again=True) != queue_id:
                        continue
                if decision != "take":
                    return decision
                now = time.time()
                if await self._write(key, taken(held, version, now, queue_id, self.holder, self.stale_after), revision):
                    self._since[(corpus, document_id, version)] = now
                    return "take"
        except NatsError as exc:
            raise ToruaError("unavailable", f"the claims of documents cannot be read or written now ({exc or type(exc).__name__})") from None
        raise ToruaError("unavailable", f"the claim of document {document_id!r} kept changing; try again")

    async def claim_waiting(self, corpus: str, document_id: str, version: int, deadline: float) -> Decision:
        """`claim`, waiting while an older version is written (at most until `deadline`,
        monotonic: then `wait`)."""
        pause = WAIT_FIRST_S
        while True:
            decision = await self.claim(corpus, document_id, version)
            if decision != "wait" or time.monotonic() + pause > deadline:
                return decision
            await asyncio.sleep(pause)
            pause = min(WAIT_MOST_S, 2 * pause)

    async def release(self, corpus: str, document_id: str, version: int, written: bool) -> None:
        """Let the claim go (`done` moved on to `version` when `written`); nothing when
        another version holds it now. A failure is logged: the claim is then taken over
        once it is `stale_after` old."""
        key = claim_key(corpus, document_id)
        self._since.pop((corpus, document_id, version), None)
        try:
            for _ in range(TRIES):
                held, revision = await self._read(key)
                after = released(held, version, written, self.holder) if held is not None else None
                if after is None or await self._write(key, after, revision):
                    return
        except NatsError as exc:
            log.warning("the claim of document %r of corpus %s could not be let go (%s); it goes stale", document_id, corpus, exc or type(exc).__name__)
            return
        log.warning("the claim of document %r of corpus %s kept changing; it goes stale", document_id, corpus)

    async def renew(self, corpus: str, document_id: str, version: int) -> bool:
        """Hold the claim from now on (its fence moves on); False when it is not this
        store's any more (taken over, or let go) or cannot be written now (its fence
        then stays where it was: the writes stop once it passes)."""
        key = claim_key(corpus, document_id)
        if (corpus, document_id, version) not in self._since:
            return False
        try:
            held, revision = await self._read(key)
            now = time.time()
            after = renewed(held, version, self.holder, now) if held is not None else None
            if after is None or not await self._write(key, after, revision):
                return False
        except NatsError as exc:
            log.info("the claim of document %r of corpus %s could not be renewed (%s)", document_id, corpus, exc or type(exc).__name__)
            return False
        if (corpus, document_id, version) in self._since:  # not let go meanwhile
            self._since[(corpus, document_id, version)] = now
        return True

    def not_after(self, held: Sequence[Held]) -> float:
        """The fence of writes of these claims (wall clock): the earliest of their
        `fence_deadline`s; long past for a claim this store does not hold."""
        return min(fence_deadline(self._since.get(h, 0.0), self.stale_after) for h in held)

    @contextlib.asynccontextmanager
    async def keeping(self, held: Sequence[Held]) -> AsyncIterator[Callable[[], float]]:
        """While inside, the claims `held` (taken by this store) are renewed every
        `stale_after / RENEWALS`; yields their fence (`not_after`), for the writes."""
        held = list(held)

        async def renewing() -> None:
            while True:
                await asyncio.sleep(self.stale_after / RENEWALS)
                await asyncio.gather(*(self.renew(*h) for h in held))

        task = asyncio.ensure_future(renewing())
        try:
            yield lambda: self.not_after(held)
        finally:
            task.cancel()

    async def last_version(self) -> int:
        """The newest version on the queue (its stream's last sequence): a delete comes after it."""
        try:
            info = await self.js.stream_info(self.stream)
        except NotFoundError:
            return 0  # nothing was ever queued
        except NatsError as exc:
            raise ToruaError("unavailable", f"the ingestion queue cannot be read now ({exc or type(exc).__name__})") from None
        self._queue = str(info.created or "")
        return int(info.state.last_seq or 0)
