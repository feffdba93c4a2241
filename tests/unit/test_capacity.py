"""Tables for capacity decisions: disk levels against the watermarks, and the room check before an evacuation."""

from __future__ import annotations

import pytest

from torua.coordinator.capacity import disk_level, disk_percent, evacuation_room, names, refusals
from torua.coordinator.placement import NodeView, Placement, plan_placement

# (id, used, free, low, high, level)
LEVELS = [
    ("empty-disk", 0, 100, 85.0, 90.0, "ok"),
    ("below-low", 80, 20, 85.0, 90.0, "ok"),
    ("at-low-is-not-above", 85, 15, 85.0, 90.0, "ok"),
    ("above-low", 86, 14, 85.0, 90.0, "above_low"),
    ("at-high-is-above-low", 90, 10, 85.0, 90.0, "above_low"),
    ("above-high", 95, 5, 85.0, 90.0, "above_high"),
    ("full", 100, 0, 85.0, 90.0, "above_high"),
    ("equal-watermarks", 50, 50, 40.0, 40.0, "above_high"),
    ("not-reported", 0, 0, 1.0, 1.0, "ok"),
    ("nonsense-is-not-reported", -5, 10, 1.0, 1.0, "ok"),
]


@pytest.mark.parametrize("used, free, low, high, level", [c[1:] for c in LEVELS], ids=[c[0] for c in LEVELS])
def test_disk_level(used: int, free: int, low: float, high: float, level: str) -> None:
    assert disk_level(used, free, low, high) == level


# (id, percent used, level judged last, level now): a level is left 1 point below its watermark
HYSTERESIS = [
    ("stays-above-low-just-under-it", 84.5, "above_low", "above_low"),
    ("leaves-above-low-a-point-under", 84.0, "above_low", "ok"),
    ("ok-just-under-low-stays-ok", 84.5, "ok", "ok"),
    ("stays-above-high-just-under-it", 89.5, "above_high", "above_high"),
    ("from-above-high-a-point-under-is-above-low", 88.0, "above_high", "above_low"),
    ("from-above-high-far-under-is-ok", 50.0, "above_high", "ok"),
    ("rising-needs-no-margin", 90.5, "above_low", "above_high"),
]


@pytest.mark.parametrize("percent, previous, level", [c[1:] for c in HYSTERESIS], ids=[c[0] for c in HYSTERESIS])
def test_disk_level_hysteresis(percent: float, previous: str, level: str) -> None:
    used = round(percent * 10)
    assert disk_level(used, 1000 - used, 85.0, 90.0, previous) == level


def test_disk_percent_is_used_over_used_plus_free_like_df() -> None:
    assert disk_percent(used=22, free=78) == 22.0
    assert disk_percent(used=1, free=2) == 33.33
    assert disk_percent(0, 0) is None


@pytest.mark.parametrize("ids, text", [([], ""), (["n1"], "n1"), (["n1", "n2"], "n1 and n2"), (["a", "b", "c"], "a, b and c")])
def test_names(ids: list[str], text: str) -> None:
    assert names(ids) == text


# (id, view, held, codes)
REFUSALS = [
    ("takes-copies", NodeView("n", "healthy"), 3, []),
    ("below-cap", NodeView("n", "healthy", max_shards=4), 3, []),
    ("at-cap", NodeView("n", "healthy", max_shards=3), 3, ["max_shards"]),
    ("unhealthy", NodeView("n", "unhealthy"), 0, ["unhealthy"]),
    ("gone", NodeView("n", "unhealthy", gone=True), 0, ["gone"]),
    ("draining", NodeView("n", "healthy", draining=True), 0, ["draining"]),
    ("stopping", NodeView("n", "healthy", stopping=True), 0, ["stopping"]),
    ("maintenance", NodeView("n", "healthy", maintenance=True), 0, ["maintenance"]),
    ("disk-low", NodeView("n", "healthy", disk="above_low"), 0, ["disk_low_watermark"]),
    ("disk-high", NodeView("n", "healthy", disk="above_high"), 0, ["disk_high_watermark"]),
    ("several", NodeView("n", "healthy", maintenance=True, disk="above_low", max_shards=0), 0, ["maintenance", "disk_low_watermark", "max_shards"]),
]


@pytest.mark.parametrize("view, held, codes", [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_refusals(view: NodeView, held: int, codes: list[str]) -> None:
    assert [code for code, _ in refusals(view, held)] == codes


def three(**overrides: dict) -> list[NodeView]:
    return [NodeView(i, "healthy", **overrides.get(i, {})) for i in ("n1", "n2", "n3")]


SIX_ON_N1: Placement = {s: ("n1",) for s in range(6)} | {s: ("n2",) for s in range(6, 9)} | {s: ("n3",) for s in range(9, 12)}

# (id, node, placement, nodes, ok, message or a part of it)
ROOM = [
    ("room-unlimited", "n1", SIX_ON_N1, three(), True, "n2 and n3 can take the 6 copies on n1"),
    ("room-exactly", "n1", SIX_ON_N1, three(n2={"max_shards": 6}, n3={"max_shards": 6}), True, "can take the 6 copies"),
    ("caps-too-small", "n1", SIX_ON_N1, three(n2={"max_shards": 5}, n3={"max_shards": 5}), False,
     "n2 and n3 can take 4 more copies but n1 holds 6"),
    ("one-full-one-short", "n1", SIX_ON_N1, three(n2={"max_shards": 3}, n3={"max_shards": 5}), False,
     "n3 can take 2 more copies but n1 holds 6"),
    ("others-take-nothing", "n1", SIX_ON_N1, three(n2={"maintenance": True}, n3={"disk": "above_low"}), False,
     "n1 holds 6 copies and no other node may take one: n2 is in maintenance; n3's disk is above the low watermark"),
    ("one-other-down", "n1", SIX_ON_N1, [NodeView("n1", "healthy"), NodeView("n2", "unhealthy"), NodeView("n3", "healthy")], True,
     "n3 can take the 6 copies on n1"),
    ("alone", "n1", {0: ("n1",)}, [NodeView("n1", "healthy")], False, "no other node may take one: there is no other node"),
    ("holds-nothing", "n3", {0: ("n1",)}, three(), True, "n3 holds no copy"),
    ("node-down", "n1", SIX_ON_N1, [NodeView("n1", "unhealthy"), NodeView("n2", "healthy")], False,
     "n1 is unhealthy: its copies cannot be copied off until it is back"),
    ("unknown-node", "n9", SIX_ON_N1, three(), False, "node 'n9' is not part of the cluster"),
    ("rf2-two-nodes", "n1", {s: ("n1", "n2") for s in range(4)}, [NodeView("n1", "healthy"), NodeView("n2", "healthy")], False,
     "shards 0, 1, 2, 3 on n1 cannot move: n2 already holds a copy of them (copies of a shard must be on distinct nodes)"),
    ("rf2-three-nodes", "n1", plan_placement({}, three(), 6, 2), three(), True, "n2 and n3 can take the 4 copies on n1"),
    ("rf3-three-nodes", "n1", plan_placement({}, three(), 6, 3), three(), False,
     "shards 0, 1, 2, 3, 4, 5 on n1 cannot move: n2 and n3 already hold a copy of them"),
    ("distinct-and-full", "n1", {0: ("n1", "n2"), 1: ("n1", "n2"), 2: ("n3",)},
     three(n2={"max_shards": 9}, n3={"max_shards": 2}), False,
     "shard 1 on n1 cannot move: n2 already holds a copy of it (copies of a shard must be on distinct nodes) and n3 is full"),
    ("room-left-after-another-drain", "n1", SIX_ON_N1, three(n2={"draining": True}, n3={"max_shards": 9}), True,
     "n3 can take the 6 copies on n1"),
    # the planner gives n2's drain the room first, so evacuating n3 too would stall: refused
    ("room-taken-by-another-drain", "n3", SIX_ON_N1, three(n1={"max_shards": 9}, n2={"draining": True}), False,
     "shards 9, 10, 11 on n3 cannot move: n1 is full"),
]


@pytest.mark.parametrize("node, placement, nodes, ok, message", [c[1:] for c in ROOM], ids=[c[0] for c in ROOM])
def test_evacuation_room(node: str, placement: Placement, nodes: list[NodeView], ok: bool, message: str) -> None:
    rf = max(len(c) for c in placement.values())
    room = evacuation_room(node, placement, nodes, max(placement) + 1, rf)
    assert room.ok is ok
    assert message in room.message, room.message


@pytest.mark.parametrize("module", ["capacity", "explain", "placement"])
def test_capacity_decisions_are_pure(module: str) -> None:
    """No NATS, no event loop, no clock, no files: only plain data in and out."""
    import ast
    import importlib
    from pathlib import Path

    path = Path(importlib.import_module(f"torua.coordinator.{module}").__file__)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"nats", "asyncio", "time", "datetime", "os", "socket", "psutil", "pathlib", "random"}
