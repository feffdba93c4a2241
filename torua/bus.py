"""The connection to NATS every process shares: connect with a deadline and a
visible retry count, then keep reconnecting for as long as the process lives.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS

log = logging.getLogger("torua.bus")


class NatsUnreachable(RuntimeError):
    """NATS did not answer within the connect deadline."""


async def connect(url: str, name: str, timeout: float = 10.0) -> NATS:
    """Connect to `url` (comma-separated servers), retrying until `timeout` seconds pass.

    Each failed attempt is logged with its number; past the deadline the caller
    gets `NatsUnreachable`. Once connected, the client reconnects forever.
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    attempts = 0
    last: list[str] = [""]

    async def on_error(exc: Exception) -> None:
        nonlocal attempts
        if nc.is_connected:
            await _log_error(exc)
            return
        attempts += 1
        last[0] = str(exc) or type(exc).__name__
        log.warning("NATS at %s not reachable (attempt %d): %s; retrying", url, attempts, last[0])

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):  # a close we asked for is not news
            log.warning("disconnected from NATS")

    nc = NATS()
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=servers,
                name=name,
                connect_timeout=min(2.0, timeout),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=_reconnected,
            ),
            timeout,
        )
    except (asyncio.TimeoutError, Exception) as exc:
        try:
            await nc.close()
        except Exception:
            pass
        reason = last[0] or str(exc) or type(exc).__name__
        raise NatsUnreachable(f"cannot reach NATS at {url} after {max(attempts, 1)} attempts in {timeout:g}s: {reason}") from None
    return nc


async def _log_error(exc: Exception) -> None:
    log.warning("NATS error: %s", exc)


async def _reconnected() -> None:
    log.info("reconnected to NATS")


def setup_logging(level: str, process: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s",
    )
