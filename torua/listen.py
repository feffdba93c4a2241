"""Binding a process's HTTP ports (the gateway's REST port, every `--metrics-port`):
a port another process holds is refused with one clear line, not a traceback."""

from __future__ import annotations

import os

from aiohttp import web


class CannotListen(RuntimeError):
    """A port this process should serve on is taken (or the address is not this host's)."""


async def listen(runner: web.AppRunner, host: str, port: int, what: str, flag: str) -> None:
    """Serve `runner` on host:port; `CannotListen` naming `what` and the `flag` to change."""
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CannotListen(f"cannot serve the {what} on {host}:{port}: {reason}; pick another with {flag}") from None
