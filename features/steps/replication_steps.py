"""Steps about shards kept in several copies: placement of primaries and replicas,
failover when a node dies or is paused, a node's return (its copies stay where
they are, its share of primaries comes back by hand-off), and a graceful stop
(SIGTERM) that hands a node's shards over first."""

from __future__ import annotations

from itertools import count

from behave import given, then, when

from torua.keys import shard_for_key
from torua_bdd import BackgroundWriter, Seen, generated_value, wait_until
from cluster_steps import healthy_nodes, shards_of
from kv_steps import assert_reads

FAILOVER_TIMEOUT = 30
# Deadlines (not expectations) for the graceful stop: the node's own hand-off
# deadline is 10 s, and the writer's requests each take well under a second.
EXIT_TIMEOUT = 60
WRITES_TIMEOUT = 60


def copies_of(entry: dict) -> list[str]:
    """Every node holding a copy of a shard: its primary, then its replicas."""
    return [entry["primary"]] + list(entry["replicas"])


# ------------------------------------------------------------------ the cluster


@given("the cluster keeps {copies:d} copies of each shard")
def step_keeps_copies(context, copies):
    info = context.gateway.info()
    view = context.gateway.shards()
    assert info["replication_factor"] == copies, f"/cluster/info says replication_factor {info['replication_factor']}: {info}"
    assert view["replication_factor"] == copies, f"/shards says replication_factor {view['replication_factor']}"


@then("every shard has a primary and {replicas:d} replica on distinct healthy nodes, every copy in sync")
def step_primary_and_replicas(context, replicas):
    view = context.shards_view
    nodes = healthy_nodes(context.gateway)
    for s in view["shards"]:
        copies = copies_of(s)
        assert s["primary"] is not None, f"shard {s['shard_id']} has no primary: {s}"
        assert len(s["replicas"]) == replicas, f"shard {s['shard_id']}: expected {replicas} replica, got {s['replicas']}: {s}"
        assert len(set(copies)) == len(copies), f"shard {s['shard_id']}: two copies on one node: {s}"
        assert set(copies) <= nodes, f"shard {s['shard_id']}: copies on {copies}, healthy nodes {sorted(nodes)}: {s}"
        assert sorted(s["in_sync"]) == sorted(copies), f"shard {s['shard_id']}: in sync {s['in_sync']}, copies {copies}: {s}"


@then("each node's shard ids in /nodes are the shards it holds a copy of, and its primaries the shards it is primary of")
def step_node_copies_match(context):
    view = context.shards_view
    for n in context.gateway.nodes():
        held = sorted(s["shard_id"] for s in view["shards"] if n["id"] in copies_of(s))
        assert sorted(n["shard_ids"]) == held and n["shards"] == len(held), f"{n['id']}: /nodes says {n['shard_ids']}, /shards gives it copies of {held}"
        assert sorted(n["primaries"]) == shards_of(view, n["id"]), f"{n['id']}: /nodes says primaries {n['primaries']}, /shards {shards_of(view, n['id'])}"


@when("I ask for /cluster/health")
def step_ask_health(context):
    context.health = context.gateway.health()


@then("it is green with all {total:d} shards active and {under:d} shards under-replicated")
def step_health_green(context, total, under):
    health = context.health
    assert health["status"] == "green", health
    assert health["shards_total"] == total and health["shards_active"] == total, health
    assert health["shards_under_replicated"] == under, health
    assert health["shards_unavailable"] == 0 and health["shards_unassigned"] == 0, health
    assert health["nodes_healthy"] == health["nodes_total"], health


# ---------------------------------------------------------------- failover


@when("the process of node {node} is paused with SIGSTOP")
def step_pause_node(context, node):
    context.cluster.pause_node(node)


@when("the process of node {node} is resumed with SIGCONT")
def step_resume_node(context, node):
    context.cluster.resume_node(node)


@then("every shard has an active primary on a healthy node again")
def step_every_primary_healthy(context):
    def failed_over():
        view = context.gateway.shards()
        nodes = healthy_nodes(context.gateway)
        waiting = [s for s in view["shards"] if s["state"] != "active" or s["primary"] not in nodes]
        return view if not waiting else Seen({"healthy nodes": sorted(nodes), "not served": waiting})

    context.shards_view = wait_until(failed_over, FAILOVER_TIMEOUT, "every shard to be active with its primary on a healthy node")


@then('every shard {node} was primary for names another node as its primary, in state "{state}"')
def step_others_primary(context, node, state):
    assert context.node_shards, f"{node} was primary of no shard"

    def failed_over():
        view = context.gateway.shards()
        nodes = healthy_nodes(context.gateway)
        former = [s for s in view["shards"] if s["shard_id"] in context.node_shards]
        waiting = [s for s in former if s["primary"] == node or s["primary"] not in nodes or s["state"] != state]
        return former if not waiting else Seen({"healthy nodes": sorted(nodes), "not failed over": waiting})

    former = wait_until(failed_over, FAILOVER_TIMEOUT, f"{node}'s shards {context.node_shards} to have another primary in state {state!r}")
    context.new_primaries = {s["shard_id"]: s["primary"] for s in former}


@then("every one of those keys on {node} reads back its value from its new primary")
def step_failed_over_keys_read(context, node):
    assert context.on_node, f"no key lived on {node}"
    for key in context.on_node:
        location = context.gateway.location(key)
        assert location["primary"] == context.new_primaries[location["shard_id"]], f"{key!r}: located at {location}, /shards said {context.new_primaries}"
        assert_reads(context.gateway, key, context.written[key])


@then("every key written in this scenario reads back its value")
def step_every_written_key_reads(context):
    assert context.written, "no key was written in this scenario"
    for key, value in context.written.items():
        assert_reads(context.gateway, key, value)


# -------------------------------------------------------------- node returns


@then("node {node} holds a copy of the same shards as before the failure, every one in sync: no copy moved back")
def step_same_copies(context, node):
    view = context.gateway.shards()
    held = sorted(s["shard_id"] for s in view["shards"] if node in copies_of(s))
    assert held == context.node_copies, f"{node} held copies of {context.node_copies} before the failure, now of {held}: {view}"
    for s in view["shards"]:
        if node in copies_of(s):
            assert node in s["in_sync"], f"shard {s['shard_id']}: {node} is not in sync: {s}"


@then("node {node} leads some of those shards again, by hand-off: only roles changed")
def step_leads_again(context, node):
    led = shards_of(context.gateway.shards(), node)
    assert led, f"{node} leads no shard once primaries are balanced"
    assert set(led) <= set(context.node_copies), f"{node} leads {led}, but held copies of {context.node_copies} only"


# ------------------------------------------------------------ graceful stop


@given("a node that is the primary of some shards")
def step_pick_primary(context):
    view = context.gateway.shards()
    nodes = healthy_nodes(context.gateway)
    primaries = {n: shards_of(view, n) for n in sorted(nodes)}
    node = max(primaries, key=lambda n: len(primaries[n]))
    assert primaries[node], f"no healthy node is primary of any shard: {view}"
    for s in view["shards"]:
        if s["shard_id"] in primaries[node]:
            others = [n for n in s["in_sync"] if n != node and n in nodes]
            assert others, f"shard {s['shard_id']} of {node} has no in-sync replica on a healthy node to hand over to: {s}"
    context.node = node
    context.node_shards = primaries[node]
    context.num_shards = view["num_shards"]


@given("a writer that keeps storing new keys on that node's shards through the gateway, recording every answer")
def step_start_writer(context):
    shards = set(context.node_shards)
    keys = (
        key
        for key in (f"graceful-stop-{context.node}-{n}" for n in count())
        if shard_for_key(key, context.num_shards) in shards
    )
    context.writer = BackgroundWriter(context.gateway, keys).start()
    context.add_cleanup(context.writer.stop)


def wait_for_acknowledged(context, least: int, what: str) -> None:
    writer = context.writer

    def enough():
        if not writer.running:
            raise AssertionError(f"the writer stopped: {writer.failed()[-3:]}")
        done = len(writer.acknowledged())
        return done >= least or Seen({"acknowledged": done, "failed": writer.failed()[-3:]})

    wait_until(enough, WRITES_TIMEOUT, what)


@when("the writer has had {least:d} writes acknowledged")
def step_writer_going(context, least):
    wait_for_acknowledged(context, least, f"{least} writes to be acknowledged")


@when("the process of that node is sent SIGTERM")
def step_sigterm_node(context):
    context.log_sizes = context.cluster.log_sizes()
    context.stopped_process = context.cluster.terminate_node(context.node)


@then("that node's process exits with code 0")
def step_exits_zero(context):
    proc = context.stopped_process

    def exited():
        code = context.cluster.exit_code(proc)
        return (code is not None and (code,)) or Seen(f"pid {proc.pid} still running")

    (code,) = wait_until(exited, EXIT_TIMEOUT, f"node {context.node} (pid {proc.pid}) to exit")
    # Acknowledged once the exit was seen: the writes after this mark found the shards elsewhere.
    context.acknowledged_at_exit = len(context.writer.acknowledged())
    assert code == 0, f"node {context.node} (pid {proc.pid}) exited with code {code}"


@then('its log says "{text}"')
def step_log_says(context, text):
    logged = context.cluster.node_log_since(context.node, context.log_sizes)
    assert text in logged, f"node {context.node} did not log {text!r} after SIGTERM; it logged:\n{logged[-3000:]}"


@when("the writer has had {more:d} more writes acknowledged since the exit")
def step_writer_more(context, more):
    least = context.acknowledged_at_exit + more
    wait_for_acknowledged(context, least, f"{more} more writes to be acknowledged after node {context.node} exited")


@when("the writer is stopped")
def step_stop_writer(context):
    context.writer.stop()
    for key in context.writer.acknowledged():
        context.written[key] = generated_value(key)


@then("no write failed: every answer was 204")
def step_no_write_failed(context):
    results = context.writer.results()
    failed = context.writer.failed()
    assert results, "the writer made no request"
    assert not failed, f"{len(failed)} of {len(results)} writes failed, first ones: {failed[:5]}"


@then("/shards names that node as the primary of no shard")
def step_primary_of_none(context):
    view = context.gateway.shards()
    left = shards_of(view, context.node)
    assert not left, f"{context.node} is still named primary of shards {left} after it stopped: {view}"
