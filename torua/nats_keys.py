"""The NATS keys of a `torua up` cluster, in its data dir.

`torua up` runs its nats-server with one nkey user per process role
(torua.nats_roles): every coordinator shares the `coordinator` key, each node
has its own, and the gateway and applications (`client`) one each. Seeds live
in `<data dir>/secrets/` (0700), one file each (0600):

    secrets/nats-coordinator.nk  nats-gateway.nk  nats-client.nk
    secrets/nats-node-<id>.nk    one per node
    secrets/nats-client-<name>.nk  one per named application (torua auth nats client <name>)

and the server's `nats/auth.conf` names their public keys with their roles'
permissions. A seed is made once and kept, so a restarted cluster and its
processes keep their keys. `torua auth nats node <id>` adds a node started by
hand: it makes the seed, writes `auth.conf` again and tells a running server to
reload it (SIGHUP to the pid in `nats/nats.pid`).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import nkeys
import psutil

from torua.nats_roles import ROLES, NatsUser, Role, render_authorization
from torua.protocol.subjects import valid_node_id
from torua.secret_files import private_dir, write_file

SECRETS_DIR = "secrets"
AUTH_CONF = "auth.conf"  # in <data dir>/nats/, included by nats.conf
PID_FILE = "nats.pid"


class NatsKeyError(ValueError):
    """A key cannot be made or read as asked."""


def secrets_dir(data_dir: Path) -> Path:
    return Path(data_dir) / SECRETS_DIR


def seed_path(data_dir: Path, role: Role, node_id: str = "") -> Path:
    """Where the seed of `role` (a node: of `node_id`) is kept.

    >>> seed_path(Path("/d"), "node", "n4")
    PosixPath('/d/secrets/nats-node-n4.nk')
    >>> seed_path(Path("/d"), "client")
    PosixPath('/d/secrets/nats-client.nk')
    """
    if role not in ROLES:
        raise NatsKeyError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role == "node":
        if not valid_node_id(node_id):
            raise NatsKeyError(f"a node key needs a node id of 1-64 letters, digits, '-' or '_', not {node_id!r}")
        return secrets_dir(data_dir) / f"nats-node-{node_id}.nk"
    if role == "client" and node_id:
        if not valid_node_id(node_id):
            raise NatsKeyError(f"an application's name is 1-64 letters, digits, '-' or '_', not {node_id!r}")
        return secrets_dir(data_dir) / f"nats-client-{node_id}.nk"
    if node_id:
        raise NatsKeyError(f"only a node key or a named application's key names an id, not a {role} key")
    return secrets_dir(data_dir) / f"nats-{role}.nk"


def ensure_seed(data_dir: Path, role: Role, node_id: str = "") -> Path:
    """The seed file of `role`, made (mode 0600, in a 0700 directory) if there is none."""
    path = seed_path(data_dir, role, node_id)
    private_dir(path.parent)
    if path.exists():
        public_key(path)  # a damaged seed is said now, not as a refused login later
        return path
    write_file(path, nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER) + b"\n")
    return path


def public_key(path: Path) -> str:
    try:
        seed = bytearray(Path(path).read_bytes().strip())
        return nkeys.from_seed(seed).public_key.decode()
    except (OSError, nkeys.NkeysError, ValueError) as exc:
        raise NatsKeyError(f"{path} does not hold a NATS user nkey seed: {exc}") from None


def users(data_dir: Path) -> list[NatsUser]:
    """Every key kept in the data dir, as the server's users (roles in table order, nodes by id)."""
    found: list[NatsUser] = []
    directory = secrets_dir(data_dir)
    for role in ROLES:
        if role == "node":
            paths = sorted(directory.glob("nats-node-*.nk"))
            found += [NatsUser("node", p.name[len("nats-node-"):-len(".nk")], nkey=public_key(p)) for p in paths]
        elif (p := seed_path(data_dir, role)).exists():
            found.append(NatsUser(role, nkey=public_key(p)))
        if role == "client":
            named = sorted(directory.glob("nats-client-*.nk"))
            found += [NatsUser("client", p.name[len("nats-client-"):-len(".nk")], nkey=public_key(p)) for p in named]
    return found


def write_auth_conf(data_dir: Path) -> Path:
    """`<data dir>/nats/auth.conf` for every key kept, replaced whole."""
    conf = Path(data_dir) / "nats" / AUTH_CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    tmp = conf.with_suffix(".tmp")
    tmp.write_text("# written by torua (torua.nats_keys) from the keys in ../secrets; do not edit\n" + render_authorization(users(data_dir)))
    os.replace(tmp, conf)
    return conf


def reload_server(data_dir: Path) -> int | None:
    """Tell the data dir's running nats-server to read its config again; its pid, or
    None when none runs (its next start reads the new file)."""
    try:
        pid = int((Path(data_dir) / "nats" / PID_FILE).read_text().strip())
        # the file outlives a killed server: its pid may be another process's now
        if "nats-server" not in psutil.Process(pid).name():
            return None
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, psutil.Error):
        return None
    return pid


def discovered_seed(role: Role, data_dir: str | os.PathLike) -> str:
    """The seed file of `role` in `data_dir`, or "" when there is none."""
    path = seed_path(Path(data_dir), role)
    return str(path) if path.is_file() else ""
