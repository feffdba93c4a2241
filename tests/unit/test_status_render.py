"""What `torua status` prints, from the coordinator's answers (torua.cli.status.render)."""

from torua.cli.status import render
from torua.cluster_health import node_state
from torua.protocol.messages import CoordinatorInfo, MoveStatus, NodeStatus, ShardEntry, ShardMap

INFO = CoordinatorInfo(
    coordinator_id="c1", version="0.2.0", epoch=42, num_shards=4, replication_factor=2, started_at=0.0, cluster_id="5c1e0d2a",
    moves=[MoveStatus(2, "n1", "n3", "copying", 95.0)], formed=True, term=7, standbys=["c2"],
)
MAP = ShardMap(
    42,
    4,
    2,
    [
        ShardEntry(0, "n1", ["n2"], ["n1", "n2"], "active"),
        ShardEntry(1, "n2", ["n1"], ["n1", "n2"], "active"),
        ShardEntry(2, "n1", ["n2"], ["n1", "n2"], "moving", target="n3"),
        ShardEntry(3, None, [], [], "unassigned"),
    ],
)
NODES = [
    NodeStatus("n1", "healthy", False, 99.7, [0, 1, 2], [0, 2], "0.2.0", keys=10, bytes=100, protocol=1),
    NodeStatus("n2", "healthy", True, 99.0, [0, 1, 2], [1], "0.3.0", protocol=2),
    NodeStatus("n3", "unhealthy", False, None, [], []),
]


def test_the_whole_picture():
    assert render(INFO, NODES, MAP, now=100.0) == """\
cluster 5c1e0d2a  health red  epoch 42  shards 4 x 2 copies
coordinators: leader c1 (term 7), standing by: c2
versions: coordinator torua 0.2.0; nodes torua 0.2.0 (protocol 1), torua 0.3.0 (protocol 2)
NODE  STATUS     VERSION  PROTO  SHARDS  PRIMARIES  KEYS  BYTES  LAST HEARTBEAT
n1    healthy    0.2.0        1       3          2    10    100  0.3s ago
n2    draining   0.3.0        2       3          1     0      0  1.0s ago
n3    unhealthy  -            -       0          0     0      0  never
shards per node:
  n1  primary 0 2  replica 1
  n2  primary 1  replica 0 2
  n3  primary -  replica -
without a serving primary: shard 3 (unassigned)
moves in progress (1):
  shard 2: n1 -> n3 (copying, 5s)
"""


def test_before_the_cluster_forms():
    info = CoordinatorInfo(coordinator_id="c1", version="0.2.0", epoch=0, num_shards=16, replication_factor=1, started_at=0.0, cluster_id="")
    out = render(info, [], None, now=5.0)
    assert out.splitlines()[:2] == ["cluster (not formed)  health red  epoch 0  shards 16 x 1 copy", "coordinators: leader c1, standing by: none"]
    assert "shards per node" not in out and out.endswith("moves: none\n")


STATES = [
    (NodeStatus("n", "healthy", False, 1.0, [1], []), "healthy"),
    (NodeStatus("n", "healthy", True, 1.0, [1], []), "draining"),
    (NodeStatus("n", "healthy", True, 1.0, [], []), "drained"),
    (NodeStatus("n", "unhealthy", True, 1.0, [], []), "unhealthy"),  # health first: a drained node that died is unhealthy
    (NodeStatus("n", "unknown", False, None, [], []), "unknown"),
    (NodeStatus("n", "healthy", False, 1.0, [1], [], maintenance=True), "maintenance"),
    (NodeStatus("n", "healthy", True, 1.0, [1], [], maintenance=True), "draining"),
    (NodeStatus("n", "healthy", False, 1.0, [1], [], evacuating=True), "evacuating"),
    (NodeStatus("n", "healthy", False, 1.0, [], [], evacuating=True), "evacuated"),
]


def test_node_states():
    for node, state in STATES:
        assert node_state(node) == state, node
