"""Replication, failover and fencing decisions (docs/design/replication.md).

Every module here is pure: plain data and the time in, a decision out. None of
them imports nats or asyncio or reads a clock; the node and coordinator services
perform what they decide.
"""
