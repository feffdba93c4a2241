"""The cluster settings as pure data: a change is validated whole, and either gives
the new settings or names every problem (and the current settings stand)."""

from __future__ import annotations

import dataclasses

import pytest

from torua.cluster_settings import ClusterSettings, SettingsError, apply_change, describe, from_dict
from torua.protocol.codec import decode, encode
from torua.protocol.messages import BroadcastMessage, BroadcastReply, ClusterConfig, LeaseGrant, SettingsChange, SettingsUpdate

DEFAULTS = ClusterSettings()

# (what, change, expected changes on top of the defaults)
VALID = [
    ("one float", {"heartbeat_interval": 0.5}, {"heartbeat_interval": 0.5}),
    ("an int for a float", {"heartbeat_interval": 2}, {"heartbeat_interval": 2.0}),
    ("a whole float for an int", {"max_moves": 3.0}, {"max_moves": 3}),
    ("several at once", {"heartbeat_interval": 0.5, "max_moves": 3}, {"heartbeat_interval": 0.5, "max_moves": 3}),
    ("lowest", {"heartbeat_interval": 0.05, "unhealthy_after": 1, "node_left_delay": 0}, {"heartbeat_interval": 0.05, "unhealthy_after": 1, "node_left_delay": 0.0}),
    ("highest", {"max_moves": 64, "replication_factor": 5}, {"max_moves": 64, "replication_factor": 5}),
    ("a choice", {"log_level": "debug"}, {"log_level": "debug"}),
    ("a bool", {"auto_rebalance": True}, {"auto_rebalance": True}),
    ("watermarks equal", {"disk_low_watermark": 90, "disk_high_watermark": 90}, {"disk_low_watermark": 90.0, "disk_high_watermark": 90.0}),
    ("rf 2 with the default unhealthy_after", {"replication_factor": 2}, {"replication_factor": 2}),
    ("the same value again", {"max_moves": 2}, {}),
]


@pytest.mark.parametrize("what,change,expected", VALID, ids=[v[0] for v in VALID])
def test_a_valid_change_gives_the_new_settings(what, change, expected):
    assert apply_change(DEFAULTS, change) == dataclasses.replace(DEFAULTS, **expected)


# (what, current, change, the fields named in the problems)
INVALID = [
    ("unknown name", DEFAULTS, {"heartbeat": 1}, {"heartbeat"}),
    ("non-string name", DEFAULTS, {1: 2}, {"1"}),
    ("string for a float", DEFAULTS, {"heartbeat_interval": "1"}, {"heartbeat_interval"}),
    ("string for an int", DEFAULTS, {"max_moves": "3"}, {"max_moves"}),
    ("fraction for an int", DEFAULTS, {"max_moves": 2.5}, {"max_moves"}),
    ("bool for an int", DEFAULTS, {"max_moves": True}, {"max_moves"}),
    ("bool for a float", DEFAULTS, {"heartbeat_interval": False}, {"heartbeat_interval"}),
    ("int for a bool", DEFAULTS, {"auto_rebalance": 1}, {"auto_rebalance"}),
    ("null", DEFAULTS, {"max_moves": None}, {"max_moves"}),
    ("a list", DEFAULTS, {"max_moves": [3]}, {"max_moves"}),
    ("NaN", DEFAULTS, {"heartbeat_interval": float("nan")}, {"heartbeat_interval"}),
    ("infinity", DEFAULTS, {"node_left_delay": float("inf")}, {"node_left_delay"}),
    ("below the range", DEFAULTS, {"heartbeat_interval": 0.01}, {"heartbeat_interval"}),
    ("above the range", DEFAULTS, {"heartbeat_interval": 61}, {"heartbeat_interval"}),
    ("int below", DEFAULTS, {"max_moves": 0}, {"max_moves"}),
    ("int above", DEFAULTS, {"replication_factor": 6}, {"replication_factor"}),
    ("negative", DEFAULTS, {"node_left_delay": -1}, {"node_left_delay"}),
    ("not a choice", DEFAULTS, {"log_level": "verbose"}, {"log_level"}),
    ("every problem at once", DEFAULTS, {"max_moves": 0, "log_level": "loud", "nope": 1}, {"max_moves", "log_level", "nope"}),
    ("high watermark below low", DEFAULTS, {"disk_high_watermark": 80}, {"disk_high_watermark"}),
    ("low watermark above high", DEFAULTS, {"disk_low_watermark": 95}, {"disk_high_watermark"}),
    ("rf 2 with unhealthy_after 1", dataclasses.replace(DEFAULTS, unhealthy_after=1), {"replication_factor": 2}, {"unhealthy_after"}),
    ("unhealthy_after 1 with rf 2", dataclasses.replace(DEFAULTS, replication_factor=2), {"unhealthy_after": 1}, {"unhealthy_after"}),
    ("empty body", DEFAULTS, {}, {"body"}),
    ("a list body", DEFAULTS, [{"max_moves": 3}], {"body"}),
    ("a string body", DEFAULTS, "max_moves=3", {"body"}),
    ("null body", DEFAULTS, None, {"body"}),
]


@pytest.mark.parametrize("what,current,change,fields", INVALID, ids=[v[0] for v in INVALID])
def test_a_bad_change_names_every_problem_and_changes_nothing(what, current, change, fields):
    before = dataclasses.replace(current)
    with pytest.raises(SettingsError) as err:
        apply_change(current, change)
    assert set(err.value.problems) == fields
    assert all(err.value.problems.values())  # each says what is wrong
    assert current == before


def test_the_problems_say_what_is_allowed():
    with pytest.raises(SettingsError) as err:
        apply_change(DEFAULTS, {"heartbeat_interval": 0, "log_level": "loud", "x": 1})
    problems = err.value.problems
    assert "0.05" in problems["heartbeat_interval"] and "60" in problems["heartbeat_interval"]
    assert "debug" in problems["log_level"]
    assert "heartbeat_interval" in problems["x"]  # lists the known settings


def test_from_dict_ignores_unknown_stored_keys():
    stored = {**DEFAULTS.to_dict(), "max_moves": 4, "a_setting_of_a_newer_version": 7}
    assert from_dict(stored) == dataclasses.replace(DEFAULTS, max_moves=4)


def test_from_dict_of_an_older_version_keeps_defaults_for_what_it_lacks():
    assert from_dict({"heartbeat_interval": 0.5}) == dataclasses.replace(DEFAULTS, heartbeat_interval=0.5)
    assert from_dict({"only_unknown": 1}) == DEFAULTS


@pytest.mark.parametrize("stored", [{"max_moves": 0}, {"max_moves": "x"}, [1], "x", None])
def test_from_dict_refuses_bad_stored_values(stored):
    with pytest.raises(SettingsError):
        from_dict(stored)


def test_settings_round_trip_through_a_dict():
    s = dataclasses.replace(DEFAULTS, heartbeat_interval=0.3, log_level="warning", auto_rebalance=True)
    assert from_dict(s.to_dict()) == s


def test_describe_covers_every_setting():
    d = describe()
    assert set(d) == set(DEFAULTS.to_dict())
    assert d["heartbeat_interval"] == {"type": "float", "help": d["heartbeat_interval"]["help"], "min": 0.05, "max": 60.0}
    assert d["log_level"]["choices"] == ["debug", "info", "warning", "error"]
    assert all(entry["help"] for entry in d.values())


def test_settings_messages_round_trip():
    update = SettingsUpdate(7, DEFAULTS.to_dict(), term=3)
    for msg in (
        SettingsChange({"max_moves": 3}),
        ClusterConfig(DEFAULTS.to_dict(), 7, ["n1"], ["n2"]),
        BroadcastMessage("ping", {}, 1.5),
        BroadcastReply("n1", False, "nope", {}, "bad_request", "unknown broadcast kind"),
        LeaseGrant(3, 2.0, [(0, 1)], term=3, settings=update),
        LeaseGrant(3, 2.0),
    ):
        assert decode(type(msg), encode(msg)) == msg
