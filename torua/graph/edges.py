"""The edge protocol between the primaries of an edge's two shards, as decisions over
rows (docs/design/graph.md, section 4): pure, no I/O. The driver
(torua.node.graph_edges) reads the rows, asks the decision, logs what it returns and
sends what it says, under the locks named there.

An edge (src, type, dst) is kept with both endpoints' shards: the out-half on src's
shard (A), the in-half on dst's shard (B). A's primary decides whether the edge
exists, B's whether dst exists. Every incarnation of an edge has a token (the seq
of the put that made its out-half pending on A), and every message names it:

- A puts: out-half `pending` (a new token t), then `edge.attach` t to B; B holds the
  in-half t if dst exists (`attached`, else `missing`); A commits t if its half is
  still pending t (`after_attach`).
- A deletes: out-half `removing`, `edge.detach` t to B (B removes an in-half of
  token <= t), then A removes its half.
- A vertex delete removes every half its shard holds for it and records an outbox
  task for each half held elsewhere (`cascade`): detach (to B) or drop (to A: an
  out-half of token <= t goes).
- Once A committed t it tells B (`edge.confirm`): B confirms its in-half if it still
  holds t attached (`on_confirm`). A lost confirm leaves the in-half to repair.
- Repair: A drives its pending and removing halves again; B asks A about each
  in-half A has not confirmed (`edge.check`): kept and confirmed when A holds it
  committed with the same token, left while A is between steps with that token,
  removed otherwise (`after_check`).
- B remembers (in memory) the newest incarnation of each edge it was told to
  detach and never attaches it, or an older one, again (`on_attach`'s
  `detached`): an attach overtaken by that detach would hold an in-half a late
  confirm or check answer could confirm, with no out-half left.

Tokens only grow for an edge on A, so a late message (an attach overtaken by a
detach, a drop for an older incarnation) changes nothing it should not.

>>> put_ops("u", "a", "knows", "b", '{}', 1.0, None)
[EdgePut(uid='u', src='a', type='knows', dst='b', halves='out', properties='{}', weight=1.0, state='pending', token=0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torua.graph.rows import ATTACHED, CONFIRMED, EdgeRow
from torua.protocol.vocabulary import HalfState
from torua.storage.operations import EdgeDelete, EdgePut, Operation, VertexDelete


def put_ops(uid: str, src: str, type: str, dst: str, properties: str, weight: float, row: EdgeRow | None) -> list[Operation]:
    """What A logs to start a put of an edge whose dst is on another shard: a new
    incarnation, pending (its token is the op's seq). Nothing when the edge is
    already committed with these properties (an import run twice logs nothing); but
    only B knows whether dst still exists, and a delete of dst may have left a drop
    of that incarnation on its way here, so A then asks B whether it still holds
    that incarnation (`on_attach`'s `held_only`) before it answers, and starts a
    new one if B answers `missing` or `absent` (`needs_new_incarnation`)."""
    if row is not None and row.out_state == "committed" and row.properties == properties and row.weight == weight:
        return []
    return [EdgePut(uid, src, type, dst, "out", properties, weight, state="pending")]


def needs_new_incarnation(row: EdgeRow | None, token: int, answer: HalfState) -> bool:
    """A put that found the edge committed (incarnation `token`) asked B to attach it
    again: must it start a new incarnation? When the half is gone, whatever B
    answered: only a drop (or src's delete) removes it while the put holds the
    edge's lock, and the drop may have landed after B answered `missing` or before B
    looked (its outbox task done, B then holds `token` again: `attached`); the new
    incarnation's attach says whether dst exists now, and a src deleted meanwhile
    fails it. And when B no longer holds it (`missing`: dst deleted, perhaps put
    again, its drop of `token` on its way here; `absent`: B holds no in-half of that
    incarnation, see `on_attach`'s `held_only`) and the half is still the one asked
    about."""
    if row is None:
        return True
    return answer in (HalfState.MISSING, HalfState.ABSENT) and row.out_state == "committed" and row.out_token == token


def local_put_ops(uid: str, src: str, type: str, dst: str, properties: str, weight: float, row: EdgeRow | None) -> list[Operation]:
    """Both endpoints on one shard: one op holds both halves (nothing if it is there as is)."""
    if row is not None and row.out_state == "committed" and row.in_state == CONFIRMED and row.properties == properties and row.weight == weight:
        return []
    return [EdgePut(uid, src, type, dst, "both", properties, weight)]


def cascade(uid: str, id: str, rows: Sequence[EdgeRow]) -> list[Operation]:
    """What a delete of vertex `id` logs, in one transaction: every half its shard holds
    for it goes (each half held on another shard becomes an outbox task), then the
    vertex. `rows`: `GraphRows.edges_of(uid, id)`.

    >>> cascade("u", "v", [EdgeRow("v", "knows", "x", "{}", 1.0, "committed", 7), EdgeRow("y", "knows", "v", "{}", 1.0, None, 0, "confirmed", 3)])
    [EdgeDelete(uid='u', src='v', type='knows', dst='x', halves='out', token=7, outbox='detach'), EdgeDelete(uid='u', src='y', type='knows', dst='v', halves='in', token=3, outbox='drop'), VertexDelete(uid='u', id='v')]
    """
    ops: list[Operation] = []
    for row in rows:
        if row.out_state is not None and row.in_state is not None:  # both ends here (a loop too)
            ops.append(EdgeDelete(uid, row.src, row.type, row.dst, "both"))
        elif row.out_state is not None and row.src == id:
            ops.append(EdgeDelete(uid, row.src, row.type, row.dst, "out", row.out_token, "detach"))
        elif row.in_state is not None and row.dst == id:
            ops.append(EdgeDelete(uid, row.src, row.type, row.dst, "in", row.in_token, "drop"))
        elif row.out_state is not None:  # an out-half to `id` without its in-half: both ends here
            ops.append(EdgeDelete(uid, row.src, row.type, row.dst, "out"))
    ops.append(VertexDelete(uid, id))
    return ops


# ------------------------------------------------------------ on dst's shard (B)


def on_attach(
    uid: str, key: tuple[str, str, str], row: EdgeRow | None, dst_exists: bool, token: int, properties: str, weight: float, dropped: int = 0,
    held_only: bool = False, detached: int = 0,
) -> tuple[HalfState, list[Operation]]:
    """B, asked to hold the in-half of edge `key`'s incarnation `token`: what it
    answers, and logs. An in-half confirmed for this token stays confirmed.
    `dropped`: the newest incarnation of the edge whose drop this shard's outbox
    holds (a delete of dst removed its in-half): that incarnation and older ones
    are `missing`, even once dst exists again, since the drop on its way to A
    would remove the out-half and leave this in-half alone.

    `detached`: the newest incarnation of the edge this shard was told to detach
    (`torua.node.detached`): A logged it gone, and every older one, so an attach of
    one of those is late, overtaken by the detach (`absent`, nothing held).
    `held_only`: A holds `token` committed and asks again (a put of an edge that is
    there as it is; the half's state in the request is `committed`). B keeps an
    in-half of that incarnation it holds, and never attaches it anew (`absent`):
    its in-half went only by a message B acted on (a detach, dst's delete), and
    held anew it would be a half whose out-half may be gone.

    >>> on_attach("u", ("a", "knows", "b"), None, True, 5, "{}", 1.0)
    ('attached', [EdgePut(uid='u', src='a', type='knows', dst='b', halves='in', properties='{}', weight=1.0, state='pending', token=5)])
    >>> on_attach("u", ("a", "knows", "b"), EdgeRow("a", "knows", "b", "{}", 1.0, None, 0, "attached", 9), True, 5, "{}", 1.0)
    ('newer', [])
    >>> on_attach("u", ("a", "knows", "b"), None, True, 5, "{}", 1.0, held_only=True), on_attach("u", ("a", "knows", "b"), None, True, 5, "{}", 1.0, detached=5)
    (('absent', []), ('absent', []))
    """
    if not dst_exists or token <= dropped:
        return HalfState.MISSING, []
    held = row is not None and row.in_state is not None
    if held and row.in_token > token:  # type: ignore[union-attr]
        return HalfState.NEWER, []  # a late attach of an older incarnation
    if token <= detached or (held_only and not (held and row.in_token == token)):  # type: ignore[union-attr]
        return HalfState.ABSENT, []
    if held and row.in_token == token and row.properties == properties and row.weight == weight:  # type: ignore[union-attr]
        return HalfState.ATTACHED, []  # again: nothing changes
    confirmed = held and row.in_state == CONFIRMED and row.in_token == token  # type: ignore[union-attr]
    return HalfState.ATTACHED, [EdgePut(uid, *key, "in", properties, weight, state="committed" if confirmed else "pending", token=token)]


def on_detach(uid: str, row: EdgeRow | None, token: int) -> list[Operation]:
    """B, asked to remove the in-half of incarnation `token` (or older)."""
    if row is None or row.in_state is None or row.in_token > token:
        return []
    return [EdgeDelete(uid, row.src, row.type, row.dst, "in")]


def on_confirm(uid: str, row: EdgeRow | None, token: int) -> list[Operation]:
    """B, told by A that it committed incarnation `token`: the in-half is confirmed if
    it is still that incarnation, attached. Confirming it is safe even when the
    message is late: A passed through committed t, and whatever A does with t after
    that (a detach, a vertex delete's outbox) reaches B as a message of its own.

    >>> on_confirm("u", EdgeRow("a", "knows", "b", "{}", 1.0, None, 0, "attached", 5), 5)
    [EdgePut(uid='u', src='a', type='knows', dst='b', halves='in', properties='{}', weight=1.0, state='committed', token=5)]
    >>> on_confirm("u", EdgeRow("a", "knows", "b", "{}", 1.0, None, 0, "attached", 9), 5), on_confirm("u", None, 5)
    ([], [])
    """
    if row is None or row.in_state != ATTACHED or row.in_token != token:
        return []
    return [EdgePut(uid, row.src, row.type, row.dst, "in", row.properties, row.weight, state="committed", token=token)]


def after_check(uid: str, row: EdgeRow | None, token: int, answer_state: HalfState, answer_token: int, properties: str, weight: float) -> list[Operation]:
    """B, having asked A about its attached in-half of incarnation `token`: confirm it
    (A holds it committed, same token: with A's properties), leave it (A is between
    steps with that token: pending or removing), or remove it (anything else)."""
    if row is None or row.in_state != ATTACHED or row.in_token != token:
        return []  # it changed meanwhile: the next round looks again
    if answer_token == token and answer_state == HalfState.COMMITTED:
        return [EdgePut(uid, row.src, row.type, row.dst, "in", properties, weight, state="committed", token=token)]
    if answer_token == token and answer_state in (HalfState.PENDING, HalfState.REMOVING):
        return []
    return [EdgeDelete(uid, row.src, row.type, row.dst, "in")]


# ------------------------------------------------------------ on src's shard (A)


def on_drop(uid: str, row: EdgeRow | None, token: int) -> list[Operation]:
    """A, told by B that dst is gone (its in-half of incarnation `token` went): the
    out-half goes, unless it is of a newer incarnation."""
    if row is None or row.out_state is None or row.out_token > token:
        return []
    return [EdgeDelete(uid, row.src, row.type, row.dst, "out")]


def check_answer(row: EdgeRow | None) -> tuple[HalfState, int]:
    """A's answer to `edge.check`: its out-half's state and token."""
    if row is None or row.out_state is None:
        return HalfState.ABSENT, 0
    return HalfState(row.out_state), row.out_token


@dataclass(frozen=True)
class Outcome:
    """What A does once B answered an attach or detach: log `ops`, and answer the
    client `error_code` ("" = done) naming `missing` when it is "not_found"."""

    ops: list[Operation]
    error_code: str = ""
    missing: str = ""  # "src" or "dst"


def after_attach(uid: str, row: EdgeRow | None, token: int, answer: HalfState, src_exists: bool) -> Outcome:
    """A, once B answered the attach of incarnation `token`."""
    pending = row is not None and row.out_state == "pending" and row.out_token == token
    if answer == HalfState.ATTACHED:
        if pending:
            assert row is not None
            return Outcome([EdgePut(uid, row.src, row.type, row.dst, "out", row.properties, row.weight, state="committed", token=token)])
        if row is not None and row.out_state == "committed" and row.out_token == token:
            return Outcome([])  # another step committed it already
        # removed meanwhile: src deleted here, or dst's delete dropped it
        return Outcome([], "not_found", "dst" if src_exists else "src")
    if answer == HalfState.MISSING:
        ops: list[Operation] = [EdgeDelete(uid, row.src, row.type, row.dst, "out")] if pending and row is not None else []
        return Outcome(ops, "not_found", "dst")
    if answer == HalfState.ABSENT:  # B was told to detach it: it went here meanwhile (src deleted)
        ops = [EdgeDelete(uid, row.src, row.type, row.dst, "out")] if pending and row is not None else []
        return Outcome(ops, "not_found", "dst" if src_exists else "src")
    # NEWER: B holds an incarnation this shard does not: B's repair removes it, then
    # the attach goes through. Until then the half stays pending.
    return Outcome([], "conflict")


def after_detach(uid: str, row: EdgeRow | None, token: int) -> list[Operation]:
    """A, once B removed the in-half of incarnation `token`: its removing half goes."""
    if row is None or row.out_state != "removing" or row.out_token != token:
        return []
    return [EdgeDelete(uid, row.src, row.type, row.dst, "out")]


def delete_ops(uid: str, row: EdgeRow | None) -> list[Operation]:
    """What A logs first when asked to delete the edge: nothing if it has no out-half;
    both halves at once when both ends are here; else the out-half `removing`."""
    if row is None or row.out_state is None:
        return []
    if row.in_state is not None:
        return [EdgeDelete(uid, row.src, row.type, row.dst, "both")]
    if row.out_state == "removing":
        return []
    return [EdgePut(uid, row.src, row.type, row.dst, "out", row.properties, row.weight, state="removing", token=row.out_token)]
