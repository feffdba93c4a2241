"""Which version of a document a worker may write (`torua.rag.claims`), as a table of
cases over plain data."""

from __future__ import annotations

import pytest

from torua.rag.claims import DocumentClaim, decide, delete_version, fence_deadline, message_version, released, renewed, taken

STALE = 60.0
NOW = 1000.0
FRESH = DocumentClaim(held=0, done=0)


@pytest.mark.parametrize(
    "claim, version, now, expected, why",
    [
        (None, 8, NOW, "take", "the document's first version"),
        (FRESH, 8, NOW, "take", "nothing held, nothing written"),
        (DocumentClaim(0, 6), 8, NOW, "take", "an older version is written: this one replaces it"),
        (DocumentClaim(0, 8), 8, NOW, "superseded", "this very version is written already (a late redelivery)"),
        (DocumentClaim(0, 10), 8, NOW, "superseded", "a newer version is written"),
        (DocumentClaim(0, 9), 8, NOW, "superseded", "the document was deleted after this version was sent"),
        (DocumentClaim(8, 6, NOW - 5), 8, NOW, "take", "this version holds it: its redelivery goes on"),
        (DocumentClaim(10, 6, NOW - 5), 8, NOW, "superseded", "a newer version is being written"),
        (DocumentClaim(10, 6, NOW - 500), 8, NOW, "superseded", "a newer one, even silent: its message is still on the queue"),
        (DocumentClaim(6, 4, NOW - 5), 8, NOW, "wait", "an older version is being written"),
        (DocumentClaim(6, 4, NOW - STALE), 8, NOW, "wait", "held exactly as long as may be"),
        (DocumentClaim(6, 4, NOW - STALE - 1), 8, NOW, "take", "the older one's writer went silent: taken over"),
        (DocumentClaim(6, 4, NOW - 5), delete_version(5), NOW, "wait", "a delete waits for the version being written too"),
        (DocumentClaim(0, 12), delete_version(5), NOW, "superseded", "a version sent after the delete is written: it stands"),
        (DocumentClaim(0, message_version(5)), delete_version(5), NOW, "take", "the delete comes after the last message"),
    ],
)
def test_decide(claim, version, now, expected, why) -> None:
    assert decide(claim, version, now, STALE) == expected, why


@pytest.mark.parametrize(
    "claim, expected, why",
    [
        (DocumentClaim(0, 90, queue="q1"), "take", "written from a queue made before this one: its sequences do not compare"),
        (DocumentClaim(90, 4, NOW - 5, queue="q1"), "take", "held by a version of an earlier queue"),
        (DocumentClaim(0, 90, queue="q2"), "superseded", "the same queue: compared"),
    ],
)
def test_a_claim_of_an_earlier_queue_is_as_none(claim, expected, why) -> None:
    assert decide(claim, 8, NOW, STALE, queue="q2") == expected, why
    if expected == "take":
        assert taken(claim, 8, NOW, "q2") == DocumentClaim(8, 0, NOW, "q2"), "nothing of the earlier queue is kept"


def test_a_claim_taken_and_let_go() -> None:
    claim = taken(DocumentClaim(0, 6), 8, NOW)
    assert claim == DocumentClaim(8, 6, NOW)
    assert released(claim, 8, written=True) == DocumentClaim(0, 8)
    assert released(claim, 8, written=False) == DocumentClaim(0, 6), "a version given up moves nothing on"
    assert released(claim, 10, written=True) is None, "a version that does not hold it leaves it as it is"
    assert released(taken(DocumentClaim(0, 12), 8, NOW), 8, written=True) == DocumentClaim(0, 12), "done never goes back"


def test_versions_keep_the_queues_order_and_a_delete_sits_between_two_messages() -> None:
    assert [message_version(s) for s in (1, 2, 3)] == [2, 4, 6]
    assert message_version(3) < delete_version(3) < message_version(4)
    assert delete_version(0) < message_version(1)


@pytest.mark.parametrize(
    "claim, holder, expected, why",
    [
        (DocumentClaim(8, 6, NOW - 5, holder="w1"), "w1", "take", "this worker holds this version: its own redelivery goes on"),
        (DocumentClaim(8, 6, NOW - 5, holder="w1"), "w2", "wait", "another worker holds it, and may only be paused: its writes are not fenced off yet"),
        (DocumentClaim(8, 6, NOW - STALE, holder="w1"), "w2", "wait", "renewed exactly as long ago as may be"),
        (DocumentClaim(8, 6, NOW - STALE - 1, holder="w1"), "w2", "take", "not renewed for longer: its fence passed half of stale_after ago"),
        (DocumentClaim(8, 6, NOW - 5), "w2", "take", "a claim of an older release names no holder: its redelivery goes on as it did"),
        (DocumentClaim(10, 6, NOW - 5, holder="w1"), "w2", "superseded", "a newer version is being written, whoever holds it"),
        (DocumentClaim(6, 4, NOW - 5, holder="w2"), "w2", "wait", "this worker holds an older version: this one waits for it as for any"),
        (DocumentClaim(8, 6, NOW - 2 * STALE, holder="w1", stale_after=3 * STALE), "w2", "wait", "stale by the taker's measure, not by its holder's (whose fence is later)"),
        (DocumentClaim(8, 6, NOW - STALE / 2, holder="w1", stale_after=STALE / 4), "w2", "take", "stale by its holder's shorter measure"),
    ],
)
def test_a_version_another_worker_holds_is_waited_for_until_stale(claim, holder, expected, why) -> None:
    assert decide(claim, 8, NOW, STALE, holder=holder) == expected, why


@pytest.mark.parametrize(
    "claim, why",
    [
        (DocumentClaim(8, 6, NOW - 5, holder="w1"), "held by this worker for this version: a redelivery would take it again"),
        (DocumentClaim(8, 6, NOW - 2 * STALE, holder="w1"), "stale, but the first delivery still writes here"),
        (DocumentClaim(0, 6), "let go meanwhile (nothing held)"),
        (None, "no claim read"),
    ],
)
def test_a_version_this_worker_has_in_hand_waits_whatever_the_claim_says(claim, why) -> None:
    assert decide(claim, 8, NOW, STALE, holder="w1", in_hand=True) == "wait", why
    assert decide(claim, 8, NOW, STALE, holder="w1") == "take", "not in hand: taken"


@pytest.mark.parametrize(
    "claim, version, holder, expected, why",
    [
        (DocumentClaim(8, 6, NOW - 20, holder="w1"), 8, "w1", DocumentClaim(8, 6, NOW, holder="w1"), "held: since moves on, nothing else"),
        (DocumentClaim(8, 6, NOW - 20, holder="w2"), 8, "w1", None, "taken over by another worker"),
        (DocumentClaim(10, 6, NOW - 20, holder="w1"), 8, "w1", None, "a newer version took it (this worker's, even)"),
        (DocumentClaim(0, 8), 8, "w1", None, "let go"),
        (DocumentClaim(8, 6, NOW - 20), 8, "w1", None, "an older release's claim (no holder) is not this worker's to renew"),
    ],
)
def test_renewed(claim, version, holder, expected, why) -> None:
    assert renewed(claim, version, holder, NOW) == expected, why


def test_a_claims_fence_passes_half_of_stale_after_before_another_worker_may_take_it() -> None:
    since = NOW - 100
    claim = taken(DocumentClaim(0, 6), 8, since, holder="w1", stale_after=STALE)
    fence = fence_deadline(since, STALE)
    assert fence == since + STALE / 2
    assert decide(claim, 8, fence + STALE / 2, STALE, holder="w2") == "wait", "nobody else writes while the fence allows the holder's writes, give or take half of stale_after"
    assert decide(claim, 10, fence + STALE / 2 + 1, STALE, holder="w2") == "take"
    assert decide(claim, 10, fence + STALE / 2, 0.1 * STALE, holder="w2") == "wait", "a taker of a shorter stale_after goes by the holder's"
    assert released(claim, 8, written=True, holder="w2") is None, "another worker cannot let it go"
    assert released(claim, 8, written=True, holder="w1") == DocumentClaim(0, 8)
