"""Three nats-servers on loopback, clustered with routes and JetStream on each,
started from `deploy/nats/cluster.conf` unchanged (its settings come from the
environment). Every route runs through a `TcpProxy`, so a test can separate one
server from the other two and join it back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats

from torua.cli.up import nats_server_binary, wait_for_port
from tests.support.processes import ProcessGroup, Proc, free_port, wait_until
from tests.support.tcp_proxy import TcpProxy

CLUSTER_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "cluster.conf"
NAMES = ("nats-a", "nats-b", "nats-c")


class NatsCluster:
    def __init__(self, group: ProcessGroup) -> None:
        self.group = group
        self.client_port = {name: free_port() for name in NAMES}
        self.route_port = {name: free_port() for name in NAMES}
        # proxies[(a, b)] carries a's route to b
        self.proxies = {(a, b): TcpProxy(self.route_port[b]) for a in NAMES for b in NAMES if a != b}
        self.procs: dict[str, Proc] = {}

    def url(self, *names: str) -> str:
        return ",".join(f"nats://127.0.0.1:{self.client_port[n]}" for n in (names or NAMES))

    def start(self) -> "NatsCluster":
        for proxy in self.proxies.values():
            proxy.start()
        for name in NAMES:
            self.start_server(name)
        for name in NAMES:
            if not wait_for_port(self.client_port[name], time.monotonic() + 15, self.procs[name].popen):
                raise AssertionError(f"{name} did not start:\n{self.procs[name].log()}")
        self.wait_jetstream()
        return self

    def start_server(self, name: str) -> Proc:
        others = [n for n in NAMES if n != name]
        env = {
            "TORUA_NATS_NAME": name,
            "TORUA_NATS_LISTEN": f"127.0.0.1:{self.client_port[name]}",
            "TORUA_NATS_STORE": str(self.group.workdir / name),
            "TORUA_NATS_CLUSTER_LISTEN": f"127.0.0.1:{self.route_port[name]}",
            # Nothing listens there: servers learn no direct way around the proxies.
            "TORUA_NATS_CLUSTER_ADVERTISE": "127.0.0.1:1",
            "TORUA_NATS_ROUTE_1": f"nats-route://127.0.0.1:{self.proxies[(name, others[0])].port}",
            "TORUA_NATS_ROUTE_2": f"nats-route://127.0.0.1:{self.proxies[(name, others[1])].port}",
        }
        proc = self.group.start(name, [nats_server_binary(), "-c", str(CLUSTER_CONF)], env=env)
        self.procs[name] = proc
        return proc

    def restart(self, name: str) -> None:
        self.procs[name].kill()
        self.start_server(name)
        if not wait_for_port(self.client_port[name], time.monotonic() + 15, self.procs[name].popen):
            raise AssertionError(f"{name} did not restart:\n{self.procs[name].log()}")

    def separate(self, name: str) -> None:
        """Cut every route between `name` and the other two (both directions)."""
        for (a, b), proxy in self.proxies.items():
            if name in (a, b):
                proxy.cut()

    def join(self, name: str) -> None:
        for (a, b), proxy in self.proxies.items():
            if name in (a, b):
                proxy.heal()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proxy in self.proxies.values():
            proxy.stop()

    def wait_jetstream(self, names: tuple[str, ...] = NAMES, timeout: float = 30) -> None:
        """Until JetStream answers on each of `names` (it has a meta leader)."""

        async def answers(name: str) -> bool:
            try:
                nc = await nats.connect(self.url(name), connect_timeout=2, allow_reconnect=False)
            except Exception:
                return False
            try:
                await nc.jetstream(timeout=2).account_info()
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        for name in names:
            wait_until(lambda: asyncio.run(answers(name)), timeout, f"JetStream on {name}")
