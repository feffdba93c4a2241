"""Whether a heartbeat comes from the node it names.

A node heartbeats on its own subject, `torua.cluster.heartbeat.<id>`, which NATS
permissions let only that node's login publish (torua.nats_roles). The
coordinator takes from that subject only heartbeats naming that node. The old
shared subject, `torua.cluster.heartbeat`, stays for nodes of older releases (and
a node falls back to it when no coordinator answers on its own subject: a
coordinator of an older release, during a rolling upgrade); once a node has heartbeated on its own subject, this
coordinator refuses heartbeats naming it on the shared one, so a login that may
publish there (any node's) cannot speak for it.
"""

from __future__ import annotations

from torua.protocol import subjects


def heartbeat_refusal(subject: str, node_id: str, bound: set[str] | frozenset[str]) -> str | None:
    """Why a heartbeat naming `node_id` that came on `subject` is not that node's
    (None: take it). `bound`: nodes seen heartbeating on their own subject.

    >>> heartbeat_refusal("torua.cluster.heartbeat.n1", "n1", set()) is None
    True
    >>> heartbeat_refusal("torua.cluster.heartbeat.n3", "n1", set())
    'a heartbeat naming n1 came on the subject of n3'
    >>> heartbeat_refusal("torua.cluster.heartbeat", "n1", {"n1"})
    'n1 heartbeats on its own subject; one naming it on the shared subject is not its'
    >>> heartbeat_refusal("torua.cluster.heartbeat", "n1", {"n2"}) is None  # a node of an older release
    True
    """
    if subject == subjects.HEARTBEAT:
        if node_id in bound:
            return f"{node_id} heartbeats on its own subject; one naming it on the shared subject is not its"
        return None
    sender = subject[len(subjects.HEARTBEAT) + 1:] if subject.startswith(subjects.HEARTBEAT + ".") else subject
    if sender != node_id:
        return f"a heartbeat naming {node_id} came on the subject of {sender}"
    return None
