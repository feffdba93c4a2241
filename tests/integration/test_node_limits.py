"""A node's own limits, set by its flags (real processes): `--max-value-bytes`."""

from __future__ import annotations

import json

import pytest

from torua import Client
from torua.protocol.errors import ToruaError
from tests.support.processes import Cluster

NODE_LIMIT = 1024


@pytest.mark.timeout(120)
async def test_a_node_refuses_values_above_its_max_value_bytes(group, nats_url):
    """The gateway (8 MiB) lets 2 KiB through; the node, started with a 1 KiB limit,
    refuses it with value_too_large (413), and stores what fits."""
    c = Cluster(group, nats_url, shards=2)
    c.start_coordinator(expect_nodes=1)
    c.start_node("n1", extra=["--max-value-bytes", str(NODE_LIMIT)])
    c.start_gateway()
    c.wait_formed()

    status, body, _ = c.request("PUT", "/data/limits/big", b"x" * (NODE_LIMIT + 1))
    assert status == 413, body
    assert json.loads(body)["error"] == {"code": "value_too_large", "message": f"value is {NODE_LIMIT + 1} bytes; the limit is {NODE_LIMIT}"}
    assert c.request("GET", "/data/limits/big")[0] == 404
    assert c.request("PUT", "/data/limits/fits", b"x" * NODE_LIMIT)[0] == 204
    assert c.request("GET", "/data/limits/fits")[:2] == (200, b"x" * NODE_LIMIT)

    async with Client(nats_url) as db:  # straight to the node: the same refusal
        with pytest.raises(ToruaError) as err:
            await db.put("limits/client", b"x" * 2 * NODE_LIMIT)
        assert err.value.code == "value_too_large" and f"the limit is {NODE_LIMIT}" in err.value.message
        assert await db.get("limits/client") is None
