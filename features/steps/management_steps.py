"""Steps an operator takes: balance over every node, the cluster and node info
APIs, run-time settings and the broadcast, metrics, capacity limits, maintenance,
evacuation, load rebalancing and a rolling restart."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any
from itertools import count

from behave import given, then, when

from torua.keys import shard_for_key
from torua.protocol import subjects
from torua_bdd import Seen, generated_value, kv_get, wait_until
from cluster_steps import healthy_nodes, names, shards_of
from coordinator_steps import stored_map
from replication_steps import copies_of

# Deadlines, not expectations.
MOVES_TIMEOUT = 120
EVACUATE_TIMEOUT = 120
RESTART_TIMEOUT = 90


# ------------------------------------------------------------------ reading


def copies_per_node(view: dict, nodes: list[str]) -> dict[str, int]:
    """Copies (primary or replica) each of `nodes` holds; 0 for a node holding none."""
    held = Counter(n for s in view["shards"] for n in copies_of(s) if n)
    return {n: held.get(n, 0) for n in nodes}


def primaries_per_node(view: dict, nodes: list[str]) -> dict[str, int]:
    held = Counter(s["primary"] for s in view["shards"] if s["primary"])
    return {n: held.get(n, 0) for n in nodes}


def no_move_running(context) -> Seen | bool:
    """No move running or queued, and every shard whole: its copies (replication_factor
    of them) all in sync. With replicas a copy moves by adding one and dropping another."""
    info = context.gateway.info()
    view = context.gateway.shards()
    rf = view["replication_factor"]
    moving = [
        s["shard_id"] for s in view["shards"]
        if s["state"] != "active" or s.get("target") or len(copies_of(s)) != rf or sorted(s["in_sync"]) != sorted(copies_of(s))
    ]
    if info.get("moves") or moving:
        return Seen({"moves": info.get("moves"), "not settled": moving})
    return True


def balance_problems(context, nodes: list[str]) -> dict:
    """Where copies or primaries per node differ by more than 1 over `nodes` (all of
    them, empty ones too), or a node holds more than its max_shards. A node at its
    max_shards may hold fewer than the others: it is full."""
    view = context.gateway.shards()
    caps = {n["id"]: n["max_shards"] for n in context.gateway.nodes()}
    copies = copies_per_node(view, nodes)
    primaries = primaries_per_node(view, nodes)
    problems = {}
    over = {n: held for n, held in copies.items() if caps.get(n) and held > caps[n]}
    if over:
        problems["above max_shards"] = over
    roomy = [held for n, held in copies.items() if not caps.get(n) or held < caps[n]]
    if roomy and max(copies.values()) - min(roomy) > 1:
        problems["copies"] = copies
    if max(primaries.values()) - min(primaries.values()) > 1:
        problems["primaries"] = primaries
    return problems


def serving_nodes(context) -> list[str]:
    """Every node /nodes lists that may hold copies: healthy, not draining, evacuated or in maintenance."""
    out = []
    for n in context.gateway.nodes():
        if n["health"] == "healthy" and not n["draining"] and not n.get("maintenance") and not n.get("evacuating"):
            out.append(n["id"])
    return sorted(out)


# ------------------------------------------------------------------ balance


@then("the copies per node differ by at most 1 over every node in /nodes, and so do the primaries")
def step_balanced_everywhere(context):
    nodes = serving_nodes(context)
    assert sorted(n["id"] for n in context.gateway.nodes()) == nodes, f"some nodes may not hold copies: {context.gateway.nodes()}"
    problems = balance_problems(context, nodes)
    assert not problems, f"unbalanced over {nodes}: {problems}"


@then("once no move is in progress, the copies per node differ by at most 1 over every node in /nodes")
def step_copies_balanced_when_settled(context):
    settle_balanced(context, primaries=False)


@then("once no move is in progress, the copies per node differ by at most 1 over every node in /nodes, and so do the primaries")
def step_balanced_when_settled(context):
    settle_balanced(context, primaries=True)


def settle_balanced(context, primaries: bool) -> None:
    def settled_and_balanced():
        running = no_move_running(context)
        if not running:
            return running
        nodes = serving_nodes(context)
        problems = balance_problems(context, nodes)
        if not primaries:
            problems.pop("primaries", None)
        return (not problems and nodes) or Seen(problems)

    what = "copies and primaries" if primaries else "copies"
    nodes = wait_until(settled_and_balanced, MOVES_TIMEOUT, f"no move in progress and {what} within 1 over every node")
    context.shards_view = context.gateway.shards()
    assert sorted(n["id"] for n in context.gateway.nodes()) == nodes, f"some nodes may not hold copies: {context.gateway.nodes()}"


# ------------------------------------------------------------------ info APIs


@then("it gives the cluster id of the shard map in JetStream")
def step_cluster_id(context):
    stored, _ = stored_map(context.cluster)
    assert stored.cluster_id and context.info["cluster_id"] == stored.cluster_id, f"/cluster/info {context.info['cluster_id']!r}, JetStream {stored.cluster_id!r}"


@then("it counts {nodes:d} nodes, {healthy:d} of them healthy, and {shards:d} shards, {assigned:d} of them assigned")
def step_counts(context, nodes, healthy, shards, assigned):
    info = context.info
    seen = {k: info[k] for k in ("nodes_total", "nodes_healthy", "shards_total", "shards_assigned")}
    assert seen == {"nodes_total": nodes, "nodes_healthy": healthy, "shards_total": shards, "shards_assigned": assigned}, seen
    assert len(context.gateway.nodes()) == nodes


@then("its health is green, as /cluster/health says")
def step_info_health(context):
    assert context.info["health"] == "green", context.info
    assert context.gateway.health()["status"] == "green"


@then("it lists the versions in use, every node's version among them")
def step_versions(context):
    versions = set(context.info["versions"])
    for n in context.gateway.nodes():
        assert n["version"] and n["version"] in versions, f"{n['id']} runs {n['version']!r}; /cluster/info lists {sorted(versions)}"


@then("its uptime is above 0 seconds")
def step_uptime(context):
    assert context.info["uptime_seconds"] > 0, context.info


@then("it describes node {node} as healthy, holding the copies /shards gives it")
def step_describes_node_copies(context, node):
    resp = context.response
    assert resp.status == 200, resp
    info = resp.json()
    view = context.gateway.shards()
    held = sorted(s["shard_id"] for s in view["shards"] if node in copies_of(s))
    assert info["id"] == node and info["status"] == "healthy", info
    assert info["shards"] == len(held) and sorted(info["shard_ids"]) == held, f"{info} vs copies in /shards {held}"
    assert sorted(info["primaries"]) == shards_of(view, node), info


@then("it gives the node's address, version, uptime, last heartbeat and capacity")
def step_node_details(context):
    info = context.response.json()
    for field in ("host", "version", "uptime_seconds", "last_heartbeat", "capacity"):
        assert field in info, f"/nodes/{info['id']} has no {field!r}: {info}"
    assert info["host"] and info["version"] and info["last_heartbeat"], info
    assert info["uptime_seconds"] > 0, info
    capacity = info["capacity"]
    assert capacity["shards"] == info["shards"] and "max_shards" in capacity, capacity
    assert capacity["disk_total_bytes"] > 0 and 0 <= capacity["disk_used_bytes"] <= capacity["disk_total_bytes"], capacity
    assert capacity["disk_level"] in ("ok", "above_low", "above_high"), capacity


@then('/nodes/{node} gives the pid of the running "torua node --id {same}" process and its version')
def step_node_pid_version(context, node, same):
    info = context.gateway.get_json(f"/nodes/{node}")
    proc = context.cluster.require_node_process(same)
    assert info["pid"] == proc.pid, f"/nodes/{node} says pid {info['pid']}, the process is {proc.pid}"
    assert info["version"], info


# ------------------------------------------------------------------ settings


SETTING_WORDS = {"a heartbeat interval of": "heartbeat_interval", "concurrent moves": "max_moves"}


def put_config(context, change: dict) -> None:
    context.response = context.gateway.request("PUT", "/cluster/config", json.dumps(change).encode(), {"Content-Type": "application/json"})


@when("I ask for /cluster/config")
def step_ask_config(context):
    context.cluster_config = context.gateway.get_json("/cluster/config")
    context.original_settings = dict(context.cluster_config["settings"])


@then("it gives every setting with its value")
def step_every_setting(context):
    settings = context.cluster_config["settings"]
    for name in ("heartbeat_interval", "unhealthy_after", "node_left_delay", "max_moves", "replication_factor", "log_level"):
        assert name in settings, f"no {name} in {settings}"
    assert settings["replication_factor"] == 2, settings


@when("I change the settings to a heartbeat interval of {seconds:g} s and {moves:d} concurrent moves")
def step_change_settings(context, seconds, moves):
    put_config(context, {"heartbeat_interval": seconds, "max_moves": moves})


@when('I change the settings to an unhealthy threshold of "{value}"')
def step_bad_threshold(context, value):
    put_config(context, {"unhealthy_after": value})


@when("I change the settings to a low disk watermark of {low:g} and a high one of {high:g}")
def step_bad_watermarks(context, low, high):
    put_config(context, {"disk_low_watermark": low, "disk_high_watermark": high})


@when("I change the settings back to what they were")
def step_change_back(context):
    original = context.original_settings
    put_config(context, {"heartbeat_interval": original["heartbeat_interval"], "max_moves": original["max_moves"]})


@then("the change is accepted and acknowledged by every node")
def step_change_accepted(context):
    resp = context.response
    assert resp.status == 200, resp
    body = resp.json()
    nodes = sorted(n["id"] for n in context.gateway.nodes())
    assert sorted(body["applied_by"]) == nodes and not body["missing"], f"acknowledged by {body['applied_by']}, missing {body['missing']}; nodes {nodes}"


@then("/cluster/config shows a heartbeat interval of {seconds:g} s and {moves:d} concurrent moves")
def step_config_shows(context, seconds, moves):
    settings = context.gateway.get_json("/cluster/config")["settings"]
    assert settings["heartbeat_interval"] == seconds and settings["max_moves"] == moves, settings


@then('the settings in JetStream (bucket "torua_cluster") say the same')
def step_config_stored(context):
    record = kv_get(context.cluster.nats_url, subjects.CLUSTER_BUCKET, subjects.CONFIG_KEY)
    assert record is not None, f"no {subjects.CONFIG_KEY} in {subjects.CLUSTER_BUCKET}"
    stored = json.loads(record.value)
    shown = context.gateway.get_json("/cluster/config")["settings"]
    assert {k: stored.get(k) for k in shown} == shown, f"JetStream {stored} vs /cluster/config {shown}"


@then("every node now sends its heartbeats about every {seconds:g} s")
def step_heartbeat_interval(context, seconds):
    """Each node's last_heartbeat, sampled for a while, advances in steps near the new interval
    (the old one, 0.25 s, would show steps half as long)."""
    nodes = [n["id"] for n in context.gateway.nodes()]
    beats: dict[str, set[str]] = {n: set() for n in nodes}

    def enough_beats():
        for n in context.gateway.nodes():
            beats[n["id"]].add(n["last_heartbeat"])
        return all(len(b) >= 5 for b in beats.values()) or Seen({n: len(b) for n, b in beats.items()})

    wait_until(enough_beats, 30, "five heartbeats from every node", interval=0.05)
    from datetime import datetime

    for node, stamps in beats.items():
        times = sorted(datetime.fromisoformat(s).timestamp() for s in stamps)
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        median = gaps[len(gaps) // 2]
        assert seconds * 0.6 <= median <= seconds * 2, f"{node}: median gap between heartbeats {median:.2f} s, expected about {seconds} s ({gaps})"


@then('the change is refused with 400 and error code "{code}", naming {setting}')
def step_change_refused(context, code, setting):
    resp = context.response
    assert resp.status == 400 and resp.error_code() == code, resp
    assert setting in resp.json()["error"]["message"], resp


@when("I broadcast a ping to the nodes")
def step_broadcast(context):
    context.response = context.gateway.request("POST", "/broadcast", json.dumps({"kind": "ping"}).encode(), {"Content-Type": "application/json"})


@then("every node answers it")
def step_every_node_answers(context):
    resp = context.response
    assert resp.status == 200, resp
    body = resp.json()
    answered = sorted(r["node_id"] for r in body["replies"] if r["ok"])
    assert answered == sorted(n["id"] for n in context.gateway.nodes()) and not body["missing"], body


# ------------------------------------------------------------------ metrics


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """Samples of a Prometheus text page: (name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample_sum(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == str(x) for k, x in labels.items()))


@given("I note the gateway's metrics")
def step_note_metrics(context):
    context.metrics_before = scrape(context.gateway.base_url + "/metrics", context.gateway.auth)


@then("the gateway's metrics count {more:d} more PUT requests answered 204")
def step_put_counted(context, more):
    after = scrape(context.gateway.base_url + "/metrics", context.gateway.auth)
    name = "torua_gateway_http_requests_total"
    grew = sample_sum(after, name, op="put", status=204) - sample_sum(context.metrics_before, name, op="put", status=204)
    assert grew == more, f"{name}{{op=put,status=204}} grew by {grew}, expected {more}"
    context.metrics_after = after


@then("they have a latency histogram for PUT requests")
def step_latency_histogram(context):
    name = "torua_gateway_http_request_duration_seconds"
    assert sample_sum(context.metrics_after, name + "_count", op="put") >= 25, "no PUT latencies observed"
    buckets = [k for k in context.metrics_after if k[0] == name + "_bucket" and dict(k[1]).get("op") == "put"]
    assert len(buckets) > 3, buckets


@then("the leading coordinator's metrics give the map epoch, itself as leader and 3 healthy nodes")
def step_coordinator_metrics(context):
    info = context.gateway.info()
    port = context.cluster.metrics_port_of(f"coordinator-{info['leader']}")
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    assert sample_sum(samples, "torua_coordinator_leader") == 1, "the leader's metrics do not say it leads"
    assert sample_sum(samples, "torua_coordinator_map_epoch") >= info["epoch"] > 0, info["epoch"]
    assert sample_sum(samples, "torua_coordinator_nodes", status="healthy") == len(context.gateway.nodes())
    standby = [c for c in context.cluster.coordinator_ids if c != info["leader"]][0]
    samples = scrape(f"http://127.0.0.1:{context.cluster.metrics_port_of(f'coordinator-{standby}')}/metrics")
    assert sample_sum(samples, "torua_coordinator_leader") == 0, "the standby's metrics say it leads"


@then("each node's metrics give the shard copies it holds, as /shards says")
def step_node_metrics(context):
    def agree() -> Any:
        # A node drops a copy the map gave away a moment after the map changed: poll.
        view = context.gateway.shards()
        differ = {}
        for n in context.gateway.nodes():
            samples = scrape(f"http://127.0.0.1:{context.cluster.metrics_port_of('node-' + n['id'])}/metrics")
            held = sum(1 for s in view["shards"] if n["id"] in copies_of(s))
            if sample_sum(samples, "torua_node_shards") != held:
                roles = {dict(ls)["role"]: v for (name, ls), v in samples.items() if name == "torua_node_shards" and v}
                differ[n["id"]] = {"metrics": roles, "/shards": held}
        return not differ or Seen(differ)

    wait_until(agree, 15, "every node's metrics to give the shard copies /shards gives it")


# ------------------------------------------------------------------ joining, capacity


@given("node {node} has joined the cluster")
def step_has_joined(context, node):
    if context.cluster.node_process(node) is None:
        context.cluster.start_node(node)
    wait_until(lambda: node in healthy_nodes(context.gateway), 60, f"node {node} to be healthy")


@when("node {node} is started by hand with --max-shards {cap:d}")
def step_start_capped(context, node, cap):
    assert context.cluster.node_process(node) is None, f"node {node} already runs"
    context.cluster.start_node(node, extra=["--max-shards", str(cap)])
    context.capped = node


@then("/nodes/{node} gives its capacity as {cap:d} shard")
def step_capacity(context, node, cap):
    info = wait_until(lambda: (i := context.gateway.get_json(f"/nodes/{node}")).get("max_shards") == cap and i or Seen(i), 30, f"{node} to report max_shards {cap}")
    assert info["max_shards"] == cap, info


@then("once no move is in progress, node {node} holds {cap:d} shard copy and never held more")
def step_capped(context, node, cap):
    most = 0

    def settled():
        nonlocal most
        view = context.gateway.shards()
        held = copies_per_node(view, [node])[node]
        most = max(most, held)
        running = no_move_running(context)
        return (running and held == cap and held) or Seen({"held": held, "running": running})

    wait_until(settled, MOVES_TIMEOUT, f"{node} to hold {cap} copy with no move running", interval=0.1)
    assert most <= cap, f"{node} held {most} copies at some point, its max is {cap}"


@then("the copies of the other nodes differ by at most 1")
def step_others_balanced(context):
    others = [n for n in serving_nodes(context) if n != context.capped]
    copies = copies_per_node(context.gateway.shards(), others)
    assert max(copies.values()) - min(copies.values()) <= 1, copies


def explain(context, shard_id: int) -> dict:
    return context.gateway.get_json(f"/cluster/allocation/explain?shard={shard_id}")


def reasons_for(explanation: dict, node: str) -> str:
    """Everything the explanation says about `node`, as one lower-case text."""
    return json.dumps([n for n in explanation["nodes"] if n["node"] == node]).lower()


@then("the allocation explanation of a shard {node} does not hold says {same} is at its max_shards")
def step_explain_capped(context, node, same):
    view = context.gateway.shards()
    shard = next(s["shard_id"] for s in view["shards"] if node not in copies_of(s))
    said = reasons_for(explain(context, shard), node)
    assert "max_shards" in said, f"shard {shard}: {said}"


# ------------------------------------------------------------------ maintenance and evacuation


def set_maintenance(context, nodes: list[str], on: bool, drain: bool = False):
    body = json.dumps({"nodes": nodes, "maintenance": on, "drain": drain}).encode()
    resp = context.gateway.request("POST", "/nodes/maintenance", body, {"Content-Type": "application/json"})
    assert resp.status == 200, resp
    return resp


@when("I put nodes {node_names} into maintenance with drain")
def step_maintenance_drain(context, node_names):
    set_maintenance(context, names(node_names), True, drain=True)


@when("I put nodes {node_names} into maintenance without drain")
def step_maintenance(context, node_names):
    set_maintenance(context, names(node_names), True)


@when("I take nodes {node_names} out of maintenance")
def step_maintenance_off(context, node_names):
    set_maintenance(context, names(node_names), False)


@then("/nodes shows nodes {node_names} in maintenance")
def step_shows_maintenance(context, node_names):
    shown = {n["id"]: n.get("maintenance") for n in context.gateway.nodes()}
    for node in names(node_names):
        assert shown[node] is True, shown


@then("/nodes shows nodes {node_names} out of maintenance")
def step_shows_not_maintenance(context, node_names):
    shown = {n["id"]: (n.get("maintenance"), n["draining"]) for n in context.gateway.nodes()}
    for node in names(node_names):
        assert shown[node] == (False, False), shown


@then("once no move is in progress, nodes {node_names} hold no shard copy")
def step_hold_nothing(context, node_names):
    nodes = names(node_names)

    def emptied():
        running = no_move_running(context)
        held = copies_per_node(context.gateway.shards(), nodes)
        return (running and not any(held.values())) or Seen({"held": held, "running": running})

    wait_until(emptied, MOVES_TIMEOUT, f"{nodes} to hold no copy")


@then("the allocation explanation of shard {shard:d} says {node_names} are in maintenance")
def step_explain_maintenance(context, shard, node_names):
    explanation = explain(context, shard)
    for node in names(node_names):
        assert "maintenance" in reasons_for(explanation, node), explanation


@when("I evacuate node {node}")
def step_evacuate(context, node):
    resp = context.gateway.request("POST", f"/nodes/{node}/evacuate")
    assert resp.status in (200, 202), resp


@when("I ask to evacuate node {node}")
def step_ask_evacuate(context, node):
    context.before = context.gateway.shards()
    context.evacuating = node
    context.response = context.gateway.request("POST", f"/nodes/{node}/evacuate")


@when("I undo the evacuation of node {node}")
def step_undo_evacuate(context, node):
    resp = context.gateway.request("DELETE", f"/nodes/{node}/evacuate")
    assert resp.status == 200, resp


@then("/nodes/{node} shows it evacuated, holding no shard copy")
def step_evacuated(context, node):
    def evacuated():
        info = context.gateway.get_json(f"/nodes/{node}")
        return (info["status"] == "evacuated" and info["shards"] == 0 and no_move_running(context) and info) or Seen(info)

    wait_until(evacuated, EVACUATE_TIMEOUT, f"{node} to be evacuated")
    context.shards_view = context.gateway.shards()


@then("the evacuation is refused with 409 and a message that says why, and that nothing changed")
def step_evacuation_refused(context):
    resp = context.response
    assert resp.status == 409, resp
    message = resp.json()["error"]["message"]
    assert message.startswith(f"cannot evacuate {context.evacuating}:") and "nothing changed" in message, resp


@then("node {node} still holds its shard copies and is not evacuating")
def step_still_holds(context, node):
    info = context.gateway.get_json(f"/nodes/{node}")
    before = sorted(s["shard_id"] for s in context.before["shards"] if node in copies_of(s))
    assert sorted(info["shard_ids"]) == before and info["status"] == "healthy" and not info.get("evacuating"), f"{info} vs {before}"


# ------------------------------------------------------------------ load rebalancing


@given("once copies and primaries per node are balanced, 2 shards whose primaries share a node, as many as any node leads")
def step_hot_shards(context):
    # Count balancing goes first (a node given copies back by an earlier scenario is
    # then handed primaries); load rebalancing only acts on the settled placement.
    settle_balanced(context, primaries=True)
    view = context.gateway.shards()
    nodes = sorted(healthy_nodes(context.gateway))
    most = max(len(shards_of(view, n)) for n in nodes)
    assert most >= 2, f"no node is primary of 2 shards: {view['shards']}"
    # Load moves by primary hand-off to an in-sync replica, never upsetting the count
    # balance (docs: "Load-based rebalancing"). Whether some hand-off or swap can
    # spread two shards depends on where their replicas are (a node's two shards may
    # both have their replica on a node that leads as many), so take the first pair,
    # on any node that leads the most shards, that the coordinator's own rule could
    # spread, were they hot.
    candidates: list[tuple[str, tuple[int, int]]] = []
    for node in sorted(nodes, reverse=True):
        led = shards_of(view, node)
        if len(led) == most:
            candidates += [(node, (a, b)) for i, a in enumerate(led) for b in led[i + 1 :]]
    spreadable = [(node, pair) for node, pair in candidates if could_spread(view, nodes, pair)]
    assert spreadable, f"no pair of shards led by one of the nodes leading {most} can be spread by a hand-off or swap in this placement: {view['shards']}"
    node, pair = spreadable[0]
    context.hot_node, context.hot_shards, context.num_shards = node, list(pair), view["num_shards"]


def could_spread(view: dict, nodes: list[str], pair: tuple[int, int]) -> bool:
    """Whether `torua.coordinator.load_balance.decide` acts on `pair` when they alone are busy."""
    from torua.coordinator.load_balance import LoadView, Policy, decide

    placement = {s["shard_id"]: tuple([s["primary"], *s["replicas"]]) for s in view["shards"] if s["primary"]}
    rates = {s: (100.0 if s in pair else 1.0) for s in placement}
    load = LoadView(placement, rates, dict.fromkeys(nodes), view["replication_factor"] > 1, {s["shard_id"]: tuple(s["in_sync"]) for s in view["shards"]})
    return any(a.shard_id in pair for a in decide(load, Policy(), {}, 0.0).actions)


class LoadClient:
    """A thread reading and writing keys of a few shards only, as fast as one client can."""

    def __init__(self, gateway, keys: list[str]) -> None:
        self.gateway, self.keys = gateway, keys
        self.errors: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "LoadClient":
        self._thread.start()
        return self

    def _run(self) -> None:
        for n in count():
            if self._stop.is_set():
                return
            key = self.keys[n % len(self.keys)]
            resp = self.gateway.put(key, generated_value(key)) if n % 4 == 0 else self.gateway.get(key)
            if resp.status not in (200, 204, 404):
                self.errors.append((key, resp))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@when("a client keeps reading and writing keys of only those 2 shards until the nodes report the load")
def step_hot_load(context):
    keys = [k for k in (f"hot-{n}" for n in range(2000)) if shard_for_key(k, context.num_shards) in context.hot_shards][:40]
    for key in keys:
        assert context.gateway.put(key, generated_value(key)).status == 204
        context.written[key] = generated_value(key)
    context.load = LoadClient(context.gateway, keys).start()
    context.add_cleanup(context.load.stop)

    def reported():
        # A dry run shows the per-shard rates the coordinator sees, changing nothing.
        resp = context.gateway.request("POST", "/cluster/rebalance?dry_run=true")
        assert resp.status == 200, resp
        rates = {int(s): r for s, r in resp.json()["shard_rates"].items()}
        return all(rates.get(s, 0) > 1 for s in context.hot_shards) or Seen(rates)

    wait_until(reported, 60, "the nodes to report the load on the hot shards")


@when("I ask the coordinator to rebalance by load")
@when("I ask the coordinator to rebalance by load again under the same load")
def step_rebalance(context):
    def decided():
        # "busy" and "settling" mean: ask again once other work is done and the rates caught up
        resp = context.gateway.request("POST", "/cluster/rebalance")
        assert resp.status in (200, 202), resp
        body = resp.json()
        return (not body["reason"].startswith(("busy", "settling")) and body) or Seen(body)

    context.rebalance = wait_until(decided, MOVES_TIMEOUT, "the coordinator to decide on the load", interval=0.5)


@then("it moves one of those shards' primaries to another node")
def step_rebalance_moves(context):
    actions = context.rebalance["actions"]
    moved = [a for a in actions if a["shard_id"] in context.hot_shards]
    assert moved, f"no action on hot shards {context.hot_shards}: {context.rebalance}"


@then("once no move is in progress, those 2 shards have their primaries on different nodes")
def step_hot_spread(context):
    def spread():
        running = no_move_running(context)
        view = context.gateway.shards()
        primaries = {s["shard_id"]: s["primary"] for s in view["shards"] if s["shard_id"] in context.hot_shards}
        return (running and len(set(primaries.values())) == 2 and primaries) or Seen({"primaries": primaries, "running": running})

    wait_until(spread, MOVES_TIMEOUT, f"shards {context.hot_shards} to have primaries on different nodes")


@then("it finds nothing to do")
def step_nothing_to_do(context):
    assert context.rebalance["actions"] == [], context.rebalance
    context.load.stop()
    assert not context.load.errors, context.load.errors[:5]


# ------------------------------------------------------------------ rolling restart


def wait_green(context, what: str) -> None:
    wait_until(context.cluster.settled, RESTART_TIMEOUT, what)


@when("every node in turn is drained, stopped, started again and undrained, the cluster green in between")
def step_rolling_restart(context):
    for node in sorted(n["id"] for n in context.gateway.nodes()):
        resp = context.gateway.request("POST", f"/nodes/{node}/drain")
        assert resp.status == 202, resp
        wait_until(
            lambda: (i := context.gateway.get_json(f"/nodes/{node}"))["status"] == "drained" or Seen(i),
            RESTART_TIMEOUT, f"{node} to be drained",
        )
        proc = context.cluster.terminate_node(node)
        wait_until(lambda: context.cluster.exit_code(proc) is not None or Seen(proc.pid), RESTART_TIMEOUT, f"{node} to exit")
        context.cluster.restart_node(node)
        # still drained (status), but beating again (health)
        wait_until(
            lambda: (i := context.gateway.get_json(f"/nodes/{node}"))["health"] == "healthy" or Seen(i),
            RESTART_TIMEOUT, f"{node} to be healthy again",
        )
        resp = context.gateway.request("DELETE", f"/nodes/{node}/drain")
        assert resp.status == 200, resp
        wait_green(context, f"the cluster to be green after {node} came back")
        assert context.writer.running, f"the writer stopped: {context.writer.failed()[-3:]}"


@then("/cluster/info lists the version every node reports")
def step_info_versions(context):
    info = context.gateway.info()
    for n in context.gateway.nodes():
        assert n["version"] in info["versions"], f"{n['id']} {n['version']} not in {info['versions']}"


@when("a node of a build two protocol versions newer sends a heartbeat")
def step_incompatible_heartbeat(context):
    import msgpack

    from torua.protocol.codec import PROTOCOL_VERSION, Refused, decode, encode
    from torua.protocol.messages import Heartbeat, LeaseGrant
    from torua_bdd import with_nats

    now = time.time()
    beat = Heartbeat("n-future", "99.0.0", 0, now, now, host="elsewhere", pid=4242)
    data = msgpack.packb({**msgpack.unpackb(encode(beat)), "v": PROTOCOL_VERSION + 2}, use_bin_type=True)

    async def send(nc):
        return (await nc.request(subjects.HEARTBEAT, data, timeout=5)).data

    reply = with_nats(context.cluster.nats_url, send, role="node", node_id="n1")  # any node may heartbeat
    try:
        decode(LeaseGrant, reply)
    except Refused as refused:
        context.refusal = refused
    else:
        raise AssertionError("the heartbeat of an incompatible build was answered with a lease grant")


@then("the leader refuses it with a clear error, and that node never joins")
def step_refused_never_joins(context):
    refused = context.refusal
    leader = context.gateway.info()["leader"]
    assert refused.code == "unsupported_version" and refused.by == f"coordinator {leader}", (refused.code, refused.by)
    assert "protocol version" in refused.message and "not supported" in refused.message, refused.message
    assert "n-future" not in {n["id"] for n in context.gateway.nodes()}
    assert context.gateway.request("GET", "/nodes/n-future").status == 404
    assert not [s for s in context.gateway.shards()["shards"] if "n-future" in copies_of(s)]
