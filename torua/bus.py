"""The connection to NATS every process shares: connect with a deadline and a
visible retry count, then keep reconnecting for as long as the process lives.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats
from nats.aio.client import Client as NATS

log = logging.getLogger("torua.bus")


class NatsUnreachable(RuntimeError):
    """NATS did not answer within the connect deadline."""


async def connect(url: str, name: str, timeout: float = 10.0) -> NATS:
    """Connect to `url` (comma-separated servers), retrying until `timeout` seconds pass."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    deadline = time.monotonic() + timeout
    attempt = 0
    last: Exception | None = None
    while True:
        attempt += 1
        try:
            return await nats.connect(
                servers=servers,
                name=name,
                connect_timeout=min(2.0, max(0.2, deadline - time.monotonic())),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=_log_error,
                disconnected_cb=_disconnected,
                reconnected_cb=_reconnected,
            )
        except Exception as exc:  # nats-py raises several types for "no server"
            last = exc
            if time.monotonic() >= deadline:
                raise NatsUnreachable(
                    f"cannot reach NATS at {url} after {attempt} attempts in {timeout:.0f}s: {exc or type(exc).__name__}"
                ) from None
            log.warning("NATS at %s not reachable (attempt %d): %s; retrying", url, attempt, exc or type(exc).__name__)
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise AssertionError(last)  # pragma: no cover


async def _log_error(exc: Exception) -> None:
    log.warning("NATS error: %s", exc)


async def _disconnected() -> None:
    log.warning("disconnected from NATS")


async def _reconnected() -> None:
    log.info("reconnected to NATS")


def setup_logging(level: str, process: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s",
    )
