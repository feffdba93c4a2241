"""The gateway's NATS API on a real cluster, beyond what test_nats_api.py covers: whole
requests in JSON and msgpack with their exact replies, every way to get a 400 (none of
which changes anything), the cluster calls, and no_coordinator when it is gone."""

from __future__ import annotations

import base64
import json

import msgpack
import nats
import pytest

from torua.config import DEFAULT_MAX_VALUE_BYTES

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def nc(shared_cluster):
    conn = await nats.connect(shared_cluster.nats_url)
    try:
        yield conn
    finally:
        await conn.close()


async def call(nc, endpoint: str, body, as_json: bool = True) -> tuple[dict, tuple[str, int] | None]:
    """One request as any NATS client sends it: (decoded reply, (error code, status) or None).

    An error reply is exactly ``{"error": {"code", "message", "fields"?}}``, in the request's encoding,
    with the service error headers saying the same."""
    if isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode() if as_json else msgpack.packb(body, use_bin_type=True)
    msg = await nc.request("torua.api." + endpoint, data, timeout=10, headers=JSON if as_json else None)
    headers = msg.headers or {}
    assert headers.get("Content-Type") == ("application/json" if as_json else "application/msgpack")
    reply = json.loads(msg.data) if as_json else msgpack.unpackb(msg.data, raw=False)
    if "Nats-Service-Error-Code" not in headers:
        assert "error" not in reply, reply
        return reply, None
    assert set(reply) == {"error"} and {"code", "message"} <= set(reply["error"]) <= {"code", "message", "fields"}, reply
    code, message = reply["error"]["code"], reply["error"]["message"]
    assert message and headers["Nats-Service-Error"] == " ".join(message.split())
    return reply, (code, int(headers["Nats-Service-Error-Code"]))


async def test_json_and_msgpack_round_trips(nc):
    assert await call(nc, "kv.put", {"key": "rt/a/b", "value": "héllo", "content_type": "text/plain"}) == ({"ok": True}, None)
    assert (await call(nc, "kv.get", {"key": "rt/a/b"}))[0] == {"key": "rt/a/b", "value": "héllo", "content_type": "text/plain"}
    assert (await call(nc, "kv.get", {"key": "rt/a/b"}, as_json=False))[0] == {"key": "rt/a/b", "value": "héllo".encode(), "content_type": "text/plain"}
    raw = bytes(range(256))
    assert await call(nc, "kv.put", {"key": "rt/bin", "value": raw}, as_json=False) == ({"ok": True}, None)
    got, _ = await call(nc, "kv.get", {"key": "rt/bin"})
    assert base64.b64decode(got["value_b64"]) == raw and got["content_type"] == "application/octet-stream" and "value" not in got
    listed, _ = await call(nc, "kv.list", {"prefix": "rt/", "limit": 10, "cursor": None})
    assert sorted(listed["keys"]) == ["rt/a/b", "rt/bin"] and listed["next_cursor"] is None
    assert await call(nc, "kv.delete", {"key": "rt/bin"}) == ({"ok": True}, None)
    assert await call(nc, "kv.delete", {"key": "rt/bin"}) == ({"ok": True}, None)  # idempotent
    _, error = await call(nc, "kv.get", {"key": "rt/bin"})
    assert error == ("not_found", 404)


@pytest.mark.parametrize(
    "endpoint,body,code",
    [
        ("kv.get", b"{not json", "bad_request"),
        ("kv.get", {"nokey": 1}, "bad_request"),
        ("kv.get", {}, "bad_request"),
        ("kv.get", {"key": ""}, "bad_request"),
        ("kv.get", {"key": 5}, "bad_request"),
        ("kv.get", {"key": "a\u0000b"}, "bad_request"),
        ("kv.get", {"key": "k" * 1025}, "bad_request"),
        ("kv.put", {"key": "x"}, "bad_request"),
        ("kv.put", {"key": "x", "value": "a", "value_b64": "YQ=="}, "bad_request"),
        ("kv.put", {"key": "x", "value_b64": "***"}, "bad_request"),
        ("kv.put", {"key": "x", "value": "a", "content_type": 7}, "bad_request"),
        ("kv.put", {"key": "x", "value": "a", "content_type": "text/plain\r\nX-Evil: 1"}, "bad_request"),
        ("kv.put", {"key": "x", "value": "a", "extra": 1}, "bad_request"),
        ("kv.put", {"key": "x", "value": "v" * (DEFAULT_MAX_VALUE_BYTES + 1)}, "value_too_large"),
        ("kv.list", {"limit": 0}, "bad_request"),
        ("kv.list", {"limit": 1001}, "bad_request"),
        ("kv.list", {"limit": "10"}, "bad_request"),
        ("kv.list", {"limit": True}, "bad_request"),
        ("kv.list", {"cursor": "garbage!"}, "bad_request"),
        ("kv.list", {"prefix": 3}, "bad_request"),
        ("cluster.info", {"verbose": True}, "bad_request"),
        # the prefix follows the key rules (it may be empty)
        ("kv.list", {"prefix": "a\u0000"}, "bad_request"),
        ("kv.list", {"prefix": "p" * 1025}, "bad_request"),
        # values the wire cannot carry (the first used to be a 500), shard ids outside 0..num_shards-1
        ("cluster.assign", b'{"shard_id": 99999999999999999999, "node_id": "n1"}', "bad_request"),
        ("cluster.assign", {"shard_id": -1, "node_id": "n1"}, "unknown_shard"),
        ("cluster.assign", {"shard_id": 2**64 - 1, "node_id": "n1"}, "unknown_shard"),
        ("cluster.assign", b'{"shard_id": 1, "node_id": "\\ud800"}', "bad_request"),
        ("cluster.explain", {"shard": 2**64 - 1}, "bad_request"),
        ("cluster.drain", b'{"node": "\\ud800"}', "bad_request"),
        ("cluster.maintenance", b'{"nodes": ["\\ud800"], "maintenance": true}', "bad_request"),
        ("cluster.broadcast", b'{"kind": "ping", "body": {"n": NaN}}', "bad_request"),
        ("cluster.broadcast", b'{"kind": "ping", "body": {"n": 18446744073709551616}}', "bad_request"),
        ("cluster.config.set", b'{"max_moves": 99999999999999999999}', "bad_request"),
        ("cluster.config.set", b'{"heartbeat_interval": 1e999}', "bad_request"),
        ("kv.list", b'{"limit": 1e999}', "bad_request"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
async def test_errors_change_nothing(shared_cluster, nc, endpoint, body, code):
    before = shared_cluster.all_keys()
    reply, error = await call(nc, endpoint, body)
    assert error is not None and error[0] == code, reply
    assert error[1] == {"bad_request": 400, "unknown_shard": 404, "value_too_large": 413}[code]
    assert shared_cluster.all_keys() == before


async def test_msgpack_errors_come_back_as_msgpack(nc):
    reply, error = await call(nc, "kv.get", b"\xc1\xc1\xc1", as_json=False)
    assert reply["error"]["code"] == "bad_request" and error == ("bad_request", 400)
    # msgpack carries NaN, JSON does not: refused alike, naming the field
    reply, error = await call(nc, "cluster.broadcast", {"kind": "ping", "body": {"n": [0, float("nan")]}}, as_json=False)
    assert error == ("bad_request", 400) and reply["error"]["message"].startswith("body.n[1]: numbers must be finite")


async def test_cluster_calls(shared_cluster, nc):
    for endpoint in ("cluster.info", "cluster.health", "cluster.shards", "cluster.nodes"):
        reply, error = await call(nc, endpoint, b"")
        assert error is None, (endpoint, reply)
    assert (await call(nc, "cluster.health", {}))[0]["status"] == "green"
    shards = (await call(nc, "cluster.shards", {}))[0]
    assert shards["num_shards"] == shared_cluster.shards and len(shards["shards"]) == shared_cluster.shards


async def test_no_coordinator_over_nats(cluster):
    cluster.coordinator.kill()
    conn = await nats.connect(cluster.nats_url)
    try:
        _, error = await call(conn, "cluster.nodes", {})
        assert error == ("no_coordinator", 503)
        _, error = await call(conn, "cluster.shards", {})  # the map needs no coordinator
        assert error is None
    finally:
        await conn.close()
