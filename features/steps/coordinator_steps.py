"""Steps about several coordinators: which one leads (as /cluster/info, the lease
in JetStream and the shard map say), a standby taking over when the leader is
killed or paused, and a deposed leader that wakes finding it can change nothing."""

from __future__ import annotations

import json
from itertools import count

from behave import given, then, when

from torua.protocol import subjects
from torua.protocol.codec import decode
from torua.protocol.messages import ShardCommand, ShardMap
from torua_bdd import LEADER_POLL, BackgroundWriter, KvRecord, Seen, kv_get, kv_history, kv_keys, node_command, wait_until
from cluster_steps import healthy_nodes
from replication_steps import step_pick_primary, wait_for_acknowledged

# Deadlines, not expectations: a standby takes over once the lease (3 s) runs out,
# and a killed node's shards fail over about a second after it turns unhealthy.
TAKEOVER_TIMEOUT = 30
FAILOVER_TIMEOUT = 30
STEP_DOWN_TIMEOUT = 30


# ------------------------------------------------------------------ reading


def stored_map(cluster) -> tuple[ShardMap, int]:
    """The shard map JetStream holds (bucket torua_cluster, key shard_map) and its revision."""
    record = kv_get(cluster.nats_url, subjects.CLUSTER_BUCKET, subjects.MAP_KEY)
    assert record is not None, f"no {subjects.MAP_KEY} in the {subjects.CLUSTER_BUCKET} bucket"
    return decode(ShardMap, record.value), record.revision


def lease_record(cluster) -> dict | None:
    """The leader's lease (bucket torua_leader, key leader): {"id", "term", "since"}, None once expired."""
    record = kv_get(cluster.nats_url, subjects.LEADER_BUCKET, subjects.LEADER_KEY)
    return json.loads(record.value) if record is not None else None


def node_records(cluster) -> dict[str, KvRecord]:
    """The node registry JetStream holds (bucket torua_cluster, keys nodes.<id>)."""
    keys = [k for k in kv_keys(cluster.nats_url, subjects.CLUSTER_BUCKET) if k.startswith(subjects.NODE_KEY_PREFIX)]
    return {k: r for k in keys if (r := kv_get(cluster.nats_url, subjects.CLUSTER_BUCKET, k)) is not None}


def leader_view(info: dict) -> dict:
    return {k: info.get(k) for k in ("leader", "term", "standbys", "epoch")}


def wait_leading(context, coordinator_id: str, above_term: int) -> dict:
    """/cluster/info once `coordinator_id` leads at a term above `above_term`."""

    def leads():
        info = context.gateway.info()
        return (info["leader"] == coordinator_id and info["term"] > above_term and info) or Seen(leader_view(info))

    return wait_until(leads, TAKEOVER_TIMEOUT, f"{coordinator_id} to lead at a term above {above_term}", interval=LEADER_POLL)


def the_other(context, coordinator_id: str) -> str:
    others = [c for c in context.cluster.coordinator_ids if c != coordinator_id]
    assert len(others) == 1, f"expected two coordinators, the cluster has {context.cluster.coordinator_ids}"
    return others[0]


def copies_held_in_sync(view: dict, node_id: str) -> list[int]:
    return sorted(s["shard_id"] for s in view["shards"] if node_id in s["in_sync"] and node_id in [s["primary"], *s["replicas"]])


# ------------------------------------------------------------------ who leads


@given("the cluster runs {count:d} coordinators, each its own process")
def step_runs_coordinators(context, count):
    ids = context.cluster.coordinator_ids
    assert len(ids) == count, f"the cluster was started with coordinators {ids}"
    for coordinator_id in ids:
        context.cluster.require_coordinator_process(coordinator_id)


@when("I ask for /cluster/info")
def step_ask_info(context):
    context.info = context.gateway.info()


@then("it names one of the coordinators as the leader, at a term above 0")
def step_names_leader(context):
    info = context.info
    assert info["leader"] in context.cluster.coordinator_ids, f"leader {info['leader']!r} is none of {context.cluster.coordinator_ids}: {leader_view(info)}"
    assert info["coordinator"] == info["leader"], f"/cluster/info answered by {info['coordinator']}, names {info['leader']} as leader"
    assert isinstance(info["term"], int) and info["term"] > 0, leader_view(info)
    context.leader, context.term = info["leader"], info["term"]


@then("the other coordinator is its only standby")
def step_only_standby(context):
    other = the_other(context, context.leader)
    assert context.info["standbys"] == [other], f"standbys {context.info['standbys']}, expected [{other!r}]: {leader_view(context.info)}"
    keys = kv_keys(context.cluster.nats_url, subjects.LEADER_BUCKET)
    assert subjects.STANDBY_KEY_PREFIX + other in keys, f"no {subjects.STANDBY_KEY_PREFIX}{other} in the {subjects.LEADER_BUCKET} bucket: {keys}"


@then('the lease in JetStream (bucket "torua_leader", key "leader") names the same leader at the same term')
def step_lease_names_leader(context):
    # The record that creates the key carries term 0 (its revision, the term, is not
    # known before it is written); the leader's first renewal, a second later, carries it.
    def names_leader():
        record = lease_record(context.cluster)
        return (record and record["id"] == context.leader and record["term"] == context.term) or Seen(record)

    wait_until(names_leader, 10, f"the lease to name {context.leader} at term {context.term}", interval=LEADER_POLL)


@then('the shard map in JetStream (bucket "torua_cluster", key "shard_map") names the same leader at the same term')
def step_map_names_leader(context):
    stored, _ = stored_map(context.cluster)
    assert (stored.leader, stored.term) == (context.leader, context.term), f"the stored map (epoch {stored.epoch}) names {stored.leader!r} at term {stored.term}, /cluster/info {context.leader!r} at {context.term}"

    def same_epoch():
        served, kept = context.gateway.shards()["epoch"], stored_map(context.cluster)[0].epoch
        return served == kept or Seen({"/shards": served, "JetStream": kept})

    wait_until(same_epoch, 10, "/shards to serve the map JetStream holds")


@then("the leader's log says it was elected leader at that term")
def step_leader_log(context):
    line = f"coordinator {context.leader} elected leader at term {context.term}"
    logged = context.cluster.coordinator_log_since(context.leader, {})
    assert line in logged, f"coordinator {context.leader} never logged {line!r}; it logged:\n{logged[-3000:]}"


@given("the coordinator that leads now, and the one standing by")
def step_leader_now(context):
    info = context.gateway.info()
    assert context.cluster.leadership(info), f"not one leader with every other coordinator standing by: {leader_view(info)}"
    context.old_leader, context.old_term = info["leader"], info["term"]
    context.standby = the_other(context, context.old_leader)


# ------------------------------------------------------------------ failover


@given('a writer that keeps storing new keys named "{pattern}" through the gateway, recording every answer')
def step_start_writer(context, pattern):
    assert "{n}" in pattern, f"the key pattern {pattern!r} needs a {{n}}"
    keys = (pattern.replace("{n}", str(n)) for n in count())
    context.writer = BackgroundWriter(context.gateway, keys).start()
    context.add_cleanup(context.writer.stop)


@when("the writer has had {more:d} more writes acknowledged under the new leader")
def step_writer_under_new_leader(context, more):
    least = len(context.writer.acknowledged()) + more
    wait_for_acknowledged(context, least, f"{more} more writes to be acknowledged under {context.new_leader}")


@when("the process of the leading coordinator is killed with SIGKILL")
def step_kill_leader(context):
    context.cluster.kill_coordinator(context.old_leader)


@when("the process of the leading coordinator is paused with SIGSTOP")
def step_pause_leader(context):
    context.cluster.pause_coordinator(context.old_leader)


@then("the standby becomes the leader at a higher term")
def step_standby_leads(context):
    info = wait_leading(context, context.standby, context.old_term)
    context.new_leader, context.new_term = info["leader"], info["term"]
    record = lease_record(context.cluster)
    assert record is not None and record["id"] == context.new_leader, f"/cluster/info says {context.new_leader} leads, the lease in JetStream says {record}"


@then("the shard map in JetStream names the new leader at its term")
def step_map_names_new_leader(context):
    # A new leader's first act is a map write stamped with its term.
    def stamped():
        stored, _ = stored_map(context.cluster)
        return ((stored.leader, stored.term) == (context.new_leader, context.new_term) and stored) or Seen((stored.leader, stored.term, stored.epoch))

    wait_until(stamped, TAKEOVER_TIMEOUT, f"the stored map to name {context.new_leader} at term {context.new_term}", interval=LEADER_POLL)


@then("the new leader sees all {count:d} nodes healthy")
@then("the leader sees all {count:d} nodes healthy")
def step_leader_sees_nodes(context, count):
    # A new leader knows the nodes from JetStream but hears from them only at their next heartbeat.
    def all_healthy():
        nodes = healthy_nodes(context.gateway)
        return len(nodes) == count or Seen({n["id"]: n["status"] for n in context.gateway.nodes()})

    wait_until(all_healthy, TAKEOVER_TIMEOUT, f"the leader to see {count} healthy nodes")


@when("the process of the node that is primary of the most shards is killed with SIGKILL")
def step_kill_busiest_node(context):
    step_pick_primary(context)
    context.epoch_before_kill = context.gateway.shards()["epoch"]
    context.cluster.kill_node(context.node)


@then("the new leader fails that node's shards over to other healthy nodes, at a higher epoch")
def step_new_leader_fails_over(context):
    def failed_over():
        view = context.gateway.shards()
        nodes = healthy_nodes(context.gateway)
        former = [s for s in view["shards"] if s["shard_id"] in context.node_shards]
        waiting = [s for s in former if s["primary"] == context.node or s["primary"] not in nodes or s["state"] != "active"]
        return (not waiting and view) or Seen({"healthy nodes": sorted(nodes), "not failed over": waiting})

    view = wait_until(failed_over, FAILOVER_TIMEOUT, f"{context.node}'s shards {context.node_shards} to have an active primary on another healthy node")
    assert context.node not in healthy_nodes(context.gateway), f"{context.node} was killed, /nodes shows it healthy"
    assert view["epoch"] > context.epoch_before_kill, f"epoch {view['epoch']} after the failover, {context.epoch_before_kill} before"
    stored, _ = stored_map(context.cluster)
    assert (stored.leader, stored.term) == (context.new_leader, context.new_term), f"the failover map (epoch {stored.epoch}) was written by {stored.leader} at term {stored.term}"
    assert stored.epoch >= view["epoch"], f"JetStream holds epoch {stored.epoch}, /shards shows {view['epoch']}"


@when("the killed coordinator is started again with the same command line")
def step_restart_coordinator(context):
    context.log_sizes = context.cluster.log_sizes()
    context.cluster.restart_coordinator(context.old_leader)


def wait_standing_by(context) -> str:
    """Wait until the old leader stands by under the new one; return what it logged since context.log_sizes."""

    def standing_by():
        info = context.gateway.info()
        return (info["standbys"] == [context.old_leader] and info) or Seen(leader_view(info))

    info = wait_until(standing_by, TAKEOVER_TIMEOUT, f"{context.old_leader} to stand by", interval=LEADER_POLL)
    assert (info["leader"], info["term"]) == (context.new_leader, context.new_term), f"{context.new_leader} led at term {context.new_term}; now {leader_view(info)}"
    logged = context.cluster.coordinator_log_since(context.old_leader, context.log_sizes)
    assert "elected leader" not in logged, f"coordinator {context.old_leader} was elected again:\n{logged[-3000:]}"
    return logged


@then("it stands by: the new leader still leads at the same term, with it as its only standby")
def step_stands_by(context):
    logged = wait_standing_by(context)
    assert f"coordinator {context.old_leader} standing by" in logged, f"coordinator {context.old_leader} did not log that it stands by:\n{logged[-3000:]}"


# ------------------------------------------------------------ the deposed leader


@when("the paused coordinator is resumed with SIGCONT")
def step_resume_leader(context):
    context.map_before_wake, context.map_revision_before_wake = stored_map(context.cluster)
    context.epoch_before_wake = max(context.map_before_wake.epoch, context.gateway.shards()["epoch"])
    context.node_records_before_wake = node_records(context.cluster)
    # Nothing is written to a paused process's log: everything from here on is after SIGCONT.
    context.log_sizes = context.cluster.log_sizes()
    context.cluster.resume_coordinator(context.old_leader)


@then("its log says it stepped down")
def step_logs_stepped_down(context):
    line = f"coordinator {context.old_leader} stepped down"

    def stepped_down():
        logged = context.cluster.coordinator_log_since(context.old_leader, context.log_sizes)
        return line in logged or Seen(logged[-2000:])

    wait_until(stepped_down, STEP_DOWN_TIMEOUT, f"coordinator {context.old_leader} to log {line!r} after SIGCONT", interval=LEADER_POLL)


@then("it stands by again: the new leader still leads at the same term, with it as its only standby")
def step_stands_by_again(context):
    wait_standing_by(context)


@then('since it was resumed it has logged no "shard map epoch" line')
def step_no_map_write_logged(context):
    logged = context.cluster.coordinator_log_since(context.old_leader, context.log_sizes)
    written = [line for line in logged.splitlines() if "shard map epoch" in line]
    assert not written, f"coordinator {context.old_leader} wrote the map after it woke:\n" + "\n".join(written)


@then("the shard map in JetStream still names the new leader at its term, and its epoch never went back")
def step_map_still_new_leader(context):
    stored, _ = stored_map(context.cluster)
    assert (stored.leader, stored.term) == (context.new_leader, context.new_term), f"the stored map (epoch {stored.epoch}) names {stored.leader} at term {stored.term}"
    assert stored.epoch >= context.epoch_before_wake, f"the stored map went back from epoch {context.epoch_before_wake} to {stored.epoch}"
    # Every map written since the old leader woke (JetStream keeps the last few) is the new leader's, epochs rising.
    since = [decode(ShardMap, r.value) for r in kv_history(context.cluster.nats_url, subjects.CLUSTER_BUCKET, subjects.MAP_KEY) if r.revision > context.map_revision_before_wake]
    writers = {(m.leader, m.term) for m in since}
    assert writers <= {(context.new_leader, context.new_term)}, f"maps written since {context.old_leader} woke: {[(m.epoch, m.leader, m.term) for m in since]}"
    epochs = [m.epoch for m in since]
    assert epochs == sorted(epochs) and all(e > context.map_before_wake.epoch for e in epochs), f"epochs written since it woke: {epochs}, before: {context.map_before_wake.epoch}"


@then('every healthy node refuses a command carrying the old leader\'s term with error code "{code}"')
def step_nodes_refuse_old_term(context, code):
    view = context.gateway.shards()
    context.term_checks = {}
    for node_id in sorted(healthy_nodes(context.gateway)):
        held = copies_held_in_sync(view, node_id)
        assert held, f"{node_id} holds no shard in sync: {view}"
        context.term_checks[node_id] = held[0]
        reply = node_command(context.cluster.nats_url, node_id, "shard.position", ShardCommand(held[0], 0, term=context.old_term))
        assert not reply.ok and reply.error_code == code, f"{node_id}, shard {held[0]}, term {context.old_term} (current {context.new_term}): expected {code!r}, got {reply}"


@then("every healthy node accepts the same command carrying the new leader's term")
def step_nodes_accept_new_term(context):
    assert context.term_checks, "no node was asked with the old term"
    for node_id, shard_id in context.term_checks.items():
        reply = node_command(context.cluster.nats_url, node_id, "shard.position", ShardCommand(shard_id, 0, term=context.new_term))
        # The term is taken: the node answers the command itself (a copy still refilling
        # after the kill answers `conflict` rather than its position, and is never promoted).
        assert reply.shard_id == shard_id and (reply.ok or reply.error_code == "conflict"), f"{node_id}, shard {shard_id}, term {context.new_term}: {reply}"


@then("the node records in JetStream are as they were before it woke: none was written since")
def step_node_records_unchanged(context):
    before, after = context.node_records_before_wake, node_records(context.cluster)
    assert before, "JetStream held no node record before the old leader woke"

    def shown(record: KvRecord | None) -> str:
        return "none" if record is None else f"revision {record.revision} {record.value.decode()}"

    changed = [
        f"{key}: {shown(before.get(key))} -> {shown(after.get(key))}"
        for key in sorted(before.keys() | after.keys())
        if key not in before or key not in after or before[key].revision != after[key].revision
    ]
    assert not changed, f"node records written since {context.old_leader} (deposed) woke:\n" + "\n".join(changed)


# ------------------------------------------------------------ an operator's drain


@when("node {node} is drained through the gateway, and the drain is undone right away")
def step_drain_undone(context, node):
    drained = context.gateway.request("POST", f"/nodes/{node}/drain")
    assert drained.status == 202 and drained.json()["draining"] is True, f"POST /nodes/{node}/drain: {drained!r}"
    undone = context.gateway.request("DELETE", f"/nodes/{node}/drain")
    assert undone.status == 200 and undone.json()["draining"] is False, f"DELETE /nodes/{node}/drain: {undone!r}"


@then("/nodes shows node {node} as not draining")
def step_not_draining(context, node):
    info = context.gateway.get_json(f"/nodes/{node}")
    assert info["draining"] is False and info["status"] == "healthy", f"/nodes/{node}: {info}"


@when("the process of the new leader is killed with SIGKILL")
def step_kill_new_leader(context):
    context.cluster.kill_coordinator(context.new_leader)


@then("the coordinator that woke leads again, at a higher term")
def step_woken_leads(context):
    wait_leading(context, context.old_leader, context.new_term)
