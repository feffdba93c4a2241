"""Each process's collector turns its driver's read-only snapshot into the same
/metrics families it always had: tables of snapshots and the samples they give."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from torua import __version__
from torua.coordinator.metrics import ClusterSnapshot, CoordinatorSnapshot, coordinator_families
from torua.metrics import GatewayMetrics, LiveCollector, registry_of
from torua.node.metrics import CopySnapshot, NodeSnapshot, node_families
from torua.protocol.messages import ShardEntry, ShardMap


def samples(families) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(registry_of(LiveCollector(lambda: families))).decode()
    return {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_a_node_shows_every_role_its_sizes_and_its_replicas_lag():
    snapshot = NodeSnapshot(
        "n1",
        epoch=7,
        copies=[
            CopySnapshot(0, "primary", True, keys=3, bytes=30, last_seq=10, replicas=("n1", "n2", "n3"), acked={"n2": 10, "n3": 4}),
            CopySnapshot(1, "replica", True, keys=2, bytes=5, last_seq=8, replicas=("n2",)),
            CopySnapshot(2, "frozen", False),  # closing right now: counted, not measured
        ],
        kv_served={("put", "ok"): 4, ("get", "not_found"): 1},
        graph_served={("edge.attach", "ok"): 3, ("vertex.get", "not_found"): 2},
    )
    got = samples(list(node_families(snapshot)))
    node = ("node", "n1")
    assert got[("torua_node_map_epoch", frozenset({node}))] == 7
    assert {role: got[("torua_node_shards", frozenset({node, ("role", role)}))] for role in ("primary", "replica", "frozen", "copying", "retired")} == {
        "primary": 1, "replica": 1, "frozen": 1, "copying": 0, "retired": 0,
    }
    assert got[("torua_node_keys", frozenset({node}))] == 5 and got[("torua_node_bytes", frozenset({node}))] == 35
    lag = {dict(labels)["replica"]: v for (name, labels), v in got.items() if name == "torua_node_replica_lag_ops"}
    assert lag == {"n2": 0, "n3": 6}  # only a leading copy's replicas, itself left out
    assert got[("torua_node_kv_requests_total", frozenset({node, ("op", "put"), ("outcome", "ok")}))] == 4
    assert got[("torua_node_graph_requests_total", frozenset({node, ("op", "edge.attach"), ("outcome", "ok")}))] == 3
    assert not any(dict(labels).get("op") == "edge.attach" for (name, labels) in got if name == "torua_node_kv_requests_total")
    assert got[("torua_build_info", frozenset({("role", "node"), ("version", __version__)}))] == 1


def test_a_standby_coordinator_reports_only_that_it_stands_by():
    got = samples(list(coordinator_families(CoordinatorSnapshot("c2", leading=False, term=9))))
    me = ("coordinator", "c2")
    assert got[("torua_coordinator_leader", frozenset({me}))] == 0
    assert got[("torua_coordinator_term", frozenset({me}))] == 0
    assert {name for name, _ in got} == {"torua_build_info", "torua_coordinator_leader", "torua_coordinator_term"}


def test_the_leader_reports_the_cluster_as_its_brain_sees_it():
    shard_map = ShardMap(
        epoch=12, num_shards=3, replication_factor=2,
        shards=[
            ShardEntry(0, "n1", ["n2"], ["n1", "n2"], "active"),
            ShardEntry(1, "n2", ["n3"], ["n2"], "active"),
            ShardEntry(2, "n3", ["n1"], ["n3", "n1"], "unavailable"),
        ],
    )
    cluster = ClusterSnapshot(shard_map, {"n1": "healthy", "n2": "healthy", "n3": "unhealthy", "n4": "unknown"}, moves_running=1)
    got = samples(list(coordinator_families(CoordinatorSnapshot("c1", True, 4, cluster))))
    me = ("coordinator", "c1")
    assert got[("torua_coordinator_leader", frozenset({me}))] == 1 and got[("torua_coordinator_term", frozenset({me}))] == 4
    assert {s: got[("torua_coordinator_nodes", frozenset({me, ("status", s)}))] for s in ("healthy", "unhealthy", "unknown")} == {"healthy": 2, "unhealthy": 1, "unknown": 1}
    assert {s: got[("torua_coordinator_shards", frozenset({me, ("state", s)}))] for s in ("active", "moving", "unassigned", "unavailable")} == {
        "active": 2, "moving": 0, "unassigned": 0, "unavailable": 1,
    }
    assert got[("torua_coordinator_map_epoch", frozenset({me}))] == 12
    assert got[("torua_coordinator_moves_in_progress", frozenset({me}))] == 1
    assert got[("torua_coordinator_replicas_out_of_sync", frozenset({me}))] == 1
    copies = {(dict(labels)["node"], dict(labels)["role"]): v for (name, labels), v in got.items() if name == "torua_coordinator_shard_copies"}
    assert copies[("n4", "primary")] == 0 and copies[("n1", "primary")] == 1 and copies[("n1", "replica")] == 1


def test_a_leader_before_the_cluster_formed_reports_no_map():
    got = samples(list(coordinator_families(CoordinatorSnapshot("c1", True, 4, ClusterSnapshot(None, {"n1": "healthy"})))))
    assert ("torua_coordinator_map_epoch", frozenset({("coordinator", "c1")})) not in got
    assert got[("torua_coordinator_nodes", frozenset({("coordinator", "c1"), ("status", "healthy")}))] == 1


def test_the_gateway_reads_its_map_epoch_when_scraped():
    epoch = [0]
    metrics = GatewayMetrics(lambda: epoch[0])
    metrics.observe_http("put", 204, 0.001)
    epoch[0] = 5
    text = metrics.exposition().decode()
    assert "torua_gateway_map_epoch 5.0" in text
    assert 'torua_gateway_http_requests_total{op="put",status="204"} 1.0' in text
