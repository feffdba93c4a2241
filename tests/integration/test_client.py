"""torua.Client and the `torua kv` / `torua status` commands against a real cluster."""

from __future__ import annotations

import subprocess

import nats
import pytest

from torua import Client
from torua.cli.up import torua_command
from torua.protocol.errors import ToruaError
from tests.support.processes import free_port


async def test_client_goes_straight_to_the_node(shared_cluster):
    c = shared_cluster
    async with Client(c.nats_url) as db:
        await db.put("client/a", b"\x00\x01binary", content_type="application/x-test")
        assert await db.get_item("client/a") == (b"\x00\x01binary", "application/x-test")
        assert c.request("GET", "/data/client/a")[1] == b"\x00\x01binary"
        await db.delete("client/a")
        assert await db.get("client/a") is None
        for i in range(25):
            await db.put(f"client/list/{i:02d}", b"v")
        keys, cursor = await db.list("client/list/", limit=10)
        assert len(keys) == 10 and cursor
        rest: list[str] = []
        while cursor:
            page, cursor = await db.list("client/list/", limit=10, cursor=cursor)
            rest.extend(page)
        assert sorted(keys + rest) == [f"client/list/{i:02d}" for i in range(25)]
        with pytest.raises(ToruaError) as err:
            await db.put("", b"x")
        assert err.value.code == "bad_request"


async def test_client_one_hop_uses_the_node_subject(shared_cluster):
    """Watch the wire: the client's request goes to torua.node.<holder>.kv, not the gateway API."""
    c = shared_cluster
    loc = c.location("client/one-hop")
    spy = await nats.connect(c.nats_url)
    seen: list[str] = []

    async def record(msg) -> None:
        seen.append(msg.subject)

    sub = await spy.subscribe("torua.>", cb=record)
    await spy.flush()
    try:
        async with Client(c.nats_url) as db:
            await db.put("client/one-hop", b"v")
        await spy.flush()
    finally:
        await sub.unsubscribe()
        await spy.close()
    assert f"torua.node.{loc['primary']}.kv" in seen
    assert not any(s.startswith("torua.api.") for s in seen)


def run_torua(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(torua_command() + list(args), input=stdin, capture_output=True, timeout=60)


def test_kv_cli_round_trip(shared_cluster):
    url = shared_cluster.nats_url
    assert run_torua("kv", "--nats-url", url, "put", "cli/key", "hello").returncode == 0
    got = run_torua("kv", "--nats-url", url, "get", "cli/key")
    assert got.returncode == 0 and got.stdout == b"hello"
    assert run_torua("kv", "--nats-url", url, "put", "cli/stdin", "-", stdin=b"\x00raw").returncode == 0
    assert run_torua("kv", "--nats-url", url, "get", "cli/stdin").stdout == b"\x00raw"
    listed = run_torua("kv", "--nats-url", url, "ls", "--prefix", "cli/")
    assert sorted(listed.stdout.decode().split()) == ["cli/key", "cli/stdin"]
    assert run_torua("kv", "--nats-url", url, "delete", "cli/key").returncode == 0
    missing = run_torua("kv", "--nats-url", url, "get", "cli/key")
    assert missing.returncode == 1 and b"not found" in missing.stderr


def test_status_cli_shows_every_node(shared_cluster):
    out = run_torua("status", "--nats-url", shared_cluster.nats_url)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    for node_id in shared_cluster.nodes:
        assert f"\n{node_id} " in text
    assert "healthy" in text


@pytest.mark.parametrize("role", [["node", "--id", "n9"], ["gateway", "--port", "0"], ["coordinator"]], ids=lambda r: r[0])
def test_roles_exit_non_zero_with_a_message_when_nats_is_unreachable(role, tmp_path):
    extra = ["--data-dir", str(tmp_path)] if role[0] == "node" else []
    out = run_torua(*role, *extra, "--nats-url", f"nats://127.0.0.1:{free_port()}", "--connect-timeout", "1")
    assert out.returncode != 0
    assert b"cannot reach NATS" in out.stderr


def test_bad_configuration_is_refused():
    out = run_torua("node", "--id", "bad id!")
    assert out.returncode == 2 and b"--id" in out.stderr
    out = run_torua("coordinator", "--shards", "lots")
    assert out.returncode == 2 and b"shards" in out.stderr
