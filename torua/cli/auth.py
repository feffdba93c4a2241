"""`torua auth`: credentials of a cluster.

`torua auth nats ROLE [ID]` gives the NATS key of a role (a node: of node ID)
in a `torua up` data dir, making it if there is none: its seed file's path on
stdout (for `--nats-nkey-seed`), and the running nats-server of that data dir
is told to take it (torua.nats_keys). This is how a node started by hand joins
a `torua up` cluster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torua import nats_keys
from torua.nats_roles import ROLES


def add_auth_arguments(p: argparse.ArgumentParser, data_dir_default: str) -> None:
    sub = p.add_subparsers(dest="auth_command", required=True, metavar="WHAT")
    n = sub.add_parser("nats", help="the NATS key of a role in a torua up data dir (made if missing): prints its seed file",
                       description="Print the seed file of a role's NATS key in a torua up data dir, making the key if there is none, "
                                   "and have that data dir's running nats-server take it. A node started by hand: "
                                   "torua node --id n4 --nats-nkey-seed \"$(torua auth nats node n4)\" ...")
    n.add_argument("role", choices=ROLES)
    n.add_argument("id", nargs="?", default="", help="the node id (role node only)")
    n.add_argument("--data-dir", default=data_dir_default, help="the torua up data dir [env TORUA_DATA_DIR; default ./torua-data]")


def run_auth(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if not (data_dir / "nats").is_dir():
        print(f"torua auth: {data_dir} is not the data dir of a torua up (it has no nats/ directory)", file=sys.stderr)
        return 2
    try:
        existed = nats_keys.seed_path(data_dir, args.role, args.id).exists()
        path = nats_keys.ensure_seed(data_dir, args.role, args.id)
    except nats_keys.NatsKeyError as exc:
        print(f"torua auth: {exc}", file=sys.stderr)
        return 2
    if not existed:
        nats_keys.write_auth_conf(data_dir)
        pid = nats_keys.reload_server(data_dir)
        if pid is not None:
            print(f"torua auth: new key; the nats-server of {data_dir} (pid {pid}) reloads its users", file=sys.stderr)
        else:
            print(f"torua auth: new key; no nats-server of {data_dir} runs, its next torua up takes it", file=sys.stderr)
    print(path.resolve())
    return 0
