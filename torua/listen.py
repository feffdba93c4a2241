"""Binding a process's HTTP ports (the gateway's REST port, every `--metrics-port`):
a port another process holds is refused with one clear line, not a traceback."""

from __future__ import annotations

import os
import ssl

from aiohttp import web


class CannotListen(RuntimeError):
    """A port this process should serve on is taken (or the address is not this host's)."""


async def listen(runner: web.AppRunner, host: str, port: int, what: str, flag: str, tls: ssl.SSLContext | None = None) -> None:
    """Serve `runner` on host:port (HTTPS with `tls`); `CannotListen` naming `what` and the `flag` to change."""
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CannotListen(f"cannot serve the {what} on {host}:{port}: {reason}; pick another with {flag}") from None


def server_tls(cert: str, key: str) -> ssl.SSLContext | None:
    """The TLS context of an HTTPS port from a certificate chain and its key (PEM files),
    or None for plain HTTP (neither given)."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
