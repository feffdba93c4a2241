"""NATS credentials, per-role permissions and TLS, against real nats-servers.

The permission test runs a whole cluster on a nats-server that includes
`deploy/nats/auth.conf` unchanged, each process with its own user, then checks
that what a role must not do is refused by the server.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import nats
import nkeys
import pytest
import trustme

from torua.bus import NatsAuth, NatsUnreachable, connect
from torua.cli.up import nats_server_binary, wait_for_port
from torua.protocol import subjects
from tests.support.nats_jwt import operator_setup
from tests.support.processes import Cluster, free_port, start_nats, wait_until
from torua.graph.catalog_store import GraphCatalog


async def wait_async(predicate, what: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)

AUTH_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "auth.conf"
# start_nats writes its config to <workdir>/nats-<port>/nats/; nats-server includes relative to it
INCLUDE_AUTH = 'include "../../auth.conf"\n'
PASSWORDS = {
    "TORUA_COORDINATOR_PASSWORD": "coordinator-secret",
    "TORUA_NODE_PASSWORD": "node-secret",
    "TORUA_GATEWAY_PASSWORD": "gateway-secret",
    "TORUA_CLIENT_PASSWORD": "client-secret",
    "TORUA_WORKER_PASSWORD": "worker-secret",
}


def credentials(who: str) -> list[str]:
    if who.startswith("c"):
        user, password = "coordinator", PASSWORDS["TORUA_COORDINATOR_PASSWORD"]
    elif who.startswith("n"):
        user, password = who, PASSWORDS["TORUA_NODE_PASSWORD"]
    else:
        user, password = "gateway", PASSWORDS["TORUA_GATEWAY_PASSWORD"]
    return ["--nats-user", user, "--nats-password", password]


class Probe:
    """A connection as one user that records the server's permission errors."""

    def __init__(self, url: str, user: str, password: str, name: str, **login) -> None:
        self.url, self.name = url, name
        self.login = dict(user=user, password=password) if user else login  # or nkeys_seed=...
        self.errors: list[str] = []
        self.nc = None

    async def __aenter__(self) -> "Probe":
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(
            self.url, **self.login, name=self.name,
            inbox_prefix=f"_INBOX.{self.name}", error_cb=on_error, allow_reconnect=False, connect_timeout=5,
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self.nc.close()

    async def refused(self, what: str) -> bool:
        """Has the server refused `what` (e.g. 'Publish to "torua.cluster.map"')?"""
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline:
            if any("permissions violation" in e.lower() and what.lower() in e.lower() for e in self.errors):
                return True
            await self.nc.flush(timeout=2)
            await asyncio.sleep(0.05)
        return False


@pytest.mark.timeout(180)
def test_each_role_runs_with_its_own_credentials_and_cannot_do_what_it_must_not(group):
    shutil.copy(AUTH_CONF, group.workdir / "auth.conf")
    _, url = start_nats(group, extra_conf=INCLUDE_AUTH, env=PASSWORDS)
    c = Cluster(group, url, replicas=2)
    c.extra_args = credentials
    c.start(nodes=3)
    assert c.request("PUT", "/data/secured", b"yes")[0] == 204
    assert c.request("GET", "/data/secured")[:2] == (200, b"yes")
    # The coordinator and the gateway may broadcast; every node hears it and answers.
    status, changed = c.json("PUT", "/cluster/config", {"max_moves": 3})
    assert status == 200 and changed["applied_by"] == ["n1", "n2", "n3"], changed
    status, pinged = c.json("POST", "/broadcast", {"kind": "ping"})
    assert status == 200 and [r["node_id"] for r in pinged["replies"] if r["ok"]] == ["n1", "n2", "n3"], pinged
    # Every operator call the gateway makes is allowed to it.
    status, explained = c.json("GET", "/cluster/allocation/explain?shard=0")
    assert status == 200 and explained["shard_id"] == 0, explained
    status, rebalanced = c.json("POST", "/cluster/rebalance?dry_run=true")
    assert status == 200 and rebalanced["dry_run"] is True, rebalanced
    status, maintained = c.json("POST", "/nodes/maintenance", {"nodes": ["n3"], "maintenance": True})
    assert status == 200, maintained
    status, maintained = c.json("POST", "/nodes/maintenance", {"nodes": ["n3"], "maintenance": False})
    assert status == 200, maintained
    # The graph catalog: the coordinator made its bucket; the gateway creates a key and watches them all.
    status, created = c.json("PUT", "/graphs/secured", {"vector_dim": 2})
    assert status == 201, created
    wait_until(lambda: "secured" in [g["name"] for g in c.json("GET", "/graphs")[1].get("graphs", [])], 10, "the gateway's catalog watch")
    node_pw, gateway_pw = PASSWORDS["TORUA_NODE_PASSWORD"], PASSWORDS["TORUA_GATEWAY_PASSWORD"]
    client_pw = PASSWORDS["TORUA_CLIENT_PASSWORD"]

    async def checks() -> list[str]:
        done = []
        async with Probe(url, "gateway", gateway_pw, "torua-gateway") as watcher, Probe(url, "n1", node_pw, "torua-node-n1") as n1:
            seen: list[bytes] = []

            async def collect(msg) -> None:
                seen.append(msg.data)

            async def ignore(msg) -> None:
                pass

            await watcher.nc.subscribe(subjects.MAP_ANNOUNCE, cb=collect)
            await watcher.nc.flush()
            # A node cannot publish a shard map ...
            await n1.nc.publish(subjects.MAP_ANNOUNCE, b"forged map")
            assert await n1.refused(f'Publish to "{subjects.MAP_ANNOUNCE}"'), n1.errors
            await watcher.nc.flush()
            assert b"forged map" not in seen
            done.append("node publishes a map: refused")
            # ... nor answer on another node's subjects ...
            await n1.nc.subscribe(subjects.node("n2", "kv"), cb=ignore)
            assert await n1.refused(f'Subscription to "{subjects.node("n2", "kv")}"'), n1.errors
            done.append("node subscribes to n2's subjects: refused")
            # ... nor broadcast to the other nodes ...
            await n1.nc.publish(subjects.BROADCAST, b"forged broadcast")
            assert await n1.refused(f'Publish to "{subjects.BROADCAST}"'), n1.errors
            done.append("node broadcasts: refused")
            # ... nor take the leader lease (no JetStream at all).
            with pytest.raises(Exception):
                kv = await n1.nc.jetstream(timeout=2).key_value(subjects.LEADER_BUCKET)
                await kv.put(subjects.LEADER_KEY, b'{"id": "n1"}')
            assert await n1.refused('Publish to "$JS.API'), n1.errors
            done.append("node takes the leader lease: refused")
            # ... but reads the graph catalog, and cannot write it.
            catalog = await n1.nc.jetstream(timeout=5).key_value(subjects.GRAPH_BUCKET)
            assert b'"vector_dim": 2' in (await catalog.get("secured")).value
            with pytest.raises(Exception):
                await catalog.put("forged", b"{}")
            assert await n1.refused(f'Publish to "$KV.{subjects.GRAPH_BUCKET}.forged"'), n1.errors
            done.append("node reads the graph catalog, writes it: refused")
            # The gateway cannot reach the replication subjects ...
            with pytest.raises(Exception):
                await watcher.nc.request(subjects.node("n1", "shard.log"), b"", timeout=1)
            assert await watcher.refused(f'Publish to "{subjects.node("n1", "shard.log")}"'), watcher.errors
            done.append("gateway fetches a replication log: refused")
            # ... nor command a node.
            await watcher.nc.publish(subjects.node("n1", "shard.drop"), b"")
            assert await watcher.refused(f'Publish to "{subjects.node("n1", "shard.drop")}"'), watcher.errors
            done.append("gateway sends a node command: refused")
        async with Probe(url, "client", client_pw, "torua-client") as app:
            # An application watches the graph catalog (torua.Client) but cannot change it.
            catalog = GraphCatalog(app.nc)
            await catalog.start()
            try:
                await wait_async(lambda: catalog.synced and "secured" in catalog.entries, "the client's catalog watch")
            finally:
                await catalog.stop()
            kv = await app.nc.jetstream(timeout=5).key_value(subjects.GRAPH_BUCKET)
            with pytest.raises(Exception):
                await kv.delete("secured")
            assert await app.refused(f'Publish to "$KV.{subjects.GRAPH_BUCKET}.secured"'), app.errors
            done.append("client watches the graph catalog, deletes a graph in it: refused")
        return done

    done = asyncio.run(checks())
    # Nothing the probes tried changed the cluster.
    assert c.request("GET", "/data/secured")[:2] == (200, b"yes")
    assert c.json("GET", "/cluster/health")[1]["status"] == "green"
    assert [g["name"] for g in c.json("GET", "/graphs")[1]["graphs"]] == ["secured"]
    print("\n" + "\n".join(done))


def test_a_wrong_password_is_a_clear_error(group):
    shutil.copy(AUTH_CONF, group.workdir / "auth.conf")
    _, url = start_nats(group, extra_conf=INCLUDE_AUTH, env=PASSWORDS)
    with pytest.raises(NatsUnreachable, match="(?i)authorization"):
        asyncio.run(connect(url, "torua-node-n1", timeout=2, auth=NatsAuth(user="n1", password="wrong")))


def test_token_nkey_and_creds_credentials(group, tmp_path):
    seed = nkeys.encode_seed(bytes(range(32)), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    _, token_url = start_nats(group, extra_conf='authorization { token: "t0ken" }\n')
    _, nkey_url = start_nats(group, extra_conf=f'authorization {{ users = [ {{ nkey: {public} }} ] }}\n')
    # Operator mode (JWTs); JetStream there would need a system account, and this needs none.
    operator_conf, creds = operator_setup(tmp_path)
    port = free_port()
    (tmp_path / "operator.conf").write_text(f'listen: "127.0.0.1:{port}"\n' + operator_conf)
    server = group.start("nats-operator-mode", [nats_server_binary(), "-c", str(tmp_path / "operator.conf")])
    assert wait_for_port(port, time.monotonic() + 15, server.popen), server.log()
    creds_url = f"nats://127.0.0.1:{port}"

    async def round_trip(url: str, auth: NatsAuth) -> bytes:
        nc = await connect(url, "torua-test", timeout=5, auth=auth)
        try:
            sub = await nc.subscribe("torua.test")
            await nc.publish("torua.test", b"hello")
            return (await sub.next_msg(timeout=5)).data
        finally:
            await nc.close()

    assert asyncio.run(round_trip(token_url, NatsAuth(token="t0ken"))) == b"hello"
    assert asyncio.run(round_trip(nkey_url, NatsAuth(nkey_seed=str(seed_file)))) == b"hello"
    assert asyncio.run(round_trip(creds_url, NatsAuth(creds=str(creds)))) == b"hello"
    with pytest.raises(NatsUnreachable):
        asyncio.run(round_trip(token_url, NatsAuth(token="nope")))
    with pytest.raises(NatsUnreachable):  # operator mode: no creds, no entry
        asyncio.run(round_trip(creds_url, NatsAuth()))


@pytest.mark.timeout(120)
def test_a_cluster_runs_over_tls(group, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls = f'tls {{ cert_file: "{cert_file}"\n key_file: "{key_file}" }}\n'
    _, url = start_nats(group, extra_conf=tls, scheme="tls")
    c = Cluster(group, url)
    c.extra_args = lambda who: ["--nats-tls-ca", str(ca_file)]
    c.start(nodes=2)
    assert c.request("PUT", "/data/over-tls", b"sealed")[0] == 204
    assert c.request("GET", "/data/over-tls")[:2] == (200, b"sealed")
    # Without the CA the server's certificate is not trusted: a clear error, no connection.
    with pytest.raises(NatsUnreachable, match="(?i)certificate"):
        asyncio.run(connect(url, "torua-test", timeout=2))
    wait_until(lambda: all(n["status"] == "healthy" for n in c.json("GET", "/nodes")[1]["nodes"]), 10, "nodes healthy over TLS")
