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


def _endpoint(name: str):
    from torua.gateway.endpoints import ENDPOINTS

    return next(e for e in ENDPOINTS if e.name == name)


def test_the_largest_valid_graph_bodies_fit_what_rest_reads():
    """A JSON body limit below what the rules let a request carry makes valid writes 413
    (64 KiB, the limit of the cluster calls, once refused a vertex with its full properties)."""
    import json

    from torua.graph import rules

    props = {"t": "x" * (rules.MAX_PROPERTIES_BYTES - 10)}
    assert rules.validate_properties(props, "v") is props
    vertex = {"label": "L" * rules.MAX_LABEL_CHARS, "properties": props, "embedding": [-1.2345678901234567e-300] * rules.MAX_VECTOR_DIM}
    edge = {"src": "s" * 1024, "type": "t" * rules.MAX_LABEL_CHARS, "dst": "d" * 1024, "properties": props, "weight": 1.5}
    seeds = {"from": ["i" * 1024] * rules.MAX_SEEDS, "types": ["t" * rules.MAX_LABEL_CHARS] * 100, "max_hops": 6, "limit": 10000}
    for name, body in [("vertex_put", vertex), ("edge_put", edge), ("graph_traverse", seeds), ("graph_vector_search", {"vector": vertex["embedding"], "k": 1000})]:
        assert len(json.dumps(body).encode()) <= _endpoint(name).max_json_body, name
