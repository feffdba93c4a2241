"""Ports chosen for test and bench processes: below the kernel's ephemeral range and
never handed out twice by one process (CI once lost a test to a port that a proxy
chose, and something else bound before it)."""

import socket

from torua.ports import EPHEMERAL_FLOOR, LOWEST, free_port, free_port_range


def test_ports_are_below_the_ephemeral_range_and_never_repeat():
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= p < EPHEMERAL_FLOOR for p in ports)


def test_a_range_is_consecutive_bindable_and_disjoint_from_ports_handed_out():
    single = {free_port() for _ in range(50)}
    base = free_port_range(5)
    assert single.isdisjoint(range(base, base + 5))
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 4))

