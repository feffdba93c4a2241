"""Steps about where keys live, the shard and node views, node failure and a node joining."""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from behave import given, then, when

from torua.keys import shard_for_key
from torua_bdd import Gateway, Seen, generated_value, node_kv_get, wait_until


def names(text: str) -> list[str]:
    """"n1, n2, n3 and n4" -> ["n1", "n2", "n3", "n4"]."""
    return [n for n in re.split(r"\s*,\s*|\s+and\s+", text.strip()) if n]


def healthy_nodes(gateway) -> set[str]:
    return {n["id"] for n in gateway.nodes() if n["status"] == "healthy"}


def locations_of(context) -> dict[str, dict]:
    """Where each key of the scenario lives, as the gateway says (asked once per scenario)."""
    if getattr(context, "locations", None) is None or set(context.locations) != set(context.keys):
        context.locations = {key: context.gateway.location(key) for key in context.keys}
    return context.locations


def shards_of(shards_view: dict, node_id: str) -> list[int]:
    return sorted(s["shard_id"] for s in shards_view["shards"] if s["primary"] == node_id)


# ------------------------------------------------------------------ cluster


@given("a running Torua cluster")
def step_running_cluster(context):
    health = context.gateway.health()
    assert health["status"] == "green", f"the cluster is not green: {health}"
    assert health["shards_unassigned"] == 0, f"unassigned shards: {health}"
    context.locations = None


@then("the cluster health becomes green")
def step_becomes_green(context):
    wait_until(lambda: context.gateway.health()["status"] == "green" or Seen(context.gateway.health()), 60, "cluster health green")


# ------------------------------------------------------------ where keys live


@then("the locations of those keys cover at least {least:d} of the {total:d} shards")
def step_cover_shards(context, least, total):
    assert context.gateway.shards()["num_shards"] == total
    shards = {loc["shard_id"] for loc in locations_of(context).values()}
    assert all(0 <= s < total for s in shards), f"shard ids out of range: {sorted(shards)}"
    assert len(shards) >= least, f"{len(context.keys)} keys landed on only {len(shards)} shards: {sorted(shards)}"


@then("every node holds some of those keys")
def step_every_node_holds(context):
    nodes = healthy_nodes(context.gateway)
    holders = Counter(loc["primary"] for loc in locations_of(context).values())
    assert set(holders) == nodes, f"keys per node {dict(holders)}; healthy nodes {sorted(nodes)}"


@when("I ask for the location of each of these keys {times:d} times:")
def step_ask_locations(context, times):
    context.asked = {row["key"]: [context.gateway.location(row["key"]) for _ in range(times)] for row in context.table}


@then("every key gets the same shard and node each time")
def step_same_each_time(context):
    for key, answers in context.asked.items():
        assert all(a["key"] == key for a in answers), f"{key!r}: location names another key: {answers}"
        seen = {(a["shard_id"], a["primary"]) for a in answers}
        assert len(seen) == 1, f"{key!r} routed differently across asks: {seen}"


@then("each key's shard is the one shard_for_key computes for {num_shards:d} shards")
def step_shard_for_key(context, num_shards):
    assert context.gateway.shards()["num_shards"] == num_shards
    for key, answers in context.asked.items():
        assert answers[0]["shard_id"] == shard_for_key(key, num_shards), f"{key!r}: gateway says shard {answers[0]['shard_id']}, shard_for_key says {shard_for_key(key, num_shards)}"


@then("each key's node is the primary that /shards names for that shard")
def step_node_is_primary(context):
    by_id = {s["shard_id"]: s for s in context.gateway.shards()["shards"]}
    for key, answers in context.asked.items():
        shard = by_id[answers[0]["shard_id"]]
        assert answers[0]["primary"] == shard["primary"], f"{key!r}: location says {answers[0]['primary']}, /shards says {shard}"


# ---------------------------------------------------------------- node failure


@given("some of those keys live on node {node} and some on other nodes")
def step_split_keys(context, node):
    locations = locations_of(context)
    context.on_node = [k for k, loc in locations.items() if loc["primary"] == node]
    context.elsewhere = [k for k, loc in locations.items() if loc["primary"] != node]
    view = context.gateway.shards()
    context.node_shards = shards_of(view, node)
    context.node_copies = sorted(s["shard_id"] for s in view["shards"] if node in [s["primary"], *s["replicas"]])
    assert context.on_node and context.elsewhere, f"{len(context.on_node)} keys on {node}, {len(context.elsewhere)} elsewhere"
    assert {locations[k]["shard_id"] for k in context.on_node} <= set(context.node_shards)


@when("the process of node {node} is killed with SIGKILL")
def step_kill_node(context, node):
    context.cluster.kill_node(node)


@then("node {node} turns unhealthy in /nodes")
def step_turns_unhealthy(context, node):
    def unhealthy():
        info = context.gateway.get_json(f"/nodes/{node}")
        return info["status"] == "unhealthy" or Seen(info)

    wait_until(unhealthy, 30, f"node {node} to be unhealthy")


@then('/shards still names {node} as the primary of the shards it held, in state "{state}"')
def step_still_names(context, node, state):
    def marked():
        view = context.gateway.shards()
        mine = [s for s in view["shards"] if s["shard_id"] in context.node_shards]
        return all(s["state"] == state for s in mine) and view or Seen(mine)

    view = wait_until(marked, 30, f"{node}'s shards {context.node_shards} to be {state}")
    assert shards_of(view, node) == context.node_shards, f"{node} held {context.node_shards}, /shards now gives it {shards_of(view, node)}: {view}"


@then("every one of those keys on another node reads back its value")
def step_elsewhere_reads(context):
    for key in context.elsewhere:
        resp = context.gateway.get(key)
        assert (resp.status, resp.body) == (200, context.written[key]), f"GET {key!r} (on {context.locations[key]['primary']}): {resp!r}"


@then("every one of those keys on {node} answers 503 with a Retry-After header, never 404")
def step_dead_node_keys(context, node):
    # read at once, 8 at a time: the gateway holds each such read a quarter second for a
    # newer map (a failover may be on its way) before it answers 503
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(context.gateway.get, context.on_node))
    for key, resp in zip(context.on_node, answers):
        assert resp.status == 503, f"GET {key!r} on dead {node}: expected 503, got {resp!r}"
        assert resp.headers.get("Retry-After"), f"GET {key!r}: 503 without Retry-After: {dict(resp.headers)}"
        assert resp.error_code() == "unavailable", f"GET {key!r}: expected error code 'unavailable', got {resp!r}"


@when("node {node} is started again with the same command line")
def step_restart_node(context, node):
    context.cluster.restart_node(node)


# ---------------------------------------------------------------- node joining


@when("node {node} is started by hand against the cluster's NATS")
def step_start_node(context, node):
    assert context.cluster.node_process(node) is None, f"node {node} already runs"
    context.cluster.start_node(node)


@then("node {node} appears in /nodes as healthy")
def step_appears_healthy(context, node):
    def healthy():
        resp = context.gateway.request("GET", f"/nodes/{node}")
        return resp.status == 200 and resp.json()["status"] == "healthy" or Seen(resp)

    wait_until(healthy, 30, f"node {node} to be healthy")
    assert node in healthy_nodes(context.gateway)


@then("node {node} is given shards")
def step_given_shards(context, node):
    def has_shards():
        info = context.gateway.get_json(f"/nodes/{node}")
        return info["shards"] > 0 or Seen(info)

    wait_until(has_shards, 60, f"node {node} to be given shards")


@then("once no move is in progress, the shard counts of nodes {node_names} differ by at most {spread:d}")
def step_balanced(context, node_names, spread):
    expected = set(names(node_names))

    def balanced():
        info = context.gateway.info()
        view = context.gateway.shards()
        counts = {n: len(shards_of(view, n)) for n in expected}
        others = {s["primary"] for s in view["shards"]} - expected
        moving = [s["shard_id"] for s in view["shards"] if s["state"] != "active"]
        if info.get("moves") or moving or others or max(counts.values()) - min(counts.values()) > spread:
            return Seen({"moves": info.get("moves"), "not active": moving, "counts": counts, "other holders": others})
        return counts

    counts = wait_until(balanced, 120, f"no move in progress and shard counts of {sorted(expected)} within {spread}")
    assert healthy_nodes(context.gateway) == expected, f"healthy nodes {healthy_nodes(context.gateway)}"
    assert sum(counts.values()) == context.gateway.shards()["num_shards"], counts


# ---------------------------------------------------------- routing is invisible


@given("the client knows only the gateway's URL")
def step_client_url(context):
    context.client = Gateway(context.gateway.base_url, context.gateway.api_key)


@when("it stores a key held by each node through that URL")
def step_store_on_each_node(context):
    client = context.client
    nodes = healthy_nodes(client)
    chosen: dict[str, str] = {}
    for i in range(1000):
        key = f"invisible/{i}"
        holder = client.location(key)["primary"]
        chosen.setdefault(holder, key)
        if set(chosen) >= nodes:
            break
    assert set(chosen) == nodes, f"found keys for {sorted(chosen)} only, nodes are {sorted(nodes)}"
    context.keys = sorted(chosen.values())
    context.responses = {}
    for key in context.keys:
        context.written[key] = generated_value(key)
        context.responses[key] = client.put(key, context.written[key])


@then("every store is accepted")
def step_every_store_accepted(context):
    for key, resp in context.responses.items():
        assert resp.status == 204, f"PUT {key!r}: {resp!r}"


@then("reading each of those keys through that URL returns its value")
def step_read_through_url(context):
    for key in context.keys:
        resp = context.client.get(key)
        assert (resp.status, resp.body) == (200, context.written[key]), f"GET {key!r}: {resp!r}"


# ------------------------------------------------------------------ views


@when("I ask for /shards")
def step_ask_shards(context):
    context.shards_view = context.gateway.shards()


@then("it lists {count:d} shards, numbered 0 to {last:d}, each once")
def step_lists_shards(context, count, last):
    view = context.shards_view
    assert view["num_shards"] == count, view
    assert last == count - 1
    ids = [s["shard_id"] for s in view["shards"]]
    assert sorted(ids) == list(range(count)), f"shard ids {ids}"
    assert isinstance(view["epoch"], int) and view["epoch"] > 0, view["epoch"]


@then("every shard is active and names as its primary a node that /nodes shows healthy")
def step_every_shard_active(context):
    nodes = healthy_nodes(context.gateway)
    for s in context.shards_view["shards"]:
        assert s["state"] == "active", s
        assert s["primary"] in nodes, f"shard {s['shard_id']} names {s['primary']!r}; healthy nodes {sorted(nodes)}"


@when("I ask for /nodes")
def step_ask_nodes(context):
    context.nodes_view = context.gateway.nodes()
    context.shards_view = context.gateway.shards()


@then("it lists nodes {node_names} as healthy")
def step_lists_nodes(context, node_names):
    status = {n["id"]: n["status"] for n in context.nodes_view}
    for node in names(node_names):
        assert status.get(node) == "healthy", f"{node}: {status.get(node)!r} in {status}"


@then("each node's shard count and shard ids match the shards /shards gives it")
def step_counts_match(context):
    for n in context.nodes_view:
        mine = shards_of(context.shards_view, n["id"])
        assert n["shards"] == len(mine), f"{n['id']}: /nodes says {n['shards']} shards, /shards gives it {mine}"
        assert sorted(n["shard_ids"]) == mine, f"{n['id']}: /nodes says {n['shard_ids']}, /shards gives it {mine}"
    assert sum(n["shards"] for n in context.nodes_view) == context.shards_view["num_shards"]


@when("I ask for /nodes/{node}")
def step_ask_node(context, node):
    context.response = context.gateway.request("GET", f"/nodes/{node}")


@then("it describes node {node} as healthy with the shards /shards gives it")
def step_describes_node(context, node):
    resp = context.response
    assert resp.status == 200, resp
    info = resp.json()
    mine = shards_of(context.gateway.shards(), node)
    assert info["id"] == node, info
    assert info["status"] == "healthy", info
    assert info["shards"] == len(mine) and sorted(info["shard_ids"]) == mine, f"{info} vs /shards {mine}"
    assert info["last_heartbeat"] is not None, info


@then('its pid is the pid of the running "torua node --id {node}" process')
def step_pid(context, node):
    proc = context.cluster.require_node_process(node)
    assert context.response.json()["pid"] == proc.pid, f"/nodes/{node} says pid {context.response.json()['pid']}, the process is {proc.pid}: {proc.cmdline()}"


@then("asking for /nodes/{node} answers 404 with a JSON error")
def step_node_404(context, node):
    resp = context.gateway.request("GET", f"/nodes/{node}")
    assert resp.status == 404, resp
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp
    error = resp.json()["error"]
    assert error["code"] and error["message"], resp


# ------------------------------------------------------- the gateway routes right


@when("I ask the gateway where each of those keys lives")
def step_ask_where(context):
    context.locations = None
    locations_of(context)


@then("the node it names answers a get for the key on its own NATS subject with the stored value")
def step_named_node_answers(context):
    asks = [(loc["primary"], loc["shard_id"], loc["epoch"], key) for key, loc in context.locations.items()]
    for (node, shard, _, key), reply in zip(asks, node_kv_get(context.cluster.nats_url, asks)):
        assert reply.ok and reply.found, f"{node} for {key!r} (shard {shard}): {reply}"
        assert reply.value == context.written[key], f"{node} for {key!r}: {reply.value!r}"


@then('every other node answers that get with error code "{code}"')
def step_other_nodes_refuse(context, code):
    nodes = healthy_nodes(context.gateway)
    asks = [
        (node, loc["shard_id"], loc["epoch"], key)
        for key, loc in context.locations.items()
        for node in sorted(nodes - {loc["primary"]})
    ]
    assert asks
    for (node, shard, _, key), reply in zip(asks, node_kv_get(context.cluster.nats_url, asks)):
        assert not reply.ok and reply.error_code == code, f"{node} for {key!r} (shard {shard}): expected {code!r}, got {reply}"
