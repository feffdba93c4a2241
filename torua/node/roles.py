"""What a node may do with each shard copy it has: a transition table.

States of one shard copy on one node:

- ``absent``   no data here.
- ``copying``  a move is filling this copy from the shard's primary; serves nothing.
- ``primary``  serves reads and writes, and the log its replicas follow.
- ``replica``  follows the primary's log; serves nothing to clients.
- ``frozen``   a move is about to switch the shard away: reads yes, writes answer `moved`.
- ``retired``  data kept on disk but the shard is assigned elsewhere; serves nothing
               until the coordinator says ``drop`` (or assigns it back).

An illegal event raises `IllegalTransition` and the state stays as it was; in
particular a serving primary can never be dropped.

>>> next_role("primary", "freeze")
'frozen'
"""

from __future__ import annotations


class IllegalTransition(Exception):
    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"cannot {event} a shard copy that is {state}")
        self.state = state
        self.event = event


TRANSITIONS: dict[tuple[str, str], str] = {
    ("absent", "create"): "primary",
    ("absent", "open"): "primary",
    ("absent", "copy"): "copying",
    ("copying", "copy"): "copying",
    ("copying", "assign"): "primary",
    ("copying", "drop"): "absent",
    ("primary", "assign"): "primary",
    ("primary", "freeze"): "frozen",
    ("primary", "unassign"): "retired",
    ("frozen", "freeze"): "frozen",
    ("frozen", "unfreeze"): "primary",
    ("frozen", "assign"): "frozen",
    ("frozen", "unassign"): "retired",
    ("frozen", "drop"): "absent",
    ("retired", "assign"): "primary",
    ("retired", "unassign"): "retired",
    ("retired", "drop"): "absent",
    ("retired", "copy"): "copying",
    ("absent", "drop"): "absent",
    # replication: a replica follows its primary, and may be promoted
    ("absent", "open_replica"): "replica",
    ("replica", "assign_replica"): "replica",
    ("replica", "assign"): "primary",
    ("primary", "assign_replica"): "replica",
    ("frozen", "assign_replica"): "replica",
    ("copying", "assign_replica"): "replica",
    ("retired", "assign_replica"): "replica",
    ("replica", "unassign"): "retired",
    ("replica", "drop"): "absent",
}

def next_role(state: str, event: str) -> str:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def serves_copy_source(state: str) -> bool:
    """May another node pull a snapshot or log from a copy in `state`?"""
    return state in ("primary", "frozen", "retired")
