"""torua.Client and the `torua kv` / `torua status` commands against a real cluster."""

from __future__ import annotations

import subprocess

import nats
import pytest

from torua import Client
from torua.cli.up import torua_command
from torua.config import DEFAULT_MAX_VALUE_BYTES
from torua.keys import shard_for_key
from torua.protocol import subjects
from torua.protocol.codec import decode, encode
from torua.protocol.errors import ToruaError
from torua.protocol.messages import KvReply, KvRequest
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
    """Watch the wire: the client's request goes to torua.node.<holder>.app.kv (an application's subject), not the gateway API."""
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
    assert f"torua.node.{loc['primary']}.app.kv" in seen
    assert not any(s.startswith("torua.api.") for s in seen)


async def code_of(call) -> str:
    with pytest.raises(ToruaError) as err:
        await call
    return err.value.code


async def test_client_refuses_bad_input_with_a_torua_error(shared_cluster):
    """What the gateway refuses, the client refuses before sending, with the same codes;
    and NATS's own errors come out as ToruaError too."""
    c = shared_cluster
    async with Client(c.nats_url) as db:
        # a content type no HTTP header can carry: refused, nothing stored (it used to be
        # stored, and then the gateway could not serve the key)
        assert await code_of(db.put("client/crlf", b"v", content_type="text/plain\r\nX-Injected: 1")) == "bad_request"
        assert await code_of(db.put("client/crlf", b"v", content_type="t" * 256)) == "bad_request"
        assert await db.get("client/crlf") is None
        assert c.request("GET", "/data/client/crlf")[0] == 404
        # too large: refused before sending (it used to raise nats.errors.MaxPayloadError)
        assert await code_of(db.put("client/big", b"x" * (20 << 20))) == "value_too_large"
        assert await code_of(db.put("client/big", "text")) == "bad_request"  # type: ignore[arg-type]
        assert await code_of(db.get("client/x", consistency="sometimes")) == "bad_request"
        assert await code_of(db.delete("")) == "bad_request"
        assert await code_of(db.list(prefix="p" * 1025)) == "bad_request"
        assert await code_of(db.list(limit=0)) == "bad_request"
        assert await code_of(db.list(cursor="not-a-cursor")) == "bad_request"
        assert await code_of(db.list(cursor=7)) == "bad_request"  # type: ignore[arg-type]
    # a client told it may send more: the NATS server's max_payload (16 MiB here) refuses
    # 20 MiB, the node's limit (8 MiB) refuses 9 MiB
    async with Client(c.nats_url, max_value_bytes=32 << 20) as roomy:
        assert await code_of(roomy.put("client/big", b"x" * (20 << 20))) == "value_too_large"
        with pytest.raises(ToruaError) as err:
            await roomy.put("client/big", b"x" * (DEFAULT_MAX_VALUE_BYTES + 1))
        assert err.value.code == "value_too_large" and f"the limit is {DEFAULT_MAX_VALUE_BYTES}" in err.value.message
        assert await roomy.get("client/big") is None
    # the NATS connection gone: unavailable, not a NATS exception
    nc = await nats.connect(c.nats_url)
    db = await Client(c.nats_url, nc=nc).connect()
    await db.put("client/before-close", b"v")
    await nc.close()
    assert await code_of(db.get("client/before-close")) == "unavailable"
    assert await code_of(db.put("client/after-close", b"v")) == "unavailable"
    assert await code_of(db.list()) == "unavailable"
    await db.close()
    assert await code_of(Client(c.nats_url).get("client/x")) == "unavailable"  # never connected


async def kv_request(nc, node: str, request: KvRequest) -> KvReply:
    return decode(KvReply, (await nc.request(subjects.node(node, "kv"), encode(request), timeout=5)).data)


async def test_a_node_refuses_a_key_sent_to_a_shard_it_does_not_belong_to(shared_cluster):
    """Straight to the node, as any NATS client may: a key whose shard is another one is
    refused and not written (it used to be stored where GET and DELETE never look)."""
    c = shared_cluster
    shards = c.json("GET", "/shards")[1]
    num_shards, epoch = shards["num_shards"], shards["epoch"]
    key = "direct/wrong-shard"
    home = shard_for_key(key, num_shards)
    away = (home + 1) % num_shards
    node = shards["shards"][away]["primary"]
    nc = await nats.connect(c.nats_url)
    try:
        for request in (
            KvRequest("put", away, epoch, key=key, value=b"v"),
            KvRequest("get", away, epoch, key=key),
            KvRequest("delete", away, epoch, key=key),
        ):
            reply = await kv_request(nc, node, request)
            assert (reply.ok, reply.error_code) == (False, "bad_request"), request
            assert f"belongs to shard {home}, not {away}" in reply.error_message
        listed = await kv_request(nc, node, KvRequest("list", away, epoch, prefix="direct/"))
        assert listed.ok and key not in listed.keys
        assert c.request("GET", "/data/" + key)[0] == 404
        assert key not in c.all_keys()
        # the same checks as the gateway's, for anything sent straight to a node
        home_node = shards["shards"][home]["primary"]
        crlf = await kv_request(nc, home_node, KvRequest("put", home, epoch, key=key, value=b"v", content_type="a\r\nb"))
        assert (crlf.ok, crlf.error_code) == (False, "bad_request")
        too_big = await kv_request(nc, home_node, KvRequest("put", home, epoch, key=key, value=b"x" * (DEFAULT_MAX_VALUE_BYTES + 1)))
        assert (too_big.ok, too_big.error_code) == (False, "value_too_large")
        no_shard = await kv_request(nc, home_node, KvRequest("get", num_shards, epoch, key=key))
        assert (no_shard.ok, no_shard.error_code) == (False, "unknown_shard")
        bad_after = await kv_request(nc, home_node, KvRequest("list", home, epoch, after="", limit=5))
        assert (bad_after.ok, bad_after.error_code) == (False, "bad_request")
        assert c.request("GET", "/data/" + key)[0] == 404
        # and the right shard takes it
        ok = await kv_request(nc, home_node, KvRequest("put", home, epoch, key=key, value=b"v"))
        assert ok.ok and c.request("GET", "/data/" + key)[:2] == (200, b"v")
    finally:
        await nc.close()


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
