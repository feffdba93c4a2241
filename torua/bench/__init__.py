"""`torua bench`: Torua measured beside bare NATS, JetStream KV and aiohttp anchors.

    procs    the processes a run owns (nats-servers, echo responders, `torua up`)
    load     closed-loop load: N requests from C asyncio workers, p50/p99
    targets  one request of each kind, anchors and Torua
    report   the side-by-side table and the JSON file
"""
