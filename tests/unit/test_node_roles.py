import pytest

from torua.node.roles import IllegalTransition, next_role, serves_copy_source

LEGAL = [
    ("absent", "create", "primary"),
    ("absent", "copy", "copying"),
    ("copying", "assign", "primary"),
    ("copying", "drop", "absent"),
    ("primary", "freeze", "frozen"),
    ("frozen", "unfreeze", "primary"),
    ("frozen", "unassign", "retired"),
    ("primary", "unassign", "retired"),
    ("retired", "drop", "absent"),
    ("retired", "assign", "primary"),
    ("frozen", "drop", "absent"),
]
ILLEGAL = [("primary", "drop"), ("primary", "copy"), ("copying", "freeze"), ("absent", "freeze"), ("retired", "freeze"), ("absent", "unfreeze")]


@pytest.mark.parametrize("state,event,after", LEGAL)
def test_legal(state, event, after):
    assert next_role(state, event) == after


@pytest.mark.parametrize("state,event", ILLEGAL)
def test_illegal_raises(state, event):
    with pytest.raises(IllegalTransition):
        next_role(state, event)


@pytest.mark.parametrize("state,ok", [("primary", True), ("frozen", True), ("retired", True), ("copying", False), ("absent", False)])
def test_serves_copy_source(state, ok):
    assert serves_copy_source(state) is ok
