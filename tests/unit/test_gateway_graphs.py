"""The gateway's graph half (torua.gateway.graphs), mixed into `Gateway`."""

from __future__ import annotations

from torua.gateway.graphs import GraphEndpoints
from torua.gateway.service import Gateway

# What GraphEndpoints declares of the Gateway it is mixed into (the Gateway's own).
DECLARED = {"_map"}


def test_no_gateway_method_takes_the_place_of_a_graph_one():
    """A Gateway method of the same name would win over the graph half's own (its
    coordinator call `_ask` once took the place of the graph request `_ask`)."""
    graph_own = {name for name in vars(GraphEndpoints) if callable(getattr(GraphEndpoints, name)) and not name.startswith("__")}
    assert graph_own & set(vars(Gateway)) == DECLARED
    for name in graph_own - DECLARED:
        assert getattr(Gateway, name) is getattr(GraphEndpoints, name), name
