"""Which version of a document a worker may write, and when: the order the queue
gave them (docs/design/graphrag.md section 4, "Versions of one document").

A version of document d is a message of the ingestion queue; its `version` is twice
the message's sequence in the `TORUA_RAG` stream (`message_version`), which grows in
the order the gateways published them. Two workers may hold two versions of d at once (sent twice
in a row), and a version whose worker died comes back after a newer one was
written; written as they came, the older could end up the one d holds.

Each document has a `DocumentClaim` in the JetStream KV bucket `CLAIMS_BUCKET`
(compare-and-set on its revision): the version being written (`held`, 0: none, and
since when), and the newest version written or deleted (`done`). Before writing a
version a worker asks `decide`:

- `superseded`: a version at least as new is written (or d was deleted after this
  one was sent), or a newer one is being written (its message stays on the queue
  until it is, so it will be): this one is not written, and counts as done in its
  job (what it asked for is there, or will be, in a newer form);
- `take`: no version is being written, or this one is by this worker (a redelivery
  of it), or an older one's writer (or another writer of this one) has not renewed
  the claim for longer than `stale_after` (its worker died or stopped): the worker
  claims d (`taken`) and writes it, then lets it go (`released`, `done` moved on
  once written);
- `wait`: an older version is being written, or this one by another worker: this
  one waits until it ends or goes stale (the worker holds no claim meanwhile, so
  two workers never wait for each other).

A delete (`DELETE /rag/{g}/documents/{id}`) takes d's claim with a version between
the queue's last sequence and the next (`delete_version`): every version sent
before it is then superseded, every one sent after it is written after it.

A claim names its holder (one per `ClaimStore`, i.e. per worker process) and the
holder's `stale_after`, so a redelivery of the version another worker holds (its
worker paused or cut off, not only dead) waits until the claim is stale like an
older version's, by the holder's measure. The holder renews it (`renewed`) every
sixth of `stale_after` while it writes, and every write it sends carries a fence
(`fence_deadline`: the last renewal plus half of `stale_after`), after which the
nodes refuse it (`fenced`). A worker paused past its claim therefore wakes up to
writes that are refused: they could only land before the claim went stale, i.e.
before any other version was taken, as long as the nodes' clocks are within half
of `stale_after` of the workers' (docs/design/graphrag.md section 4).

>>> c = DocumentClaim(held=0, done=5)
>>> decide(None, 7, now=100.0, stale_after=60.0), decide(c, 7, 100.0, 60.0), decide(c, 5, 100.0, 60.0), decide(c, 4, 100.0, 60.0)
('take', 'take', 'superseded', 'superseded')
>>> busy = taken(c, 7, now=100.0)
>>> decide(busy, 7, 130.0, 60.0), decide(busy, 6, 130.0, 60.0), decide(busy, 9, 130.0, 60.0), decide(busy, 9, 161.0, 60.0)
('take', 'superseded', 'wait', 'take')
>>> released(busy, 7, written=True), released(busy, 7, written=False), released(busy, 8, written=True)
(DocumentClaim(held=0, done=7, held_since=0.0, queue='', holder='', stale_after=0.0), DocumentClaim(held=0, done=5, held_since=0.0, queue='', holder='', stale_after=0.0), None)
>>> mine = taken(c, 7, now=100.0, holder="w1")
>>> decide(mine, 7, 130.0, 60.0, holder="w1"), decide(mine, 7, 130.0, 60.0, holder="w2"), decide(mine, 7, 161.0, 60.0, holder="w2")
('take', 'wait', 'take')
>>> renewed(mine, 7, "w1", now=150.0).held_since, renewed(mine, 7, "w2", now=150.0), fence_deadline(150.0, 60.0)
(150.0, None, 180.0)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal

CLAIMS_BUCKET = "torua_rag_claims"
CLAIM_TTL_S = 24 * 3600.0  # a document's claim is forgotten this long after its last change (no version of it is on the queue by then)

Decision = Literal["take", "superseded", "wait"]


@dataclass(frozen=True)
class DocumentClaim:
    """One document's claim (a record of `CLAIMS_BUCKET`, encoded by the codec)."""

    held: int = 0  # the version being written (its queue sequence); 0: none
    done: int = 0  # the newest version written, or the queue sequence a delete came after
    held_since: float = 0.0  # when `held` was taken or last renewed (the holder's wall clock, seconds)
    queue: str = ""  # the queue the versions are of (its stream's creation time): a stream made again starts its sequences again
    holder: str = ""  # who holds `held` (a worker's `ClaimStore`: its worker's id and a token); "": a claim of an older release
    stale_after: float = 0.0  # how long the holder's claim stands unrenewed (its fence is half of it); 0: the taker's own (an older release)


def message_version(sequence: int) -> int:
    """The version of the message with this stream sequence (from 1)."""
    return 2 * sequence


def delete_version(last_sequence: int) -> int:
    """The version of a delete that comes after the message with `last_sequence` (0:
    none yet) and before the next.

    >>> message_version(7) < delete_version(7) < message_version(8)
    True
    """
    return 2 * last_sequence + 1


def _holds(claim: DocumentClaim, version: int, holder: str) -> bool:
    """`version` is held by `holder` (or by a worker of an older release, which names none)."""
    return claim.held == version and claim.holder in ("", holder)


def decide(
    claim: DocumentClaim | None, version: int, now: float, stale_after: float, queue: str = "", holder: str = "", in_hand: bool = False,
) -> Decision:
    """What `holder` does with `version` (of `queue`) of a document whose claim is `claim`
    (None: none yet; a claim of another queue is as none: its versions do not compare).
    The version held by another holder is waited for as an older one is: its writer
    may be paused, and its writes are fenced only once the claim is stale.

    `in_hand`: the holder writes this version already (the same message delivered
    again while its first delivery is in hand): it waits, whatever the claim says.
    Taken again, the first delivery's release would leave the second's writes without
    a fence (fenced, counted failed).

    >>> decide(DocumentClaim(held=0, done=90, queue="q1"), 8, 0.0, 60.0, "q2"), decide(DocumentClaim(held=0, done=90, queue="q1"), 8, 0.0, 60.0, "q1")
    ('take', 'superseded')
    >>> decide(taken(None, 8, 0.0, holder="w1"), 8, 1.0, 60.0, holder="w1", in_hand=True)
    'wait'
    """
    if in_hand:
        return "wait"
    if claim is None or claim.queue != queue:
        return "take"
    if claim.done >= version:
        return "superseded"
    if claim.held == 0 or _holds(claim, version, holder):
        return "take"
    if claim.held > version:
        return "superseded"
    if now - claim.held_since > (claim.stale_after or stale_after):  # the holder's: its fence is half of its own
        return "take"
    return "wait"


def taken(claim: DocumentClaim | None, version: int, now: float, queue: str = "", holder: str = "", stale_after: float = 0.0) -> DocumentClaim:
    return DocumentClaim(
        held=version, done=claim.done if claim is not None and claim.queue == queue else 0, held_since=now, queue=queue, holder=holder, stale_after=stale_after,
    )


def released(claim: DocumentClaim, version: int, written: bool, holder: str = "") -> DocumentClaim | None:
    """The claim once `version` is written (or given up: `written` False); None when it is
    not held by `version` of `holder` any more (taken over: left as it is)."""
    if not _holds(claim, version, holder):
        return None
    return DocumentClaim(held=0, done=max(claim.done, version) if written else claim.done, queue=claim.queue)


def renewed(claim: DocumentClaim, version: int, holder: str, now: float) -> DocumentClaim | None:
    """The claim `holder` still holds for `version`, held since `now` (None: it was taken
    over, or let go). A claim of an older release (no holder) is not renewed."""
    if claim.held != version or not holder or claim.holder != holder:
        return None
    return replace(claim, held_since=now)


def fence_deadline(since: float, stale_after: float) -> float:
    """The wall-clock time after which the nodes refuse the writes of a claim renewed at
    `since`: half of `stale_after` before another worker may take it over, which leaves
    that half for the clocks of nodes and workers to differ."""
    return since + stale_after / 2


def claim_key(corpus: str, document_id: str) -> str:
    """The bucket key of a document: a hash (corpus names and document ids are any text,
    keys are subject tokens).

    >>> claim_key("papers", "a/b c"), len(claim_key("x", "y"))
    ('ae4e8c089447c3242c0393f6de4133bb1299b123e6890f01c2037176aa3f8c90', 64)
    """
    return hashlib.sha256(f"{corpus}\0{document_id}".encode("utf-8", "surrogatepass")).hexdigest()
