"""`torua status`: nodes, shards per node, health and moves, from the coordinator."""

from __future__ import annotations

import sys
import time

from torua.bus import NatsAuth, NatsUnreachable, connect
from torua.protocol import subjects
from torua.protocol.codec import decode
from torua.protocol.messages import CoordinatorInfo, NodesReply
from torua.routing import MapCache


async def run_status(args) -> int:
    try:
        nc = await connect(args.nats_url, "torua-status", timeout=5, auth=NatsAuth.from_env())
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
        shard_map = maps.current
        print(f"cluster {info.cluster_id or '(not formed)'}  epoch {info.epoch}  shards {info.num_shards}  coordinator {info.coordinator_id}")
        print(f"{'NODE':<10} {'STATUS':<10} {'SHARDS':>6} {'KEYS':>8} {'BYTES':>12}  LAST HEARTBEAT")
        for n in nodes:
            ago = f"{time.time() - n.last_heartbeat:.1f}s ago" if n.last_heartbeat else "never"
            print(f"{n.id:<10} {n.status:<10} {len(n.shards):>6} {n.keys:>8} {n.bytes:>12}  {ago}")
        if shard_map is not None:
            states: dict[str, int] = {}
            for e in shard_map.shards:
                states[e.state] = states.get(e.state, 0) + 1
            print("shards: " + ", ".join(f"{count} {state}" for state, count in sorted(states.items())))
        for m in info.moves:
            print(f"move: shard {m.shard_id} {m.source} -> {m.target} ({m.phase})")
        return 0
    finally:
        await maps.stop()
        await nc.close()
