"""The coordinator election's decisions as tables: when a leader renews or steps
down, and which coordinator terms a node follows."""

import pytest

from torua.leadership import LeaderTiming, accept_term, leader_step, leads_until

T = LeaderTiming(lease=3.0, margin=0.3)  # renew every 1.0 s

# (id, now, last successful renewal sent at, last attempt at, expected)
STEPS = [
    ("just-renewed", 100.0, 100.0, 100.0, "wait"),
    ("renewal-due", 101.0, 100.0, 100.0, "renew"),
    ("renewal-due-after-a-failed-attempt", 102.0, 100.0, 101.0, "renew"),
    ("attempt-in-flight-not-due-yet", 101.5, 100.0, 101.0, "wait"),
    ("last-moment-to-act", 102.69, 100.0, 102.0, "wait"),
    ("lease-minus-margin-reached", 102.7, 100.0, 102.0, "step_down"),
    ("woke-from-a-long-pause", 160.0, 100.0, 100.5, "step_down"),
    ("never-renewed", 5.0, 0.0, 0.0, "step_down"),
]


@pytest.mark.parametrize("now,sent,attempt,expected", [c[1:] for c in STEPS], ids=[c[0] for c in STEPS])
def test_leader_step(now, sent, attempt, expected):
    assert leader_step(now, sent, attempt, T) == expected


def test_a_leader_stops_before_the_server_can_expire_its_key():
    # The key expires `lease` after the server stored the renewal, which is after it was sent.
    for sent in (0.0, 17.5, 1e6):
        assert leads_until(sent, T) < sent + T.lease


@pytest.mark.parametrize("lease", [0.5, 1.5, 3.0, 30.0, 600.0])
def test_timing_for_a_lease(lease):
    t = LeaderTiming.for_lease(lease)
    assert 0 < t.margin < t.renew_every < lease
    assert t.campaign_every <= min(0.5, lease / 4)


# (id, highest term the node has seen, term of the message, accepted)
TERMS = [
    ("first-term-ever", 0, 1, True),
    ("same-leader", 4, 4, True),
    ("newer-leader", 4, 9, True),
    ("deposed-leader", 9, 4, False),
    ("termless-message-before-any-term", 0, 0, True),
    ("termless-message-after-a-term", 3, 0, False),
]


@pytest.mark.parametrize("seen,term,accepted", [c[1:] for c in TERMS], ids=[c[0] for c in TERMS])
def test_accept_term(seen, term, accepted):
    assert accept_term(seen, term) is accepted
