"""Whether a heartbeat comes from the node it names (torua.coordinator.senders): a table."""

from __future__ import annotations

import pytest

from torua.coordinator.senders import heartbeat_refusal


@pytest.mark.parametrize(
    "subject,node,bound,refused",
    [
        ("torua.cluster.heartbeat.n1", "n1", set(), None),
        ("torua.cluster.heartbeat.n1", "n1", {"n1"}, None),
        ("torua.cluster.heartbeat.n2", "n1", set(), "came on the subject of n2"),
        ("torua.cluster.heartbeat.n2", "n1", {"n1", "n2"}, "came on the subject of n2"),
        ("torua.cluster.heartbeat.n1.x", "n1", set(), "came on the subject of n1.x"),
        ("torua.cluster.heartbeat", "n1", set(), None),            # a node of an older release
        ("torua.cluster.heartbeat", "n1", {"n2"}, None),
        ("torua.cluster.heartbeat", "n1", {"n1"}, "n1 heartbeats on its own subject"),
    ],
)
def test_a_heartbeat_is_taken_only_from_the_subject_of_the_node_it_names(subject, node, bound, refused):
    why = heartbeat_refusal(subject, node, bound)
    assert why is None if refused is None else refused in why
