"""Fencing as tables: copy state, op, request shard epoch and time in; ok / moved / stale_epoch out."""

import pytest

from torua.replication.fencing import CopyState, may_serve

P = CopyState("primary", shard_epoch=7, lease_until=105.0)
F = CopyState("frozen", shard_epoch=7, lease_until=105.0)
R = CopyState("replica", shard_epoch=7)

# (id, state, op, request shard epoch, now, allow_replica_reads, expected)
SERVE = [
    ("no-copy-read", None, "get", 7, 100.0, False, "moved"),
    ("no-copy-write", None, "put", 7, 100.0, False, "moved"),
    ("no-copy-eventual-read", None, "get", 7, 100.0, True, "moved"),
    ("copying-read", CopyState("copying", 7), "get", 7, 100.0, False, "moved"),
    ("copying-write", CopyState("copying", 7), "put", 7, 100.0, False, "moved"),
    ("copying-eventual-read", CopyState("copying", 7), "list", 7, 100.0, True, "moved"),
    ("retired-read", CopyState("retired", 7, 105.0), "get", 7, 100.0, False, "moved"),
    ("retired-write", CopyState("retired", 7, 105.0), "delete", 7, 100.0, False, "moved"),
    # replicas never take writes, and serve reads only when eventual consistency is asked for
    ("replica-put", R, "put", 7, 100.0, False, "moved"),
    ("replica-delete-even-if-eventual", R, "delete", 7, 100.0, True, "moved"),
    ("replica-get", R, "get", 7, 100.0, False, "moved"),
    ("replica-list", R, "list", 7, 100.0, False, "moved"),
    ("replica-eventual-get-same-epoch", R, "get", 7, 100.0, True, "ok"),
    ("replica-eventual-list-older-request", R, "list", 5, 100.0, True, "ok"),
    ("replica-eventual-get-replica-behind", R, "get", 8, 100.0, True, "stale_epoch"),
    ("replica-eventual-needs-no-lease", CopyState("replica", 7, None), "get", 7, 1e9, True, "ok"),
    # primary with a valid lease
    ("primary-put", P, "put", 7, 100.0, False, "ok"),
    ("primary-delete", P, "delete", 7, 100.0, False, "ok"),
    ("primary-get", P, "get", 7, 100.0, False, "ok"),
    ("primary-list", P, "list", 7, 100.0, False, "ok"),
    ("primary-flag-changes-nothing", P, "get", 7, 100.0, True, "ok"),
    ("primary-older-map-still-served", P, "put", 3, 100.0, False, "ok"),
    ("primary-newer-request-node-behind-put", P, "put", 8, 100.0, False, "stale_epoch"),
    ("primary-newer-request-node-behind-get", P, "get", 8, 100.0, False, "stale_epoch"),
    # the lease: valid strictly before lease_until
    ("primary-just-before-expiry", P, "put", 7, 104.999, False, "ok"),
    ("primary-exactly-at-expiry-put", P, "put", 7, 105.0, False, "stale_epoch"),
    ("primary-exactly-at-expiry-get", P, "get", 7, 105.0, False, "stale_epoch"),
    ("primary-after-expiry-get", P, "get", 7, 200.0, False, "stale_epoch"),
    ("primary-after-expiry-eventual-get", P, "get", 7, 200.0, True, "stale_epoch"),
    ("primary-never-granted", CopyState("primary", 7, None), "get", 7, 0.0, False, "stale_epoch"),
    ("primary-expired-and-older-request", P, "put", 3, 105.0, False, "stale_epoch"),
    # frozen: reads as a primary (lease and epoch apply), writes moved whatever the lease
    ("frozen-get", F, "get", 7, 100.0, False, "ok"),
    ("frozen-list-older-request", F, "list", 6, 100.0, False, "ok"),
    ("frozen-put", F, "put", 7, 100.0, False, "moved"),
    ("frozen-delete", F, "delete", 7, 100.0, False, "moved"),
    ("frozen-put-expired-still-moved", F, "put", 7, 105.0, False, "moved"),
    ("frozen-get-expired", F, "get", 7, 105.0, False, "stale_epoch"),
    ("frozen-get-node-behind", F, "get", 8, 100.0, False, "stale_epoch"),
]


@pytest.mark.parametrize("state,op,epoch,now,eventual,expected", [c[1:] for c in SERVE], ids=[c[0] for c in SERVE])
def test_may_serve(state, op, epoch, now, eventual, expected):
    assert may_serve(state, op, epoch, now, allow_replica_reads=eventual) == expected


@pytest.mark.parametrize("state", [None, P, R], ids=["no-copy", "primary", "replica"])
def test_unknown_op_is_refused_loudly(state):
    with pytest.raises(ValueError):
        may_serve(state, "increment", 7, 100.0)


def test_unknown_role_is_refused_when_built():
    with pytest.raises(ValueError):
        CopyState("leader", 7)


# (id, state, sender, expected primary, message shard epoch, expected)
