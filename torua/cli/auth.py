"""`torua auth`: credentials of a cluster.

`torua auth create NAME --role read|write|admin [--graph G]... [--prefix P]...`
makes an API key and prints its token (shown once); `torua auth list` shows the
keys, `torua auth revoke ID` revokes one. They go through the gateways' NATS API
with an admin key ($TORUA_API_KEY, else the one `torua up` keeps in its data dir).

`torua auth nats ROLE [ID]` gives the NATS key of a role (a node: of node ID)
in a `torua up` data dir, making it if there is none: its seed file's path on
stdout (for `--nats-nkey-seed`), and the running nats-server of that data dir
is told to take it (torua.nats_keys). This is how a node started by hand joins
a `torua up` cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from torua import nats_keys
from torua.api_keys import KEY_ROLES
from torua.client import Client
from torua.nats_roles import ROLES


def add_auth_arguments(p: argparse.ArgumentParser, data_dir_default: str, client_options: Callable[[argparse.ArgumentParser], None]) -> None:
    sub = p.add_subparsers(dest="auth_command", required=True, metavar="WHAT")
    add_key_arguments(sub, client_options)
    n = sub.add_parser("nats", help="the NATS key of a role in a torua up data dir (made if missing): prints its seed file",
                       description="Print the seed file of a role's NATS key in a torua up data dir, making the key if there is none, "
                                   "and have that data dir's running nats-server take it. A node started by hand: "
                                   "torua node --id n4 --nats-nkey-seed \"$(torua auth nats node n4)\" ...")
    n.add_argument("role", choices=ROLES)
    n.add_argument("id", nargs="?", default="", help="the node id (role node); an application's name (role client: its own login, which reads only its own replies)")
    n.add_argument("--data-dir", default=data_dir_default, help="the torua up data dir [env TORUA_DATA_DIR; default ./torua-data]")


def add_key_arguments(sub: Any, client_options: Callable[[argparse.ArgumentParser], None]) -> None:
    c = sub.add_parser("create", help="make an API key and print its token (shown once)",
                       description="Make an API key. Its token is printed once; only its SHA-256 is kept. "
                                   "--graph and --prefix make a tenant key that reaches only those graphs and key prefixes.")
    c.add_argument("name", help="who or what holds it (1-64 letters, digits, spaces, ._@:-)")
    c.add_argument("--role", required=True, choices=KEY_ROLES, help="read < write < admin")
    c.add_argument("--graph", action="append", dest="graphs", metavar="GRAPH", help="a graph the key may reach (repeat for more)")
    c.add_argument("--prefix", action="append", dest="prefixes", metavar="PREFIX", help="a key prefix the key may reach (repeat for more)")
    c.add_argument("--rate", type=float, default=None, help="requests a second it may make at each gateway and node (429 beyond)")
    c.add_argument("--max-bytes", type=int, default=None, help="the largest request it may send (413 above)")
    c.add_argument("--json", action="store_true", help="print the whole record as JSON, not just the token")
    ls = sub.add_parser("list", help="the API keys (never a token)")
    r = sub.add_parser("revoke", help="revoke an API key: every gateway refuses it from now on")
    r.add_argument("id", help="the key's id (16 hex digits: torua auth list)")
    for p in (c, ls, r):
        client_options(p)


async def run_keys(args: argparse.Namespace) -> int:
    async with Client(args.nats_url, timeout=args.timeout) as db:
        if args.auth_command == "create":
            made = await db.create_key(args.name, args.role, args.graphs, args.prefixes, args.rate, args.max_bytes)
            print(json.dumps(made, indent=2) if args.json else made["token"])
            print(f"torua auth: key {made['id']} ({made['role']}) made; its token is shown this once", file=sys.stderr)
        elif args.auth_command == "list":
            for k in await db.keys():
                scope = "" if k["scope"] is None else f"  graphs={','.join(k['scope']['graphs'])} prefixes={','.join(k['scope']['prefixes'])}"
                scope += "".join(f"  {f}={k[f]:g}" for f in ("rate", "max_bytes") if k.get(f) is not None)
                print(f"{k['id']}  {k['role']:<5}  {'revoked' if k['revoked'] else 'active ':<7}  {k['name']}{scope}")
        else:
            done = await db.revoke_key(args.id)
            print(f"torua auth: key {done['id']} ({done['name']}) is revoked", file=sys.stderr)
    return 0


def run_auth(args: argparse.Namespace) -> int:
    """`torua auth nats` (the others are `run_keys`, run by `torua.cli.main.run_tool`)."""
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
