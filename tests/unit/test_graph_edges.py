"""The edge protocol's decisions (torua.graph.edges), as tables over rows: what each
primary logs and answers at each step, and that late or repeated messages change
nothing they should not."""

from __future__ import annotations

import pytest

from torua.graph import edges as decide
from torua.graph.rows import EdgeRow
from torua.protocol.vocabulary import HalfState
from torua.storage.operations import EdgeDelete, EdgePut, VertexDelete

KEY = ("a", "knows", "b")


def out(state: str, token: int, props: str = "{}", weight: float = 1.0) -> EdgeRow:
    return EdgeRow(*KEY, props, weight, out_state=state, out_token=token)


def in_(state: str, token: int, props: str = "{}", weight: float = 1.0) -> EdgeRow:
    return EdgeRow(*KEY, props, weight, in_state=state, in_token=token)


def both() -> EdgeRow:
    return EdgeRow(*KEY, "{}", 1.0, "committed", 3, "confirmed", 3)


PENDING = EdgePut("u", *KEY, "out", "{}", 1.0, state="pending")


@pytest.mark.parametrize(
    "row, props, expected",
    [
        (None, "{}", [PENDING]),
        (out("committed", 4), "{}", []),  # the same edge again: nothing (B is asked to attach incarnation 4 again)
        (out("committed", 4), '{"x":1}', [EdgePut("u", *KEY, "out", '{"x":1}', 1.0, state="pending")]),  # new properties: a new incarnation
        (out("pending", 4), "{}", [PENDING]),  # a put that never finished: start again
        (out("removing", 4), "{}", [PENDING]),
    ],
)
def test_a_put_starts_a_new_incarnation_unless_the_edge_is_there_as_asked(row, props, expected) -> None:
    assert decide.put_ops("u", *KEY, props, 1.0, row) == expected


@pytest.mark.parametrize(
    "row, exists, token, expected_state, expected_ops",
    [
        (None, False, 5, HalfState.MISSING, []),
        (None, True, 5, HalfState.ATTACHED, [EdgePut("u", *KEY, "in", "{}", 1.0, state="pending", token=5)]),
        (in_("attached", 5), True, 5, HalfState.ATTACHED, []),  # again: nothing
        (in_("confirmed", 5, '{"old":1}'), True, 5, HalfState.ATTACHED, [EdgePut("u", *KEY, "in", "{}", 1.0, state="committed", token=5)]),  # stays confirmed
        (in_("confirmed", 3), True, 5, HalfState.ATTACHED, [EdgePut("u", *KEY, "in", "{}", 1.0, state="pending", token=5)]),  # newer: to be confirmed again
        (in_("attached", 9), True, 5, HalfState.NEWER, []),  # a late attach of an older incarnation
        (in_("attached", 9), False, 5, HalfState.MISSING, []),
    ],
)
def test_dst_shard_on_attach(row, exists, token, expected_state, expected_ops) -> None:
    assert decide.on_attach("u", KEY, row, exists, token, "{}", 1.0) == (expected_state, expected_ops)


@pytest.mark.parametrize(
    "row, token, dropped, expected_state, expected_ops",
    [
        # dst was deleted (its in-half 5 went, a drop of 5 is on its way to A) and put
        # again: a late or repeated attach of 5 must not hold an in-half the drop leaves behind
        (None, 5, 5, HalfState.MISSING, []),
        (None, 4, 5, HalfState.MISSING, []),
        (None, 6, 5, HalfState.ATTACHED, [EdgePut("u", *KEY, "in", "{}", 1.0, state="pending", token=6)]),  # a newer put: fine
    ],
)
def test_dst_shard_refuses_an_incarnation_it_dropped(row, token, dropped, expected_state, expected_ops) -> None:
    assert decide.on_attach("u", KEY, row, True, token, "{}", 1.0, dropped) == (expected_state, expected_ops)


@pytest.mark.parametrize(
    "row, exists, dropped, expected_state, expected_ops",
    [
        (in_("confirmed", 5), True, 0, HalfState.ATTACHED, []),  # held as asked: nothing changes
        (in_("attached", 5), True, 0, HalfState.ATTACHED, []),
        (in_("confirmed", 5, '{"old":1}'), True, 0, HalfState.ATTACHED, [EdgePut("u", *KEY, "in", "{}", 1.0, state="committed", token=5)]),
        # not held: a detach of 5 may have come first (src deleted); never attached anew
        (None, True, 0, HalfState.ABSENT, []),
        (in_("confirmed", 3), True, 0, HalfState.ABSENT, []),
        (in_("attached", 9), True, 0, HalfState.NEWER, []),
        (None, False, 0, HalfState.MISSING, []),  # dst gone
        (None, True, 5, HalfState.MISSING, []),  # its drop on the way
    ],
)
def test_dst_shard_asked_about_a_committed_incarnation_keeps_it_only_if_held(row, exists, dropped, expected_state, expected_ops) -> None:
    assert decide.on_attach("u", KEY, row, exists, 5, "{}", 1.0, dropped, held_only=True) == (expected_state, expected_ops)


@pytest.mark.parametrize(
    "row, token, detached, expected_state, expected_ops",
    [
        # src's shard logged 5 gone and said so: an attach of 5 or older is one its detach overtook
        (None, 5, 5, HalfState.ABSENT, []),
        (None, 4, 5, HalfState.ABSENT, []),
        (in_("attached", 9), 5, 5, HalfState.NEWER, []),
        (None, 6, 5, HalfState.ATTACHED, [EdgePut("u", *KEY, "in", "{}", 1.0, state="pending", token=6)]),  # a newer put: fine
    ],
)
def test_dst_shard_attaches_no_incarnation_it_was_told_to_detach(row, token, detached, expected_state, expected_ops) -> None:
    assert decide.on_attach("u", KEY, row, True, token, "{}", 1.0, detached=detached) == (expected_state, expected_ops)


@pytest.mark.parametrize(
    "row, token, removes",
    [
        (None, 5, False),
        (in_("attached", 5), 5, True),
        (in_("confirmed", 3), 5, True),  # older incarnations go too
        (in_("attached", 9), 5, False),  # a newer one stays: the detach is late
        (out("committed", 5), 5, False),  # no in-half here
    ],
)
def test_dst_shard_on_detach(row, token, removes) -> None:
    assert decide.on_detach("u", row, token) == ([EdgeDelete("u", *KEY, "in")] if removes else [])


@pytest.mark.parametrize(
    "row, token, removes",
    [
        (None, 5, False),
        (out("committed", 5), 5, True),
        (out("pending", 4), 5, True),
        (out("removing", 5), 5, True),
        (out("pending", 9), 5, False),  # a newer put of the edge after dst came back: it stays
        (in_("attached", 5), 5, False),
    ],
)
def test_src_shard_on_drop(row, token, removes) -> None:
    assert decide.on_drop("u", row, token) == ([EdgeDelete("u", *KEY, "out")] if removes else [])


@pytest.mark.parametrize(
    "row, answer, src_exists, ops, error, missing",
    [
        (out("pending", 5), HalfState.ATTACHED, True, [EdgePut("u", *KEY, "out", "{}", 1.0, state="committed", token=5)], "", ""),
        (out("committed", 5), HalfState.ATTACHED, True, [], "", ""),  # committed already
        (None, HalfState.ATTACHED, False, [], "not_found", "src"),  # src deleted meanwhile
        (None, HalfState.ATTACHED, True, [], "not_found", "dst"),  # dropped meanwhile: dst deleted
        (out("pending", 7), HalfState.ATTACHED, True, [], "not_found", "dst"),  # another incarnation: not this one's to commit
        (out("pending", 5), HalfState.MISSING, True, [EdgeDelete("u", *KEY, "out")], "not_found", "dst"),
        (out("pending", 7), HalfState.MISSING, True, [], "not_found", "dst"),
        (out("pending", 5), HalfState.NEWER, True, [], "conflict", ""),
        (None, HalfState.ABSENT, False, [], "not_found", "src"),  # B was told to detach it: src deleted meanwhile
        (out("pending", 5), HalfState.ABSENT, True, [EdgeDelete("u", *KEY, "out")], "not_found", "dst"),  # never left pending for good
    ],
)
def test_src_shard_after_attach(row, answer, src_exists, ops, error, missing) -> None:
    outcome = decide.after_attach("u", row, 5, answer, src_exists)
    assert (outcome.ops, outcome.error_code, outcome.missing) == (ops, error, missing)


@pytest.mark.parametrize(
    "row, expected",
    [
        (None, []),
        (out("committed", 5), [EdgePut("u", *KEY, "out", "{}", 1.0, state="removing", token=5)]),
        (out("pending", 5), [EdgePut("u", *KEY, "out", "{}", 1.0, state="removing", token=5)]),
        (out("removing", 5), []),  # already under way
        (both(), [EdgeDelete("u", *KEY, "both")]),  # both ends here: at once
        (in_("attached", 5), []),  # the in-half is dst's shard's; this is not src's
    ],
)
def test_src_shard_starts_a_delete(row, expected) -> None:
    assert decide.delete_ops("u", row) == expected


@pytest.mark.parametrize(
    "row, removes",
    [(out("removing", 5), True), (out("removing", 7), False), (out("committed", 5), False), (None, False)],
)
def test_src_shard_after_detach(row, removes) -> None:
    assert decide.after_detach("u", row, 5) == ([EdgeDelete("u", *KEY, "out")] if removes else [])


@pytest.mark.parametrize(
    "row, state, token, expected",
    [
        (in_("attached", 5), HalfState.COMMITTED, 5, [EdgePut("u", *KEY, "in", '{"p":1}', 2.0, state="committed", token=5)]),  # confirmed, with src's properties
        (in_("attached", 5), HalfState.PENDING, 5, []),  # src is between steps: ask again later
        (in_("attached", 5), HalfState.REMOVING, 5, []),
        (in_("attached", 5), HalfState.ABSENT, 0, [EdgeDelete("u", *KEY, "in")]),  # an attach overtaken by its detach
        (in_("attached", 5), HalfState.COMMITTED, 7, [EdgeDelete("u", *KEY, "in")]),  # src has another incarnation
        (in_("attached", 5), HalfState.PENDING, 7, [EdgeDelete("u", *KEY, "in")]),  # its attach comes again
        (in_("attached", 6), HalfState.ABSENT, 0, []),  # changed since the question: the next round asks
        (in_("confirmed", 5), HalfState.ABSENT, 0, []),
        (None, HalfState.ABSENT, 0, []),
    ],
)
def test_dst_shard_after_check(row, state, token, expected) -> None:
    assert decide.after_check("u", row, 5, state, token, '{"p":1}', 2.0) == expected



def test_check_answers_the_out_half() -> None:
    assert decide.check_answer(None) == (HalfState.ABSENT, 0)
    assert decide.check_answer(in_("attached", 5)) == (HalfState.ABSENT, 0)
    assert decide.check_answer(out("pending", 5)) == (HalfState.PENDING, 5)


def test_a_vertex_delete_removes_every_half_and_leaves_a_task_for_each_held_elsewhere() -> None:
    rows = [
        EdgeRow("v", "t", "x", "{}", 1.0, "committed", 7),  # v -> remote x
        EdgeRow("v", "t", "p", "{}", 1.0, "pending", 8),  # a put under way: its in-half may be attached
        EdgeRow("y", "t", "v", "{}", 1.0, None, 0, "confirmed", 3),  # remote y -> v
        EdgeRow("v", "t", "w", "{}", 1.0, "committed", 2, "confirmed", 2),  # both here
        EdgeRow("v", "t", "v", "{}", 1.0, "committed", 1, "confirmed", 1),  # a loop
    ]
    assert decide.cascade("u", "v", rows) == [
        EdgeDelete("u", "v", "t", "x", "out", 7, "detach"),
        EdgeDelete("u", "v", "t", "p", "out", 8, "detach"),
        EdgeDelete("u", "y", "t", "v", "in", 3, "drop"),
        EdgeDelete("u", "v", "t", "w", "both"),
        EdgeDelete("u", "v", "t", "v", "both"),
        VertexDelete("u", "v"),
    ]
    assert decide.cascade("u", "v", []) == [VertexDelete("u", "v")]


@pytest.mark.parametrize(
    "row, token, answer, expected",
    [
        (out("committed", 4), 4, HalfState.MISSING, True),  # B no longer holds 4 (dst deleted, maybe put again): a new one
        (out("committed", 4), 4, HalfState.ABSENT, True),  # B holds no in-half of 4 (it never attaches it anew): a new one
        (out("committed", 6), 4, HalfState.ABSENT, False),  # changed meanwhile
        (out("committed", 4), 4, HalfState.ATTACHED, False),  # there as asked
        (out("committed", 6), 4, HalfState.MISSING, False),  # changed meanwhile
        (None, 4, HalfState.MISSING, True),  # gone meanwhile (the drop came): dst may be there again, the new one's attach says
        (None, 4, HalfState.ATTACHED, True),  # the drop came before B looked (its task done, B attached 4 again): a new one
        (None, 4, HalfState.NEWER, True),  # gone here whatever B holds: the new one's token is above every older one
    ],
)
def test_a_put_of_a_committed_edge_starts_again_when_dst_shard_no_longer_holds_it(row, token, answer, expected) -> None:
    assert decide.needs_new_incarnation(row, token, answer) is expected
