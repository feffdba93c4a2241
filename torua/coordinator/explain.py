"""Why a shard's copies are where they are: `GET /cluster/allocation/explain?shard=N`.

Pure: from the shard map, the node views the planner sees and the move in
flight, it says for each copy why it stays (or that the plan moves it), for
each other node why it was (not) chosen, and, when the shard is not fully
assigned, why not. It runs the same `plan_placement` the coordinator runs, so
the explanation cannot drift from the decision.

    >>> from torua.protocol.messages import ShardEntry, ShardMap
    >>> m = ShardMap(5, 1, 1, [ShardEntry(0, "n2", state="unavailable", created=True)])
    >>> explain_shard(m, 0, [NodeView("n1", "healthy"), NodeView("n2", "unhealthy")]).summary
    'its only copy is on n2, which is unhealthy: it waits for n2 rather than open an empty copy'
"""

from __future__ import annotations

from typing import Mapping, Sequence

from torua.coordinator.capacity import names, refusals
from torua.coordinator.placement import DISK_ABOVE_HIGH, HEALTHY, NodeView, copies_per_node, plan_placement
from torua.protocol.messages import AllocationExplanation, CopyExplanation, MoveStatus, NodeDecision, ShardMap
from torua.protocol.vocabulary import MapRole, NodeHealth


def explain_shard(
    shard_map: ShardMap,
    shard_id: int,
    nodes: Sequence[NodeView],
    move: MoveStatus | None = None,
    disk_percent: Mapping[str, float | None] | None = None,
    watermarks: tuple[float, float] | None = None,
    missing: Mapping[str, set[int]] | None = None,
) -> AllocationExplanation:
    """The explanation of one shard; `disk_percent` and `watermarks` (low, high) only add numbers to the text.
    `missing`: node -> shards the map counts on it for that its heartbeats say it does not
    have (torua.coordinator.copy_reports); such a copy is not in sync, whatever the map says."""
    if not 0 <= shard_id < shard_map.num_shards:
        raise ValueError(f"shard {shard_id} does not exist (0..{shard_map.num_shards - 1})")
    entry = shard_map.shards[shard_id]
    rf = shard_map.replication_factor
    view = {v.id: v for v in nodes}
    placement = {e.shard_id: e.copies for e in shard_map.shards}
    held = copies_per_node(placement)
    in_sync = {e.shard_id: e.in_sync for e in shard_map.shards}
    planned = list(plan_placement(placement, nodes, shard_map.num_shards, rf, in_sync=in_sync).get(shard_id, ()))
    status_of = {n: (view[n].status if n in view else NodeHealth.UNKNOWN) for n in entry.copies}
    lost = {n for n in entry.copies if shard_id in (missing or {}).get(n, ())}
    in_sync = [n for n in entry.in_sync if n not in lost]

    def why_not(v: NodeView) -> list[tuple[str, str]]:
        return [(code, _with_numbers(code, text, v.id, disk_percent, watermarks)) for code, text in refusals(v, held.get(v.id, 0))]

    primary_up = entry.primary is not None and status_of[entry.primary] == HEALTHY and entry.primary not in lost
    copies = [
        _copy(entry.primary == n, n, n in in_sync, status_of[n], n in planned, view.get(n), held.get(n, 0), why_not, primary_up, n in lost)
        for n in entry.copies
    ]
    # Nothing healthy has the data: a new copy could only be opened empty.
    stranded = bool(entry.copies) and not any(status_of[n] == HEALTHY and n in in_sync for n in entry.copies)
    decisions = []
    for v in sorted(nodes, key=lambda v: v.id):
        if v.id in entry.copies:
            decisions.append(NodeDecision(v.id, "holds_copy", f"{v.id} holds a copy of shard {shard_id}"))
            continue
        reasons = why_not(v)
        if v.id in planned:
            decisions.append(NodeDecision(v.id, "will_take", f"the plan puts a copy of shard {shard_id} on {v.id}"))
        elif reasons:
            decisions.append(NodeDecision(v.id, "cannot_take", "; ".join(t for _, t in reasons), [c for c, _ in reasons]))
        elif stranded:
            decisions.append(NodeDecision(v.id, "could_take", f"{v.id} could hold a copy, but no healthy node has the shard's data to copy from; an empty copy would lose it"))
        elif len(entry.copies) >= rf:
            decisions.append(NodeDecision(v.id, "could_take", f"{v.id} could take a copy, but the shard has its {rf} cop{'y' if rf == 1 else 'ies'} and balance does not ask for one here"))
        else:
            decisions.append(NodeDecision(v.id, "could_take", f"{v.id} could take a copy; it waits for a move slot"))
    status, summary = _summary(entry.shard_id, entry.primary, list(entry.copies), in_sync, entry.target, status_of, rf, planned, decisions, move, lost)
    return AllocationExplanation(
        shard_id=shard_id,
        status=status,
        summary=summary,
        state=entry.state,
        primary=entry.primary,
        replication_factor=rf,
        copies=copies,
        nodes=decisions,
        planned=planned,
        move=move,
    )


def _with_numbers(code: str, text: str, node: str, disk_percent: Mapping[str, float | None] | None, watermarks: tuple[float, float] | None) -> str:
    percent = (disk_percent or {}).get(node)
    if watermarks is None or percent is None or code not in ("disk_low_watermark", "disk_high_watermark"):
        return text
    low, high = watermarks
    mark = ("low", low) if code == "disk_low_watermark" else ("high", high)
    return f"{node}'s disk is {percent:g}% used, above the {mark[0]} watermark ({mark[1]:g}%)"


def _copy(primary: bool, n: str, in_sync: bool, status: str, stays: bool, v: NodeView | None, held: int, why_not, primary_up: bool, lost: bool = False) -> CopyExplanation:
    role = MapRole.PRIMARY if primary else MapRole.REPLICA
    if lost:
        reason = (
            f"{n} says it does not have this copy whole (its data is gone from disk, it was recreated empty, "
            "or the node did not take it up): it is not in sync and is never promoted"
            + ("; the shard fails over to an in-sync replica if there is one" if primary else "; it refills from the primary")
        )
    elif v is None:
        reason = f"{n} is not a known node; the copy is dropped"
    elif not stays:
        leaving = [t for c, t in why_not(v) if c in ("draining", "disk_high_watermark", "gone")]
        if v.max_shards is not None and held > v.max_shards:
            leaving.append(f"{n} holds {held} copies, more than its max_shards {v.max_shards}")
        reason = "the plan moves this copy off: " + ("; ".join(leaving) if leaving else "to balance copies across nodes")
    elif status != HEALTHY:
        reason = f"stays: {n} is {status} and data cannot be copied off a down node"
        if primary:
            reason += "; the primary fails over to an in-sync replica on a healthy node if there is one"
    elif v.draining or v.disk == DISK_ABOVE_HIGH:
        reason = f"stays although {n} should be emptied: no other node may take it"
    elif primary:
        reason = "primary: takes the writes and sends them to the in-sync replicas"
    elif in_sync:
        reason = "in-sync replica: has every acknowledged write and may take over as primary"
    elif primary_up:
        reason = "replica catching up from the primary; not in sync yet"
    else:
        reason = "replica out of sync: it may miss acknowledged writes, so it cannot take over; it catches up once the primary is back"
    return CopyExplanation(n, role, in_sync, status, stays, reason)


def _summary(
    shard_id: int,
    primary: str | None,
    copies: list[str],
    in_sync: list[str],
    target: str | None,
    status_of: dict[str, str],
    rf: int,
    planned: list[str],
    decisions: list[NodeDecision],
    move: MoveStatus | None,
    lost: set[str] | frozenset[str] = frozenset(),
) -> tuple[str, str]:
    refused = [d for d in decisions if d.decision == "cannot_take"]
    why_others = "; ".join(d.reason for d in refused)
    if primary is None:
        if planned:
            return "unassigned", f"not placed yet: the plan puts it on {names(planned)}"
        return "unassigned", "no node may hold a copy: " + (why_others or "no node has joined")
    if primary in lost:
        takers = [n for n in in_sync if n != primary and status_of.get(n) == HEALTHY]
        gone = f"its primary {primary} says it does not have shard {shard_id} (its data is gone from disk, or it did not take it up)"
        if takers:
            return "unavailable", f"{gone}; handing it to in-sync replica {names(takers)}"
        return "unavailable", f"{gone}, and no in-sync replica is on a healthy node: it stays unavailable rather than open an empty copy"
    if status_of[primary] != HEALTHY:
        takers = [n for n in in_sync if n != primary and status_of.get(n) == HEALTHY]
        if takers:
            return "unavailable", f"its primary {primary} is {status_of[primary]}; failing over to in-sync replica {names(takers)}"
        if len(copies) == 1:
            return "unavailable", f"its only copy is on {primary}, which is {status_of[primary]}: it waits for {primary} rather than open an empty copy"
        return "unavailable", (
            f"its primary {primary} is {status_of[primary]} and no in-sync replica is on a healthy node: "
            f"it waits for {primary} rather than lose acknowledged writes"
        )
    if target or move:
        where = target or (move.target if move else "")
        phase = f" (phase {move.phase})" if move else ""
        return "moving", f"a copy is moving from {primary} to {where}{phase}"
    if len(copies) < rf:
        new = [n for n in planned if n not in copies]
        if new:
            return "under_replicated", f"needs {rf} copies, has {len(copies)}: the plan adds {names(new)}"
        may = len(copies) + sum(d.decision == "could_take" for d in decisions)
        return "under_replicated", (
            f"needs {rf} copies but only {may} node{'s' if may != 1 else ''} may hold it" + (f": {why_others}" if why_others else "")
        )
    behind = [n for n in copies if n not in in_sync]
    if behind:
        return "out_of_sync", f"{names(behind)} {'is' if len(behind) == 1 else 'are'} not in sync yet: catching up from {primary}"
    leaving = [n for n in copies if n not in planned]
    if leaving:
        new = [n for n in planned if n not in copies]
        change = f"moves the copy on {names(leaving)} to {names(new)}" if new else f"drops the copy on {names(leaving)}"
        return "assigned", f"all {len(copies)} cop{'y' if len(copies) == 1 else 'ies'} in sync; the plan {change}"
    return "assigned", f"all {len(copies)} cop{'y' if len(copies) == 1 else 'ies'} assigned and in sync; primary on {primary}"
