"""Capacity: how full a node's disk is against the watermarks, why a node takes
no new copies, and whether the rest of the cluster has room to evacuate a node.

Pure (no I/O, no clock): the coordinator passes what the nodes' heartbeats
report and the current settings, at the moment it decides.

    >>> disk_level(used=87, free=13, low=85.0, high=90.0)
    'above_low'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from torua.coordinator.placement import (
    DISK_ABOVE_HIGH,
    DISK_ABOVE_LOW,
    DISK_OK,
    HEALTHY,
    NodeView,
    Placement,
    copies_per_node,
    plan_placement,
    takes_new_copies,
)


def disk_percent(used: int, free: int) -> float | None:
    """Percent of the disk in use, as `df` shows it; None when the node reported nothing."""
    if used < 0 or free < 0 or used + free <= 0:
        return None
    return round(100.0 * used / (used + free), 2)


DISK_MARGIN = 1.0  # percentage points a disk must fall below a watermark to count as under it again


def disk_level(used: int, free: int, low: float, high: float, previous: str = DISK_OK) -> str:
    """ok, above_low (no new copies) or above_high (copies move off); ok when unknown.

    A level, once reached, is left only when use falls DISK_MARGIN below its
    watermark (`previous` is the level judged last), so a disk hovering at a
    watermark does not make placement plan again on every heartbeat."""
    percent = disk_percent(used, free)
    if percent is None:
        return DISK_OK
    if percent > high or (previous == DISK_ABOVE_HIGH and percent > high - DISK_MARGIN):
        return DISK_ABOVE_HIGH
    if percent > low or (previous in (DISK_ABOVE_LOW, DISK_ABOVE_HIGH) and percent > low - DISK_MARGIN):
        return DISK_ABOVE_LOW
    return DISK_OK


def names(ids: Iterable[str]) -> str:
    """n1 / n1 and n2 / n1, n2 and n3."""
    ids = list(ids)
    if len(ids) <= 1:
        return "".join(ids)
    return ", ".join(ids[:-1]) + " and " + ids[-1]


def refusals(v: NodeView, held: int) -> list[tuple[str, str]]:
    """Why node `v` (holding `held` copies) takes no new copy, as (code, text); [] if it may."""
    out: list[tuple[str, str]] = []
    if v.gone:
        out.append(("gone", f"{v.id} has been unhealthy longer than node_left_delay; its copies count as lost"))
    elif v.status != HEALTHY:
        out.append(("unhealthy", f"{v.id} is {v.status}"))
    if v.draining:
        out.append(("draining", f"{v.id} is being drained or evacuated"))
    if v.stopping:
        out.append(("stopping", f"{v.id} is stopping: it asked for its primaries to be handed over"))
    if v.maintenance:
        out.append(("maintenance", f"{v.id} is in maintenance"))
    if v.disk == DISK_ABOVE_HIGH:
        out.append(("disk_high_watermark", f"{v.id}'s disk is above the high watermark"))
    elif v.disk == DISK_ABOVE_LOW:
        out.append(("disk_low_watermark", f"{v.id}'s disk is above the low watermark"))
    if v.max_shards is not None and held >= v.max_shards:
        out.append(("max_shards", f"{v.id} holds {_copies(held)}, its max_shards is {v.max_shards}"))
    return out


@dataclass(frozen=True)
class Room:
    """The answer of `evacuation_room`: `ok`, or `message` says what is missing."""

    ok: bool
    copies: int  # copies the node holds now
    places: int | None  # copies the other nodes can take in all; None = no limit
    message: str


def evacuation_room(node_id: str, placement: Placement, nodes: Sequence[NodeView], num_shards: int, replication_factor: int) -> Room:
    """Would draining `node_id` now empty it: do the other nodes that take new copies
    have room for every copy on it, within max_shards and with each shard's copies
    on distinct nodes?

    It asks the planner itself, so the answer is what the evacuation will do; the
    counts only word the refusal, which always names what is missing.

    >>> nodes = [NodeView("n1", "healthy"), NodeView("n2", "healthy", max_shards=1)]
    >>> evacuation_room("n1", {0: ("n1",), 1: ("n1",)}, nodes, 2, 1).message
    'n2 can take 1 more copy but n1 holds 2'
    """
    view = {v.id: v for v in nodes}
    if node_id not in view:
        return Room(False, 0, 0, f"node {node_id!r} is not part of the cluster")
    me = view[node_id]
    if me.status != HEALTHY:
        return Room(False, 0, 0, f"{node_id} is {me.status}: its copies cannot be copied off until it is back")
    shards = sorted(s for s, copies in placement.items() if node_id in copies)
    held = copies_per_node(placement)
    takers = sorted(n for n, v in view.items() if n != node_id and takes_new_copies(v))
    free = {n: None if view[n].max_shards is None else max(0, view[n].max_shards - held.get(n, 0)) for n in takers}
    places = None if any(f is None for f in free.values()) else sum(f or 0 for f in free.values())
    if not shards:
        return Room(True, 0, places, f"{node_id} holds no copy")
    if not takers:
        why = "; ".join(text for n in sorted(view) if n != node_id for _, text in refusals(view[n], held.get(n, 0)))
        return Room(False, len(shards), 0, f"{node_id} holds {_copies(len(shards))} and no other node may take one: {why or 'there is no other node'}")
    if places is not None and places < len(shards):
        who = [n for n in takers if free[n]] or takers
        return Room(False, len(shards), places, f"{names(who)} can take {_copies(places, 'more ')} but {node_id} holds {len(shards)}")
    leaving = [replace(v, draining=True) if v.id == node_id else v for v in nodes]
    target = plan_placement(placement, leaving, num_shards, replication_factor)
    stuck = sorted(s for s, copies in target.items() if node_id in copies)
    if not stuck:
        return Room(True, len(shards), places, f"{names(takers)} can take the {_copies(len(shards))} on {node_id}")
    blocked = sorted({n for s in stuck for n in takers if n in target[s]})
    full = sorted(n for n in takers if n not in blocked)
    many = len(stuck) > 1
    message = f"shard{'s' if many else ''} {', '.join(map(str, stuck))} on {node_id} cannot move"
    if blocked:
        message += (
            f": {names(blocked)} already hold{'s' if len(blocked) == 1 else ''} a copy of {'them' if many else 'it'}"
            " (copies of a shard must be on distinct nodes)"
        )
    if full:
        message += f"{' and' if blocked else ':'} {names(full)} {'is' if len(full) == 1 else 'are'} full"
    return Room(False, len(shards), places, message)


def _copies(n: int, more: str = "") -> str:
    return f"{n} {more}cop{'y' if n == 1 else 'ies'}"
