"""API keys on a real cluster (gateways and nodes with keys on, a real nats-server):
every operation of /openapi.json answers 401 without a valid key and 403 outside a
key's role or tenant, over REST and the NATS API; torua.Client's one-hop requests
are held to the same rules by the nodes; a revoked key is refused everywhere
within a second; and the key store takes bad input without harm."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import msgpack
import nats
import pytest

from torua.api_keys import RANK
from torua.client import Client
from torua.protocol.errors import ToruaError
from tests.support.processes import Cluster, start_nats, wait_until

BOGUS = "torua_0123456789abcdef_" + "A" * 43
IN_SCOPE = {"key": "t1/sweep", "graph": "gx", "node_id": "ghost", "key_id": "0" * 16, "id": "v1", "job": "0"}
OUT_OF_SCOPE = {**IN_SCOPE, "key": "z/sweep", "graph": "gz"}
# bodies that keep the sweep harmless with a key allowed to call them
BODIES = {"/cluster/rebalance": {"dry_run": True}}


def http(base: str, method: str, path: str, token: str | None, body: bytes | None = None, content_type: str | None = None) -> tuple[int, dict, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            raw, status, got = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, got = err.read(), err.code, dict(err.headers)
    except urllib.error.URLError:  # nobody listening (yet)
        return 0, {}, None
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw
    return status, got, data


class Keys:
    """The secured cluster and a key of each kind, made through the API."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.tokens: dict[str, str] = {"admin": c.admin_token}
        self.ids: dict[str, str] = {}
        self.roles = {"admin": ("admin", None)}
        for name, role, scope in (
            ("read", "read", None), ("write", "write", None),
            ("tenant", "write", {"graphs": ["g1", "gx"], "prefixes": ["t1/"]}),
            ("tenant-admin", "admin", {"graphs": ["g1", "gx"], "prefixes": ["t1/"]}),
        ):
            status, made = c.json("POST", "/auth/keys", {"name": name, "role": role, **(scope or {})})
            assert status == 201, made
            assert made["token"].startswith(f"torua_{made['id']}_") and made["role"] == role and made["scope"] == scope
            self.tokens[name], self.ids[name] = made["token"], made["id"]
            self.roles[name] = (role, scope)
        for graph in ("g1", "g2"):
            assert c.json("PUT", f"/graphs/{graph}", {})[0] == 201


@pytest.fixture(scope="module")
def keys(module_group) -> Keys:
    _, url = start_nats(module_group)
    c = Cluster(module_group, url, shards=4).secure()
    trail = module_group.workdir / "audit.jsonl"
    c.extra_args = lambda who: ["--audit-log", str(trail)] if who == "gateway" else []
    c.start(nodes=2)
    return Keys(c)


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: urllib.request.quote(values[m.group(1)], safe=""), path)


def _request(op: dict, path: str, method: str, values: dict[str, str], prefix: str) -> tuple[str, bytes | None, str | None]:
    target = _fill(path, values)
    if op["x-torua-access"]["resource"] == "prefix":
        target += f"?prefix={prefix}"
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        return target, json.dumps(BODIES.get(path, {})).encode(), "application/json"
    if "application/x-ndjson" in content:
        return target, b"", "application/x-ndjson"
    if content:
        return target, b"x", "application/octet-stream"
    return target, None, None


def _forbidden(role: str, scope: Any, access: dict, in_scope: bool) -> bool:
    if access["role"] == "public":
        return False
    if RANK[role] < RANK[access["role"]]:
        return True
    if scope is None:
        return False
    return access["resource"] in ("cluster", "keys") or (not in_scope and access["resource"] in ("graph", "key", "prefix"))


def test_every_operation_of_the_openapi_document_answers_401_and_403_by_its_rule(keys):
    """Generated from /openapi.json (an operation without an access rule fails to load):
    each one, with no key, a bogus key, and each kind of key, on its own resource and on
    another tenant's."""
    base = keys.c.url
    status, _, doc = http(base, "GET", "/openapi.json", None)
    assert status == 200  # public
    assert http(base, "GET", "/health", None)[0] == 200  # public: a liveness probe
    checked = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            access = op["x-torua-access"]
            target, body, content_type = _request(op, path, method.upper(), IN_SCOPE, "t1/")
            if access["role"] == "public":
                assert op["security"] == [] and "401" not in op["responses"], path
                continue
            assert "401" in op["responses"] and "403" in op["responses"], (method, path)
            for token in (None, BOGUS, keys.tokens["admin"][:-1] + ("A" if keys.tokens["admin"][-1] != "A" else "B")):
                status, headers, data = http(base, method.upper(), target, token, body, content_type)
                assert status == 401 and data["error"]["code"] == "unauthorized", (method, path, token, data)
                assert headers.get("WWW-Authenticate") == 'Bearer realm="torua"'
            for name, (role, scope) in keys.roles.items():
                for values, prefix, in_scope in ((IN_SCOPE, "t1/", True), (OUT_OF_SCOPE, "z/", False)):
                    target, body, content_type = _request(op, path, method.upper(), values, prefix)
                    status, _, data = http(base, method.upper(), target, keys.tokens[name], body, content_type)
                    expected = _forbidden(role, scope, access, in_scope)
                    assert (status == 403) == expected and status != 401, (method, path, name, values, status, data)
                    if expected:
                        assert data["error"]["code"] == "forbidden" and "z/sweep" not in data["error"]["message"], data
                    checked += 1
    assert checked > 300


def _nats(url: str, subject: str, payload: dict, token: str | None) -> dict:
    async def ask() -> dict:
        nc = await nats.connect(url)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else None
            msg = await nc.request(subject, msgpack.packb(payload), timeout=10, headers=headers)
            return msgpack.unpackb(msg.data)
        finally:
            await nc.close()

    return asyncio.run(ask())


def test_the_nats_api_takes_the_same_keys_under_the_same_rules(keys):
    url = keys.c.nats_url
    from torua.access import RULES
    from torua.gateway.endpoints import ENDPOINTS

    for e in ENDPOINTS:
        if e.nats is None:
            continue
        rule, subject = RULES[e.name], f"torua.api.{e.nats}"
        assert _nats(url, subject, {}, None)["error"]["code"] == "unauthorized", subject
        assert _nats(url, subject, {}, BOGUS)["error"]["code"] == "unauthorized", subject
        if rule.role in ("write", "admin"):
            assert _nats(url, subject, {}, keys.tokens["read"])["error"]["code"] == "forbidden", subject
        if rule.resource in ("cluster", "keys"):
            assert _nats(url, subject, {}, keys.tokens["tenant-admin"])["error"]["code"] == "forbidden", subject
    tenant, admin = keys.tokens["tenant"], keys.tokens["admin"]
    assert "error" not in _nats(url, "torua.api.kv.put", {"key": "t1/n", "value": b"v"}, tenant)
    assert _nats(url, "torua.api.kv.get", {"key": "t1/n"}, tenant)["value"] == b"v"
    for subject, payload in (
        ("torua.api.kv.put", {"key": "z/n", "value": b"v"}), ("torua.api.kv.get", {"key": "z/n"}), ("torua.api.kv.list", {"prefix": ""}),
        ("torua.api.graph.get", {"graph": "g2"}), ("torua.api.graph.vertex.put", {"graph": "g2", "id": "a"}),
    ):
        assert _nats(url, subject, payload, tenant)["error"]["code"] == "forbidden", subject
    # a tenant sees its own graphs in the list, nothing of the others
    seen = {g["name"] for g in _nats(url, "torua.api.graph.list", {}, tenant)["graphs"]}
    assert "g1" in seen and seen <= {"g1", "gx"}
    assert {"g1", "g2"} <= {g["name"] for g in _nats(url, "torua.api.graph.list", {}, admin)["graphs"]}
    assert "error" not in _nats(url, "torua.api.kv.get", {"key": "t1/n"}, admin)


def test_the_clients_one_hop_requests_are_held_to_the_keys_rules_by_the_nodes(keys):
    """torua.Client sends key-value and vertex requests straight to the node: the node
    checks the key, as the gateway would."""
    url, tokens = keys.c.nats_url, keys.tokens

    async def run() -> None:
        async with Client(url, api_key=tokens["write"]) as writer, Client(url, api_key=tokens["read"]) as reader, \
                Client(url, api_key=tokens["tenant"]) as tenant, Client(url, api_key="") as nobody, Client(url, api_key=BOGUS) as bogus:
            for db in (writer, reader, tenant, nobody, bogus):
                await wait_async(db._direct, "the client to hold the map")  # noqa: SLF001 (one hop, so the node decides)
            await writer.put("shared/a", b"1")
            assert await reader.get("shared/a") == b"1"
            for db, call, code in (
                (reader, reader.put("shared/b", b"2"), "forbidden"),
                (reader, reader.delete("shared/a"), "forbidden"),
                (tenant, tenant.get("shared/a"), "forbidden"),
                (tenant, tenant.list("shared/"), "forbidden"),
                (nobody, nobody.get("shared/a"), "unauthorized"),
                (bogus, bogus.put("shared/a", b"x"), "unauthorized"),
                (tenant, tenant.graph("g2").put_vertex("a"), "forbidden"),
                (reader, reader.graph("g1").put_vertex("a"), "forbidden"),
            ):
                with pytest.raises(ToruaError) as err:
                    await call
                assert err.value.code == code, (db, code)
            assert await writer.get("shared/a") == b"1"  # nothing changed
            await tenant.put("t1/a", b"mine")
            assert await tenant.get("t1/a") == b"mine"
            assert "t1/a" in (await tenant.list("t1/"))[0]
            assert await tenant.graph("g1").put_vertex("a", label="Doc") is True
            assert (await reader.graph("g1").get_vertex("a"))["label"] == "Doc"

    asyncio.run(run())


async def wait_async(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_revoked_key_is_refused_by_every_gateway_and_node_within_a_second(keys):
    c = keys.c
    other = c.start_gateway(use=False)
    other_url = f"http://127.0.0.1:{other.argv[other.argv.index('--port') + 1]}"
    status, made = c.json("POST", "/auth/keys", {"name": "short-lived", "role": "write"})
    assert status == 201
    token = made["token"]
    wait_until(lambda: http(other_url, "PUT", "/data/rev", token, b"1")[0] == 204, 20, "the second gateway to take the new key")

    async def run() -> None:
        async with Client(c.nats_url, api_key=token) as db:
            await wait_async(db._direct, "the client to hold the map")  # noqa: SLF001 (one hop, so the node decides)
            await db.put("rev", b"2")
            status, revoked = await asyncio.to_thread(c.json, "DELETE", f"/auth/keys/{made['id']}")
            assert status == 200 and revoked["revoked"] and revoked["revoked_at"] is not None
            started = time.monotonic()
            gateway, node = 0, ""
            while gateway != 401 or node != "unauthorized":
                assert time.monotonic() - started < 1.0, f"still taken a second after the revocation: gateway {gateway}, node {node}"
                gateway = (await asyncio.to_thread(http, other_url, "GET", "/data/rev", token))[0]
                try:
                    await db.get("rev")
                    node = "ok"
                except ToruaError as exc:
                    node = exc.code
                await asyncio.sleep(0.02)
            with pytest.raises(ToruaError) as err:
                await db.put("rev", b"3")
            assert err.value.code == "unauthorized"
            # revoking again is a no-op; an unknown id is a 404
            assert await asyncio.to_thread(c.json, "DELETE", f"/auth/keys/{made['id']}") == (200, revoked)

    asyncio.run(run())
    assert c.request("GET", "/data/rev")[1] == b"2"  # the refused write changed nothing
    assert c.json("DELETE", "/auth/keys/" + "f" * 16)[0] == 404
    assert http(other_url, "GET", "/data/rev", keys.tokens["read"])[0] == 200  # the others still work


def test_the_key_store_lists_without_secrets_and_refuses_bad_keys_without_harm(keys):
    c = keys.c
    status, listed = c.json("GET", "/auth/keys")
    assert status == 200
    by_name = {k["name"]: k for k in listed["keys"]}
    assert {"admin", "read", "write", "tenant", "tenant-admin"} <= set(by_name)
    text = json.dumps(listed)
    assert all(token not in text for token in keys.tokens.values()) and "secret" not in text
    assert by_name["tenant"]["scope"] == {"graphs": ["g1", "gx"], "prefixes": ["t1/"]}
    for body in ({"name": "x", "role": "root"}, {"name": "", "role": "read"}, {"role": "read"}, {"name": "x", "role": "read", "prefixes": [""]},
                 {"name": "x", "role": "read", "secret": "mine"}):
        status, refused = c.json("POST", "/auth/keys", body)
        assert status == 400 and refused["error"]["code"] == "bad_request", (body, refused)
    assert len(c.json("GET", "/auth/keys")[1]["keys"]) == len(listed["keys"])  # nothing made

    async def garbage() -> None:  # a record nobody can read, written straight into the bucket
        nc = await nats.connect(c.nats_url)
        try:
            await (await nc.jetstream().key_value("torua_keys")).put("ffffffffffffffff", b"\xff not json")
        finally:
            await nc.close()

    asyncio.run(garbage())
    wait_until(lambda: "ignoring a malformed entry 'ffffffffffffffff'" in c.gateway.log_path.read_text(), 10, "the gateway to see the record")
    assert http(c.url, "GET", "/cluster/health", keys.tokens["read"])[0] == 200  # every other key still works
    assert http(c.url, "GET", "/cluster/health", "torua_ffffffffffffffff_" + "a" * 43)[0] == 401
    assert c.json("DELETE", "/auth/keys/ffffffffffffffff")[0] == 404  # an unreadable record is no key


def test_the_audit_trail_names_the_key_that_asked(keys):
    c = keys.c
    assert c.json("POST", "/cluster/rebalance", {"dry_run": True})[0] == 200
    assert http(c.url, "POST", "/cluster/rebalance", keys.tokens["write"], b"{}", "application/json")[0] == 403
    trail = c.group.workdir / "audit.jsonl"
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    made = [r for r in records if r["op"] == "auth_create" and r["outcome"] == "ok"]
    assert made and all(r["who"].startswith(f"admin ({keys.c.admin_token.split('_')[1]}) from 127.0.0.1") for r in made)
    assert not any(token in trail.read_text() for token in keys.tokens.values())
    assert any(r["op"] == "rebalance" and r["who"].startswith("admin (") and r["outcome"] == "ok" for r in records)
    refused = [r for r in records if r["op"] == "rebalance" and r["outcome"] == "forbidden"]
    assert refused and refused[-1]["who"] == f"write ({keys.ids['write']}) from 127.0.0.1"
    assert any(r["outcome"] == "unauthorized" and r["who"] == "127.0.0.1" for r in records)  # the sweep's calls without a key


def test_a_keys_rate_and_request_size_are_held_by_the_gateway_and_the_nodes(keys):
    """A key made with a rate gets 429 with Retry-After beyond it (REST, NATS API, one
    hop to a node), and with max_bytes 413 for a larger request; nothing changes."""
    c = keys.c
    status, slow = c.json("POST", "/auth/keys", {"name": "slow", "role": "write", "rate": 0.05})  # one request each 20 s
    assert status == 201 and slow["rate"] == 0.05
    token = slow["token"]
    assert http(c.url, "GET", "/cluster/health", token)[0] == 200  # a burst of one
    status, headers, data = http(c.url, "PUT", "/data/rate/x", token, b"v")
    assert status == 429 and data["error"]["code"] == "too_many_requests" and int(headers["Retry-After"]) >= 1, (status, data)
    assert c.request("GET", "/data/rate/x")[0] == 404  # the refused write changed nothing
    # the NATS API's queue group may pick another gateway, which counts on its own: of three
    # requests over at most two gateways (this one's single request is spent), one is refused
    codes = [_nats(c.nats_url, "torua.api.kv.get", {"key": "rate/x"}, token)["error"]["code"] for _ in range(3)]
    assert "too_many_requests" in codes and set(codes) <= {"too_many_requests", "not_found"}, codes

    async def one_hop(tok: str) -> list[str]:
        codes = []
        async with Client(c.nats_url, api_key=tok) as db:
            await wait_async(db._direct, "the client to hold the map")  # noqa: SLF001 (one hop, so the node decides)
            for value in (b"1", b"2"):
                try:
                    await db.put("rate/one-hop", value)
                    codes.append("ok")
                except ToruaError as exc:
                    codes.append(exc.code)
        return codes

    # the node holding the key counts the key's requests on its own: one goes, the next is refused
    assert asyncio.run(one_hop(token)) == ["ok", "too_many_requests"]
    assert c.request("GET", "/data/rate/one-hop")[1] == b"1"

    status, small = c.json("POST", "/auth/keys", {"name": "small", "role": "write", "max_bytes": 64})
    assert status == 201 and small["max_bytes"] == 64
    token = small["token"]
    assert http(c.url, "PUT", "/data/size/ok", token, b"x" * 64)[0] == 204
    status, _, data = http(c.url, "PUT", "/data/size/big", token, b"x" * 65)
    assert status == 413 and data["error"]["code"] == "value_too_large", data
    assert c.request("GET", "/data/size/big")[0] == 404
    assert _nats(c.nats_url, "torua.api.kv.put", {"key": "size/big", "value": b"x" * 80}, token)["error"]["code"] == "value_too_large"

    async def big_one_hop() -> str:
        async with Client(c.nats_url, api_key=token) as db:
            await wait_async(db._direct, "the client to hold the map")  # noqa: SLF001
            try:
                await db.put("size/big", b"x" * 65)
                return "ok"
            except ToruaError as exc:
                return exc.code

    assert asyncio.run(big_one_hop()) == "value_too_large"
    assert c.request("GET", "/data/size/big")[0] == 404
    for body in ({"name": "x", "role": "read", "rate": 0}, {"name": "x", "role": "read", "rate": -1}, {"name": "x", "role": "read", "max_bytes": 0}):
        assert c.json("POST", "/auth/keys", body)[0] == 400, body


def test_torua_auth_makes_lists_and_revokes_keys_and_says_what_it_may_not(keys):
    import os
    import subprocess

    from torua.cli.up import torua_command

    c = keys.c

    def torua(*args: str, key: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "TORUA_API_KEY": key, "TORUA_NATS_URL": c.nats_url}
        return subprocess.run(torua_command() + ["auth", *args], capture_output=True, text=True, timeout=60, env=env)

    made = torua("create", "cli-made", "--role", "read", "--prefix", "cli/", "--rate", "100", key=c.admin_token)
    assert made.returncode == 0 and "its token is shown this once" in made.stderr, made
    token = made.stdout.strip()
    assert http(c.url, "GET", "/data?prefix=cli/", token)[0] == 200
    listed = torua("list", key=c.admin_token)
    key_id = token.split("_")[1]
    line = next(line for line in listed.stdout.splitlines() if line.startswith(key_id))
    assert "read" in line and "active" in line and "cli-made" in line and "prefixes=cli/" in line and "rate=100" in line, line
    assert token not in listed.stdout
    refused = torua("create", "sneaky", "--role", "admin", key=token)
    assert refused.returncode == 1 and refused.stderr.startswith("torua auth: forbidden: API key 'cli-made' has role read"), refused
    assert torua("revoke", key_id, key=c.admin_token).returncode == 0
    assert "revoked" in next(line for line in torua("list", key=c.admin_token).stdout.splitlines() if line.startswith(key_id))
    assert http(c.url, "GET", "/data?prefix=cli/", token)[0] == 401
    unknown = torua("revoke", "f" * 16, key=c.admin_token)
    assert unknown.returncode == 1 and "torua auth: not_found" in unknown.stderr, unknown
