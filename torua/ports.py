"""Choosing free TCP ports for processes started on this machine (tests, the bench).

A port found free is only free until someone binds it. Two things take such a port
before our server does: the kernel, which hands out the same ephemeral ports to
outgoing connections (Linux: 32768 and up), and ourselves, asking twice. So ports are
chosen at random below the ephemeral range, and one process never hands out the same
port twice.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading

EPHEMERAL_FLOOR = 32768  # Linux's default ip_local_port_range starts here
LOWEST = 20000

_lock = threading.Lock()
_handed_out: set[int] = set()
_random = random.SystemRandom()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # Servers bind with SO_REUSEADDR, so a port held only by TIME_WAIT is free to them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports, free now and not handed out before by
    this process."""
    with _lock:
        for _ in range(1000):
            base = _random.randrange(LOWEST, EPHEMERAL_FLOOR - count)
            ports = range(base, base + count)
            if _handed_out.intersection(ports):
                continue
            if _all_bindable(ports):
                _handed_out.update(ports)
                return base
    raise RuntimeError(f"found no {count} consecutive free ports in {LOWEST}..{EPHEMERAL_FLOOR - 1}")


def free_port() -> int:
    return free_port_range(1)


def _all_bindable(ports: range) -> bool:
    try:
        with contextlib.ExitStack() as stack:
            for port in ports:
                sock = stack.enter_context(socket.socket())
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
