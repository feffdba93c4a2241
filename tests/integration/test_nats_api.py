"""The gateway's NATS API with JSON and msgpack, as any NATS client would use it,
and garbage on every subject."""

from __future__ import annotations

import base64
import json

import msgpack
import nats
import pytest

from torua.protocol.codec import decode, encode
from torua.protocol.messages import KvReply, KvRequest

JSON = {"Content-Type": "application/json"}


async def jreq(nc, subject: str, body) -> tuple[dict, dict]:
    msg = await nc.request(subject, json.dumps(body).encode() if not isinstance(body, bytes) else body, timeout=5, headers=JSON)
    return json.loads(msg.data), msg.headers or {}


async def mreq(nc, subject: str, body: dict) -> tuple[dict, dict]:
    msg = await nc.request(subject, msgpack.packb(body, use_bin_type=True), timeout=5)
    return msgpack.unpackb(msg.data, raw=False), msg.headers or {}


async def test_json_and_msgpack_match_http(shared_cluster):
    c = shared_cluster
    nc = await nats.connect(c.nats_url)
    try:
        assert (await jreq(nc, "torua.api.kv.put", {"key": "nats/json", "value": "héllo"}))[0] == {"ok": True}
        assert c.request("GET", "/data/nats/json")[1] == "héllo".encode()
        got, _ = await jreq(nc, "torua.api.kv.get", {"key": "nats/json"})
        assert got["value"] == "héllo"
        raw = bytes(range(256))
        await jreq(nc, "torua.api.kv.put", {"key": "nats/b64", "value_b64": base64.b64encode(raw).decode()})
        got, _ = await jreq(nc, "torua.api.kv.get", {"key": "nats/b64"})
        assert base64.b64decode(got["value_b64"]) == raw
        got, _ = await mreq(nc, "torua.api.kv.get", {"key": "nats/b64"})
        assert got["value"] == raw
        assert c.request("PUT", "/data/nats/http", b"from-http")[0] == 204
        assert (await mreq(nc, "torua.api.kv.get", {"key": "nats/http"}))[0]["value"] == b"from-http"
        await mreq(nc, "torua.api.kv.delete", {"key": "nats/http"})
        assert c.request("GET", "/data/nats/http")[0] == 404
        listed, _ = await jreq(nc, "torua.api.kv.list", {"prefix": "nats/", "limit": 100})
        assert sorted(listed["keys"]) == ["nats/b64", "nats/json"]
    finally:
        await nc.close()


@pytest.mark.parametrize(
    "subject,payload,code,status",
    [
        ("torua.api.kv.get", b"{not json", "bad_request", "400"),
        ("torua.api.kv.get", {"nokey": 1}, "bad_request", "400"),
        ("torua.api.kv.get", {"key": ""}, "bad_request", "400"),
        ("torua.api.kv.get", {"key": "nats/absent"}, "not_found", "404"),
        ("torua.api.kv.put", {"key": "x", "value": "a", "value_b64": "YQ=="}, "bad_request", "400"),
        ("torua.api.kv.put", {"key": "x", "value_b64": "***"}, "bad_request", "400"),
        ("torua.api.kv.put", b"[" * 100000, "bad_request", "400"),  # nested too deep for the JSON parser
        ("torua.api.cluster.explain", {"shard": 10**24}, "bad_request", "400"),
        ("torua.api.cluster.explain", {"shard": 99}, "bad_request", "400"),
        ("torua.api.cluster.node", {"node": "no-such-node"}, "unknown_node", "404"),
        ("torua.api.cluster.drain", {"node": "n1", "drain": "yes"}, "bad_request", "400"),
        ("torua.api.cluster.evacuate", {"node": "no-such-node"}, "unknown_node", "404"),
        ("torua.api.cluster.maintenance", {"nodes": ["n1", "no-such-node"], "maintenance": True}, "unknown_node", "404"),
        ("torua.api.cluster.assign", {"shard_id": "one", "node_id": "n1"}, "bad_request", "400"),
    ],
)
async def test_errors_carry_json_and_service_headers(shared_cluster, subject, payload, code, status):
    nc = await nats.connect(shared_cluster.nats_url)
    try:
        body, headers = await jreq(nc, subject, payload)
        assert body["error"]["code"] == code
        assert headers.get("Nats-Service-Error-Code") == status
        assert headers.get("Nats-Service-Error")
    finally:
        await nc.close()
    assert shared_cluster.request("GET", "/data/x")[0] == 404


async def test_the_operator_calls_answer_as_the_rest_api_does(shared_cluster):
    c = shared_cluster
    nc = await nats.connect(c.nats_url)
    try:
        node, _ = await jreq(nc, "torua.api.cluster.node", {"node": "n2"})
        same = ("id", "status", "shard_ids", "primaries", "pid", "version", "protocol", "max_shards")
        assert {k: node[k] for k in same} == {k: v for k, v in c.json("GET", "/nodes/n2")[1].items() if k in same}
        changed, _ = await jreq(nc, "torua.api.cluster.maintenance", {"nodes": ["n2", "n3"], "maintenance": True})
        assert [(n["id"], n["maintenance"], n["status"]) for n in changed["nodes"]] == [("n2", True, "maintenance"), ("n3", True, "maintenance")]
        assert c.json("GET", "/nodes/n3")[1]["maintenance"] is True
        changed, _ = await mreq(nc, "torua.api.cluster.maintenance", {"nodes": ["n2", "n3"], "maintenance": False})
        assert [(n["id"], n["maintenance"]) for n in changed["nodes"]] == [("n2", False), ("n3", False)]
        undrained, _ = await jreq(nc, "torua.api.cluster.drain", {"node": "n1", "drain": False})
        assert undrained["id"] == "n1" and undrained["draining"] is False
        kept, _ = await jreq(nc, "torua.api.cluster.evacuate", {"node": "n1", "evacuate": False})
        assert kept["id"] == "n1" and kept["evacuating"] is False
        shard = c.json("GET", "/shards")[1]["shards"][0]
        placed, _ = await jreq(nc, "torua.api.cluster.assign", {"shard_id": 0, "node_id": shard["primary"]})
        assert placed["status"] == "already_there"
    finally:
        await nc.close()
    assert all(not n["maintenance"] and n["status"] == "healthy" for n in c.json("GET", "/nodes")[1]["nodes"])


async def test_malformed_msgpack_is_400(shared_cluster):
    nc = await nats.connect(shared_cluster.nats_url)
    try:
        msg = await nc.request("torua.api.kv.get", b"\xc1\xc1\xc1", timeout=5)
        assert msgpack.unpackb(msg.data)["error"]["code"] == "bad_request"
    finally:
        await nc.close()


async def test_garbage_on_every_subject_is_survived(shared_cluster):
    c = shared_cluster
    nc = await nats.connect(c.nats_url)
    try:
        garbage = [b"", b"\xff\xfe\x00garbage", msgpack.packb([1, 2, 3]), msgpack.packb({"v": 99}), json.dumps({"v": 1}).encode()]
        subjects = [
            "torua.cluster.heartbeat",
            "torua.cluster.map",
            "torua.cluster.broadcast",
            "torua.coordinator.assign",
            "torua.coordinator.nodes",
        ] + [f"torua.node.n1.{call}" for call in ("kv", "assign", "shard.copy", "shard.freeze", "shard.drop", "shard.snapshot", "shard.log", "shard.catch_up", "shard.unfreeze")]
        for subject in subjects:
            for payload in garbage:
                await nc.publish(subject, payload)
        await nc.flush()
        # A node answers a bad KV request with a clear error instead of going silent.
        reply = decode(KvReply, (await nc.request("torua.node.n1.kv", b"\xc1", timeout=5)).data)
        assert not reply.ok and reply.error_code == "bad_request"
        versioned = encode(KvRequest("get", 0, 0, key="a")).replace(b"\xa1v\x01", b"\xa1v\x09")
        reply = decode(KvReply, (await nc.request("torua.node.n1.kv", versioned, timeout=5)).data)
        assert reply.error_code == "unsupported_version"
        shards = c.json("GET", "/shards")[1]
        shard, epoch = next(s["shard_id"] for s in shards["shards"] if s["primary"] == "n1"), shards["epoch"]
        for bad in (KvRequest("frobnicate", shard, epoch, key="a"), KvRequest("put", shard, epoch, key="", value=b"x"), KvRequest("put", shard, epoch, key="a")):
            reply = decode(KvReply, (await nc.request("torua.node.n1.kv", encode(bad), timeout=5)).data)
            assert not reply.ok and reply.error_code == "bad_request", (bad, reply)
        reply = decode(KvReply, (await nc.request("torua.node.n1.kv", encode(KvRequest("get", 999, epoch, key="a")), timeout=5)).data)
        assert reply.error_code == "unknown_shard"  # the node knows the cluster has no shard 999
        # Still serving everything.
        assert c.request("PUT", "/data/after-garbage", b"fine")[0] == 204
        assert c.request("GET", "/data/after-garbage")[1] == b"fine"
        assert all(p.alive() for p in c.group.procs)
        shards = c.json("GET", "/shards")[1]["shards"]
        assert all(s["state"] == "active" for s in shards)
    finally:
        await nc.close()
