"""A node's or the coordinator's refusal reaches users as it is, except a bug's text
(`internal`: an exception message, paths and all), which only the gateway log gets."""

import pytest

from torua.gateway.service import _refusal, broadcast_reply_view, peer_message
from torua.protocol.messages import Ack, BroadcastReply

SECRET = "sqlite3.OperationalError: unable to open /var/lib/torua/n1/shard-3/store.db"


@pytest.mark.parametrize(
    "code,message,shown",
    [
        ("bad_request", "key must not be empty", "key must not be empty"),
        ("value_too_large", "value is 9 bytes; the limit is 8", "value is 9 bytes; the limit is 8"),
        ("conflict", None, None),
        ("internal", SECRET, "internal error on node n1; see its log"),
        ("internal", None, "internal error on node n1; see its log"),
    ],
)
def test_peer_messages(code, message, shown, caplog):
    assert peer_message(code, message, "node n1") == shown
    if code == "internal" and message:
        assert SECRET in caplog.text


def test_a_coordinator_bug_is_not_shown():
    error = _refusal(Ack(False, "internal", SECRET, detail={"x": "y"}))
    assert error.code == "internal" and SECRET not in error.message and not error.fields
    error = _refusal(Ack(False, "conflict", "shard 3 is already moving", detail={}))
    assert (error.code, error.message) == ("conflict", "shard 3 is already moving")


def test_a_nodes_bug_in_a_broadcast_reply_is_not_shown():
    view = broadcast_reply_view(BroadcastReply("n2", False, "ping", error_code="internal", error_message=SECRET))
    assert view["error"] == {"code": "internal", "message": "internal error on node n2; see its log"}
    view = broadcast_reply_view(BroadcastReply("n2", False, "reboot", error_code="bad_request", error_message="unknown kind reboot"))
    assert view["error"] == {"code": "bad_request", "message": "unknown kind reboot"}
