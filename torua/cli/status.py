"""`torua status`: the cluster at a glance, from the leading coordinator.

`render` is pure (the coordinator's answers and the clock in, text out), so what
it prints is tested without a cluster; `run_status` only asks for the data.

    cluster 5c1e0d2a  health green  epoch 42  shards 8 x 2 copies
    coordinators: leader c1 (term 7), standing by: c2
    versions: coordinator torua 0.2.0; nodes torua 0.2.0 (protocol 1)
    NODE  STATUS    VERSION  PROTO  SHARDS  PRIMARIES  KEYS  BYTES  LAST HEARTBEAT
    n1    healthy   0.2.0        1       6          3   120   4096  0.3s ago
    ...
    shards per node:
      n1  primary 0 3 6  replica 1 4 7
      ...
    moves: none
"""

from __future__ import annotations

import sys
import time

from torua.bus import NatsAuth, NatsUnreachable, connect
from torua.cluster_health import cluster_health, node_state
from torua.protocol import subjects
from torua.protocol.codec import decode
from torua.protocol.messages import CoordinatorInfo, NodesReply, NodeStatus, ShardMap
from torua.protocol.vocabulary import ShardState
from torua.routing import MapCache


async def run_status(args) -> int:
    try:
        nc = await connect(args.nats_url, "torua-status", timeout=5, auth=NatsAuth.discover("client", url=args.nats_url))
    except NatsUnreachable as exc:
        print(f"torua status: {exc}", file=sys.stderr)
        return 1
    try:
        maps = MapCache(nc)
        await maps.start()
        try:
            info = decode(CoordinatorInfo, (await nc.request(subjects.coordinator("info"), b"", timeout=3)).data)
            nodes = decode(NodesReply, (await nc.request(subjects.coordinator("nodes"), b"", timeout=3)).data).nodes
        except Exception as exc:
            print(f"torua status: the coordinator does not answer ({exc or type(exc).__name__})", file=sys.stderr)
            return 1
        print(render(info, nodes, maps.current, time.time()), end="")
        return 0
    finally:
        await maps.stop()
        await nc.close()


def render(info: CoordinatorInfo, nodes: list[NodeStatus], shard_map: ShardMap | None, now: float) -> str:
    """Everything `torua status` prints, as text."""
    health = cluster_health(shard_map, nodes)
    epoch = max(info.epoch, shard_map.epoch if shard_map else 0)
    lines = [
        f"cluster {info.cluster_id or '(not formed)'}  health {health['status']}  epoch {epoch}  "
        f"shards {info.num_shards} x {info.replication_factor} {'copy' if info.replication_factor == 1 else 'copies'}",
        f"coordinators: leader {info.coordinator_id}" + (f" (term {info.term})" if info.term else "")
        + f", standing by: {', '.join(info.standbys) or 'none'}",
    ]
    running = sorted({f"torua {n.version}" + (f" (protocol {n.protocol})" if n.protocol else "") for n in nodes if n.version})
    lines.append(f"versions: coordinator torua {info.version}; nodes {', '.join(running) or 'none'}")
    rows = [("NODE", "STATUS", "VERSION", "PROTO", "SHARDS", "PRIMARIES", "KEYS", "BYTES", "LAST HEARTBEAT")]
    for n in nodes:
        ago = f"{max(0.0, now - n.last_heartbeat):.1f}s ago" if n.last_heartbeat else "never"
        rows.append((n.id, node_state(n), n.version or "-", str(n.protocol or "-"), str(len(n.shards)), str(len(n.primaries)), str(n.keys), str(n.bytes), ago))
    lines += _table(rows, right=range(3, 8))
    if shard_map is not None:
        lines.append("shards per node:")
        for n in nodes:
            replicas = [s for s in n.shards if s not in n.primaries]
            lines.append(f"  {n.id}  primary {_ids(n.primaries)}  replica {_ids(replicas)}")
        trouble = [e for e in shard_map.shards if e.primary is None or e.state == ShardState.UNAVAILABLE]
        if trouble:
            lines.append("without a serving primary: " + ", ".join(f"shard {e.shard_id} ({e.state}{', on ' + e.primary if e.primary else ''})" for e in trouble))
    if info.moves:
        lines.append(f"moves in progress ({len(info.moves)}):")
        lines += [f"  shard {m.shard_id}: {m.source or '-'} -> {m.target} ({m.phase}, {max(0.0, now - m.started_at):.0f}s)" for m in info.moves]
    else:
        lines.append("moves: none")
    return "\n".join(lines) + "\n"


def _ids(shards: list[int]) -> str:
    return " ".join(str(s) for s in sorted(shards)) or "-"


def _table(rows: list[tuple[str, ...]], right: range) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
