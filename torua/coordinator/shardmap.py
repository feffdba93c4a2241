"""Turning placements into shard maps and back: pure functions over plain data.

The coordinator's decisions (what the map says after formation, after a node
changes health, after a move step) live here so they can be tested by tables.
"""

from __future__ import annotations

from dataclasses import replace

from torua.coordinator.placement import Placement
from torua.protocol.errors import ToruaError
from torua.protocol.messages import Assignment, AssignedShard, ShardEntry, ShardMap
from torua.protocol.vocabulary import InSyncAction, MapRole, NodeHealth, ShardState


def placement_of(shard_map: ShardMap) -> Placement:
    return {e.shard_id: e.copies for e in shard_map.shards}


def empty_map(num_shards: int, replication_factor: int, cluster_id: str) -> ShardMap:
    return ShardMap(
        epoch=0,
        num_shards=num_shards,
        replication_factor=replication_factor,
        shards=[ShardEntry(shard_id=i) for i in range(num_shards)],
        cluster_id=cluster_id,
    )


def shard_state(entry: ShardEntry, health: dict[str, str], not_served: bool = False) -> ShardState:
    """active, moving, unassigned, or unavailable (its primary is not healthy, or
    says it does not have the shard: `not_served`, see torua.coordinator.copy_reports)."""
    if entry.primary is None:
        return ShardState.UNASSIGNED
    if health.get(entry.primary) != NodeHealth.HEALTHY or not_served:
        return ShardState.UNAVAILABLE
    return ShardState.MOVING if entry.target else ShardState.ACTIVE


def with_states(shard_map: ShardMap, health: dict[str, str], not_served: set[int] | frozenset[int] = frozenset()) -> ShardMap:
    """The map with every shard's state brought up to date; same object if nothing changed.
    `not_served`: shards whose primary's node says it does not have them."""
    shards = [replace(e, state=shard_state(e, health, e.shard_id in not_served)) for e in shard_map.shards]
    if shards == shard_map.shards:
        return shard_map
    return replace(shard_map, shards=shards)


def assign_unplaced(shard_map: ShardMap, target: Placement, health: dict[str, str]) -> ShardMap:
    """Give every shard that has no holder yet the primary `target` names (formation)."""
    shards = []
    for e in shard_map.shards:
        copies = target.get(e.shard_id, ())
        if e.primary is None and copies:
            e = replace(e, primary=copies[0], replicas=list(copies[1:]), in_sync=list(copies))
        shards.append(replace(e, state=shard_state(e, health)))
    return replace(shard_map, shards=shards)


def set_entry(shard_map: ShardMap, shard_id: int, **changes) -> ShardMap:
    shards = list(shard_map.shards)
    shards[shard_id] = replace(shards[shard_id], **changes)
    return replace(shard_map, shards=shards)


def bump(shard_map: ShardMap) -> ShardMap:
    return replace(shard_map, epoch=shard_map.epoch + 1)


def assignment_for(shard_map: ShardMap, node_id: str) -> Assignment:
    """What `node_id` must hold at this epoch; `create` only for shards never created."""
    return Assignment(
        epoch=shard_map.epoch,
        node_id=node_id,
        num_shards=shard_map.num_shards,
        shards=[
            AssignedShard(
                shard_id=e.shard_id,
                role=MapRole.PRIMARY if e.primary == node_id else MapRole.REPLICA,
                create=not e.created,
                shard_epoch=e.shard_epoch,
                primary=e.primary,
                replicas=list(e.replicas),
                in_sync=list(e.in_sync),
                promotions=list(e.promotions),
            )
            for e in shard_map.shards
            if node_id in e.copies
        ],
    )


def primaries_of(shard_map: ShardMap, node_id: str) -> set[int]:
    return {e.shard_id for e in shard_map.shards if e.primary == node_id}


def roles_of(shard_map: ShardMap, node_id: str) -> dict[int, MapRole]:
    """shard -> primary | replica for every copy the map gives `node_id`."""
    return {e.shard_id: MapRole.PRIMARY if e.primary == node_id else MapRole.REPLICA for e in shard_map.shards if node_id in e.copies}


def with_shard_epochs(old: ShardMap | None, new: ShardMap) -> ShardMap:
    """Give every shard whose primary changed between `old` and `new` the new map epoch
    as its shard epoch: the primary's incarnation, used to fence the old one."""
    shards = []
    for e in new.shards:
        before = old.shards[e.shard_id].primary if old is not None and e.shard_id < len(old.shards) else None
        if e.primary is not None and e.primary != before:
            e = replace(e, shard_epoch=new.epoch)
        shards.append(e)
    return replace(new, shards=shards)


def change_in_sync(shard_map: ShardMap, shard_id: int, shard_epoch: int, node_id: str, action: InSyncAction) -> ShardMap:
    """The map with `node_id` taken out of / put into shard's in-sync set, as its primary asks.

    Refused (ToruaError conflict) when the request comes from an older primary
    incarnation, names the primary itself, or a node that holds no copy.
    """
    if not 0 <= shard_id < shard_map.num_shards:
        raise ToruaError("unknown_shard", f"shard {shard_id} does not exist")
    entry = shard_map.shards[shard_id]
    if shard_epoch != entry.shard_epoch:
        raise ToruaError("stale_epoch", f"shard {shard_id} is at shard epoch {entry.shard_epoch}, not {shard_epoch}")
    if node_id == entry.primary or node_id not in entry.replicas:
        raise ToruaError("conflict", f"{node_id} is not a replica of shard {shard_id}")
    if action == InSyncAction.REMOVE:
        in_sync = [n for n in entry.in_sync if n != node_id]
    elif action == InSyncAction.ADD:
        in_sync = entry.in_sync + ([node_id] if node_id not in entry.in_sync else [])
    else:
        raise ToruaError("bad_request", f"unknown in-sync action {action!r}")
    if in_sync == entry.in_sync:
        return shard_map
    return set_entry(shard_map, shard_id, in_sync=in_sync)


def check_manual_move(shard_map: ShardMap | None, health: dict[str, str], moving: set[int], shard_id: int, node_id: str) -> str:
    """May an operator move `shard_id` to `node_id` now? "moving" or "already_there", else a ToruaError."""
    if shard_map is None:
        raise ToruaError("unavailable", "the cluster has not formed yet")
    if not 0 <= shard_id < shard_map.num_shards:
        raise ToruaError("unknown_shard", f"shard {shard_id} does not exist (0..{shard_map.num_shards - 1})")
    if node_id not in health:
        raise ToruaError("unknown_node", f"node {node_id!r} is not part of the cluster")
    if health[node_id] != NodeHealth.HEALTHY:
        raise ToruaError("conflict", f"node {node_id} is {health[node_id]}; it cannot take shards now")
    entry = shard_map.shards[shard_id]
    if entry.primary == node_id:
        return "already_there"
    if shard_id in moving:
        raise ToruaError("conflict", f"shard {shard_id} is already moving to {entry.target}")
    if entry.primary is None or health.get(entry.primary) != NodeHealth.HEALTHY:
        raise ToruaError("conflict", f"shard {shard_id} has no healthy holder to copy from")
    return "moving"
