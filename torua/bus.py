"""The connection to NATS every process shares: connect with a deadline and a
visible retry count, then keep reconnecting for as long as the process lives.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError

from torua.stopping import bounded, within

log = logging.getLogger("torua.bus")


PING_INTERVAL = 2
MAX_OUTSTANDING_PINGS = 2


async def open_bucket(js: Any, bucket: str, replicas: int = 1, **config: Any) -> Any:
    """JetStream KV bucket `bucket`, made with `replicas` copies and `config` (history,
    ttl, description) if it is not there yet; one made before is used as it is."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=bucket, replicas=replicas, **config)


class NatsUnreachable(RuntimeError):
    """NATS did not answer within the connect deadline."""


class NatsAuthError(ValueError):
    """The NATS credentials or TLS settings cannot be used as given."""


@dataclass(frozen=True)
class NatsAuth:
    """How a process proves who it is to NATS, and how it checks the server (TLS).

    At most one of user+password, token, nkey seed file and creds file. Each
    field is also read from `TORUA_NATS_<FIELD>` (see `from_env`), so the
    `torua kv` and `torua status` tools and `torua.Client` use the same variables
    as the processes' flags.
    """

    user: str = ""
    password: str = ""
    token: str = ""
    nkey_seed: str = ""  # file holding an nkey seed (SU...)
    creds: str = ""  # a .creds file (user JWT and nkey seed), for operator-mode servers
    tls_ca: str = ""  # CA bundle that signed the server's certificate
    tls_cert: str = ""  # this client's certificate, for servers that verify clients
    tls_key: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "NatsAuth":
        environ = os.environ if environ is None else environ
        return cls(**{f.name: environ.get(f"TORUA_NATS_{f.name.upper()}", "") for f in fields(cls)})

    @classmethod
    def discover(cls, role: str = "client", environ: Mapping[str, str] | None = None, url: str = "") -> "NatsAuth":
        """`from_env`; with no login there (user, token, nkey or creds), the key that
        `torua up` keeps for `role` in `$TORUA_DATA_DIR`, else ./torua-data
        (torua.nats_keys), when there is one; for a `tls://` `url` with no CA given,
        the CA of `torua up --tls` there (torua.local_tls)."""
        environ = os.environ if environ is None else environ
        auth = cls.from_env(environ)
        data_dir = environ.get("TORUA_DATA_DIR") or "./torua-data"
        if url.startswith("tls://") and not auth.tls_ca:
            from torua.local_tls import ca_file

            if (ca := ca_file(Path(data_dir))).is_file():
                auth = replace(auth, tls_ca=str(ca))
        if auth.has_login:
            return auth
        from torua.nats_keys import discovered_seed

        seed = discovered_seed(role, data_dir)  # type: ignore[arg-type]
        return replace(auth, nkey_seed=seed) if seed else auth

    @property
    def has_login(self) -> bool:
        """A user, token, nkey or creds file is given (TLS alone is no login)."""
        return bool(self.user or self.token or self.nkey_seed or self.creds)

    def validate(self) -> None:
        kinds = [k for k, on in (("user", self.user), ("token", self.token), ("nkey_seed", self.nkey_seed), ("creds", self.creds)) if on]
        if len(kinds) > 1:
            raise NatsAuthError(f"give one way to authenticate to NATS, not {' and '.join(kinds)}")
        if self.password and not self.user:
            raise NatsAuthError("nats_password needs nats_user")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise NatsAuthError("nats_tls_cert and nats_tls_key go together")
        for name in ("nkey_seed", "creds", "tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise NatsAuthError(f"nats_{name}: {path} is not a readable file")

    def options(self) -> dict[str, Any]:
        """Keyword arguments for nats-py's `connect`."""
        self.validate()
        opts: dict[str, Any] = {}
        if self.user:
            opts.update(user=self.user, password=self.password)
        if self.token:
            opts["token"] = self.token
        if self.nkey_seed:
            opts["nkeys_seed"] = self.nkey_seed
        if self.creds:
            opts["user_credentials"] = self.creds
        if self.tls_ca or self.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca or None)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            opts["tls"] = context
        return opts


async def connect(url: str, name: str, timeout: float = 10.0, auth: NatsAuth | None = None) -> NATS:
    """Connect to `url` (comma-separated servers), retrying until `timeout` seconds pass.

    Each failed attempt is logged with its number; past the deadline the caller
    gets `NatsUnreachable`. Once connected, the client reconnects forever.
    Replies come to inboxes under ``_INBOX.<name>``, so NATS permissions can
    give each role its own (deploy/nats/auth.conf).
    """
    options = (auth or NatsAuth()).options()
    servers = [u.strip() for u in url.split(",") if u.strip()]
    attempts = 0
    last: list[str] = [""]

    async def on_error(exc: Exception) -> None:
        nonlocal attempts
        if nc.is_connected:
            await _log_error(exc)
            return
        attempts += 1
        message = str(exc) or type(exc).__name__
        # A refused login says more than the connection reset the server sends after
        # it: keep it as the reason, whatever comes later.
        if "authorization" not in last[0].lower() or "authorization" in message.lower():
            last[0] = message
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
                # A server that stops answering (paused, cut off) is left for another
                # within about PING_INTERVAL * MAX_OUTSTANDING_PINGS seconds.
                ping_interval=PING_INTERVAL,
                max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=_reconnected,
                inbox_prefix=f"_INBOX.{name}",
                **options,
            ),
            timeout,
        )
    except asyncio.CancelledError:  # the process is stopping (torua.stopping.unless_stopped)
        await close_connection(nc, timeout=1.0)
        raise
    except (asyncio.TimeoutError, Exception) as exc:
        await close_connection(nc, timeout=1.0)
        reason = last[0] or str(exc) or type(exc).__name__
        if "authorization" in reason.lower():
            reason += "; " + login_hint(auth or NatsAuth())
        raise NatsUnreachable(f"cannot reach NATS at {url} after {max(attempts, 1)} attempts in {timeout:g}s: {reason}") from None
    return nc


def login_hint(auth: NatsAuth) -> str:
    """What to do about a refused login, by what was tried.

    >>> login_hint(NatsAuth())
    'no credentials were given: set TORUA_NATS_NKEY_SEED or another TORUA_NATS_* login (a process: --nats-nkey-seed, ...); a torua up cluster keeps its keys in <data dir>/secrets, where torua.Client and the torua tools find them from the directory torua up ran in, or with TORUA_DATA_DIR'
    """
    if auth.has_login:
        used = auth.nkey_seed or auth.creds or ("user " + auth.user if auth.user else "a token")
        return f"the server refused {used}"
    return ("no credentials were given: set TORUA_NATS_NKEY_SEED or another TORUA_NATS_* login (a process: --nats-nkey-seed, ...); "
            "a torua up cluster keeps its keys in <data dir>/secrets, where torua.Client and the torua tools find them "
            "from the directory torua up ran in, or with TORUA_DATA_DIR")


async def close_connection(nc: Any, timeout: float = 5.0) -> None:
    """Drain `nc` (when connected) and close it, in bounded time whatever the server's
    state: nats-py's drain swallows its cancellation and its close flushes toward
    the server, so a paused or dead server could hold either up for ever
    (torua.stopping.bounded never waits for a step past its bound)."""
    if nc.is_closed:
        return
    # Drain only a server that answers: toward a paused one a drain waits out its own
    # 30 s timeout, and its cancellation leaves errors behind in nats-py.
    if nc.is_connected and await within(_answers(nc), 2.0, False):
        await bounded(_quietly(nc.drain()), timeout, "draining the NATS connection")
    if not nc.is_closed:
        await bounded(_quietly(nc.close()), min(timeout, 2.0), "closing the NATS connection")


async def _answers(nc: Any) -> bool:
    await nc.flush(timeout=1)
    return True


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except Exception as exc:  # the server is gone or going: the connection ends either way
        log.debug("closing the NATS connection: %s", exc or type(exc).__name__)


async def _log_error(exc: Exception) -> None:
    log.warning("NATS error: %s", exc)


async def _reconnected() -> None:
    log.info("reconnected to NATS")


def set_log_level(level: str) -> None:
    """Change this process's log level at run time (a cluster settings change)."""
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))


def setup_logging(level: str, process: str) -> None:
    """Text logs labelled `process`; kept for older callers, see `torua.logs.setup_logging`."""
    from torua.logs import setup_logging as setup

    setup(level, "text", process)


def header_value(headers: Mapping[str, str] | None, wanted: str) -> str | None:
    """The value of a NATS message's header `wanted` (lower case), whatever case it was written in."""
    for name, value in (headers or {}).items():
        if name.lower() == wanted:
            return value
    return None
