"""API keys: what one is, how it is written and checked, and what it may call.

A key is a bearer token ``torua_<id>_<secret>``: `id` (16 hex digits) names its
record, the 256-bit `secret` proves it. The record (`ApiKey`) lives in the
JetStream KV bucket ``torua_keys`` under its id, with the secret's SHA-256, never
the secret itself (a secret this long needs no slow hash: nobody can guess it,
so a leaked bucket gives nothing to try offline). Revoking a key marks its record;
every gateway watches the bucket, so a revoked key is refused within moments.

A key has a role, ``read`` < ``write`` < ``admin``, and optionally a `Scope` (a
tenant): the graphs and key prefixes it may reach, and nothing else. Each
endpoint has one `Rule` (`torua.access`): the least role it needs and
the resource it touches; `permit` is the whole decision. Pure, but for
`discovered_token`, which reads the key a client finds in a data dir.

>>> token, key = new_key("ingest", "write", Scope(("docs",), ("docs/",)), now=0.0)
>>> parse_token(token)[0] == key.id and key.matches(parse_token(token)[1])
True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from torua.protocol.errors import ToruaError

KeyRole = Literal["read", "write", "admin"]
KEY_ROLES: tuple[KeyRole, ...] = ("read", "write", "admin")
RANK: dict[str, int] = {"read": 1, "write": 2, "admin": 3}
PROTOCOL = 1

TOKEN_PREFIX = "torua_"
_TOKEN = re.compile(r"torua_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
MAX_NAME = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,63}")
MAX_SCOPE_ITEMS = 64
MAX_RATE = 1e6  # requests a second
MAX_BYTES = 1 << 30

# `torua up` keeps its admin key here, in the data dir; torua.Client and the CLI find it.
ADMIN_KEY_FILE = "secrets/admin.key"
WORKER_KEY_FILE = "secrets/worker.key"  # torua up's GraphRAG workers' key: role write (they read and write corpora, never the cluster)

NEEDS_KEY = "this request needs an API key: send the header Authorization: Bearer <key> (torua auth create makes keys)"
NOT_VALID = "the API key is not valid (unknown, revoked or mistyped)"


@dataclass(frozen=True)
class Scope:
    """A tenant: the graphs (by name) and the key prefixes a key may reach; an
    empty tuple reaches none of that kind."""

    graphs: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def has_graph(self, name: str) -> bool:
        return name in self.graphs

    def has_key(self, key: str) -> bool:
        return any(key.startswith(p) for p in self.prefixes)


@dataclass(frozen=True)
class ApiKey:
    """A key's record as the bucket keeps it (no secret: its SHA-256)."""

    id: str
    name: str
    role: KeyRole
    secret_sha256: str
    created_at: float
    scope: Scope | None = None  # None: the whole cluster
    revoked_at: float | None = None
    rate: float | None = None  # requests a second it may make at each gateway and node (torua.rate_limits); None: no limit
    max_bytes: int | None = None  # the largest request it may send (a REST body, a NATS payload); None: the process's own limits
    v: int = PROTOCOL

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), self.secret_sha256)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def caller(self, peer: str = "") -> str:
        """Who asked, as the audit trail says it: ``name (id) from peer``."""
        return f"{self.name} ({self.id})" + (f" from {peer}" if peer else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v, "id": self.id, "name": self.name, "role": self.role, "secret_sha256": self.secret_sha256,
            "created_at": self.created_at, "revoked_at": self.revoked_at, "rate": self.rate, "max_bytes": self.max_bytes,
            "scope": None if self.scope is None else {"graphs": list(self.scope.graphs), "prefixes": list(self.scope.prefixes)},
        }

    @classmethod
    def from_dict(cls, data: Any) -> ApiKey:
        """A record read from the bucket; `bad_request` for anything that is not one."""
        try:
            if not isinstance(data, dict) or data.get("v") != PROTOCOL:
                raise ValueError("not a version 1 key record")
            scope = data.get("scope")
            key = cls(
                id=str(data["id"]), name=str(data["name"]), role=data["role"], secret_sha256=str(data["secret_sha256"]),
                created_at=float(data["created_at"]),
                scope=None if scope is None else Scope(tuple(map(str, scope["graphs"])), tuple(map(str, scope["prefixes"]))),
                revoked_at=None if data.get("revoked_at") is None else float(data["revoked_at"]),
                rate=None if data.get("rate") is None else float(data["rate"]),
                max_bytes=None if data.get("max_bytes") is None else int(data["max_bytes"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ToruaError("bad_request", f"not an API key record: {exc}") from None
        if key.role not in KEY_ROLES:
            raise ToruaError("bad_request", f"not an API key record: role {key.role!r}")
        return key

    def view(self) -> dict[str, Any]:
        """What `GET /auth/keys` shows of it (never the hash)."""
        out = {k: v for k, v in self.to_dict().items() if k not in ("v", "secret_sha256")}
        out["revoked"] = self.revoked
        return out


def new_key(
    name: str, role: str, scope: Scope | None, now: float, rate: float | None = None, max_bytes: int | None = None,
) -> tuple[str, ApiKey]:
    """(the token, shown once; its record). `bad_request` for a bad name, role, scope or limit."""
    check_new_key(name, role, scope, rate, max_bytes)
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    record = ApiKey(key_id, name, role, hashlib.sha256(secret.encode()).hexdigest(), now, scope, rate=rate, max_bytes=max_bytes)  # type: ignore[arg-type]
    return f"{TOKEN_PREFIX}{key_id}_{secret}", record


def record_of(token: str, name: str, role: str, now: float) -> ApiKey:
    """The record of an existing token (the admin key `torua up` writes to a file)."""
    key_id, secret = parse_token(token)
    check_new_key(name, role, None)
    return ApiKey(key_id, name, role, hashlib.sha256(secret.encode()).hexdigest(), now)  # type: ignore[arg-type]


def check_new_key(name: str, role: str, scope: Scope | None, rate: float | None = None, max_bytes: int | None = None) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ToruaError("bad_request", f"a key's name is 1-{MAX_NAME} letters, digits, spaces and ._@:- starting with a letter or digit")
    if role not in KEY_ROLES:
        raise ToruaError("bad_request", f"role must be one of {', '.join(KEY_ROLES)}, not {role!r}")
    if scope is not None and (len(scope.graphs) > MAX_SCOPE_ITEMS or len(scope.prefixes) > MAX_SCOPE_ITEMS):
        raise ToruaError("bad_request", f"a key names at most {MAX_SCOPE_ITEMS} graphs and {MAX_SCOPE_ITEMS} prefixes")
    if scope is not None and any(p == "" for p in scope.prefixes):
        raise ToruaError("bad_request", "an empty key prefix would reach every key: leave the key unscoped instead")
    if rate is not None and not 0 < rate <= MAX_RATE:
        raise ToruaError("bad_request", f"rate is requests a second, more than 0 and at most {MAX_RATE:g}")
    if max_bytes is not None and not 1 <= max_bytes <= MAX_BYTES:
        raise ToruaError("bad_request", f"max_bytes is from 1 to {MAX_BYTES}")


def check_size(key: ApiKey | None, size: int | None) -> None:
    """`value_too_large` when a request of `size` bytes (None: not known yet) is over its key's `max_bytes`."""
    if key is not None and key.max_bytes is not None and size is not None and size > key.max_bytes:
        raise ToruaError("value_too_large", f"the request is {size} bytes; API key {key.name!r} may send at most {key.max_bytes}")


def size_limit(key: ApiKey | None, limit: int) -> int:
    """The most a request may carry: the process's `limit`, or less for a key with `max_bytes`."""
    return limit if key is None or key.max_bytes is None else min(limit, key.max_bytes)


def parse_token(token: str) -> tuple[str, str]:
    """(id, secret) of a well-formed token; `unauthorized` otherwise."""
    match = _TOKEN.fullmatch(token.strip())
    if match is None:
        raise ToruaError("unauthorized", NOT_VALID)
    return match.group(1), match.group(2)


def admin_key_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / ADMIN_KEY_FILE


def worker_key_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / WORKER_KEY_FILE


def discovered_token(environ: Mapping[str, str] | None = None) -> str:
    """The API key a client sends: $TORUA_API_KEY, else the admin key of the `torua up`
    in $TORUA_DATA_DIR (else ./torua-data), else "" (none: a gateway that runs
    --insecure needs none)."""
    environ = os.environ if environ is None else environ
    if environ.get("TORUA_API_KEY"):
        return environ["TORUA_API_KEY"].strip()
    path = admin_key_path(environ.get("TORUA_DATA_DIR") or "./torua-data")
    try:
        return path.read_text().strip() if path.is_file() else ""
    except OSError:  # not ours to read: no key, and the gateway says 401 if it wants one
        return ""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is no
    header; `unauthorized` for another scheme."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ToruaError("unauthorized", "send the API key as Authorization: Bearer <key>")
    return token.strip()


def check_secret(record: ApiKey | None, secret: str) -> ApiKey:
    """`record` if the secret is its own and it is not revoked; one answer for every failure."""
    if record is None or record.revoked or not record.matches(secret):
        raise ToruaError("unauthorized", NOT_VALID)
    return record


# ------------------------------------------------------------------ rules

Resource = Literal["none", "cluster", "graph", "key", "prefix", "catalog", "keys"]


@dataclass(frozen=True)
class Rule:
    """What an endpoint needs: `role` (``public``: no key at all) and the resource it
    touches, which decides what a scoped (tenant) key may do:

    - ``cluster``: the cluster as a whole (nodes, shards, settings, ...): unscoped keys only;
    - ``graph``: the param `graph`; ``key``: the param `key`; ``prefix``: the param
      `prefix` of a listing, which must lie within one of the scope's prefixes;
    - ``catalog``: the list of graphs: a scoped key sees its own graphs only;
    - ``keys``: API keys themselves: unscoped admin keys only;
    - ``none``: public.
    """

    role: Literal["public", "read", "write", "admin"]
    resource: Resource

    def __post_init__(self) -> None:
        if (self.role == "public") != (self.resource == "none"):
            raise ValueError("a public rule touches no resource, and only it")


def permit(rule: Rule, key: ApiKey, values: Mapping[str, Any], operation: str) -> None:
    """`forbidden` unless `key` may call an endpoint of `rule` with `values` (its params,
    checked): `check_role`, then `check_reach`."""
    check_role(rule, key, operation)
    check_reach(rule, key, values, operation)


def check_role(rule: Rule, key: ApiKey, operation: str) -> None:
    """`forbidden` unless `key`'s role is at least the rule's, and a resource only an
    unscoped key may touch is touched by one. Needs no params: checked before any are read."""
    if rule.role == "public":
        return
    if RANK[key.role] < RANK[rule.role]:
        raise ToruaError("forbidden", f"API key {key.name!r} has role {key.role}; {operation} needs role {rule.role}")
    if key.scope is not None and rule.resource in ("cluster", "keys"):
        raise ToruaError("forbidden", f"{_reach(key.scope, key.name)}; {operation} is for keys of the whole cluster")


def check_reach(rule: Rule, key: ApiKey, values: Mapping[str, Any], operation: str) -> None:
    """`forbidden` unless a scoped (tenant) key reaches the graph, key or prefix in `values`.
    The message names the key's own rights, never what exists."""
    scope = key.scope
    if scope is None or rule.role == "public":
        return
    if rule.resource == "graph" and not scope.has_graph(str(values.get("graph", ""))):
        raise ToruaError("forbidden", _reach(scope, key.name))
    if rule.resource == "key" and not scope.has_key(str(values.get("key", ""))):
        raise ToruaError("forbidden", _reach(scope, key.name))
    if rule.resource == "prefix" and not scope.has_key(str(values.get("prefix") or "")):
        raise ToruaError("forbidden", f"{_reach(scope, key.name)}; list with a prefix within one of them")


def _reach(scope: Scope, name: str) -> str:
    return f"API key {name!r} reaches only graphs {list(scope.graphs)} and key prefixes {list(scope.prefixes)}"


def visible(rule: Rule, key: ApiKey | None, result: Any) -> Any:
    """What a scoped key may see of a `catalog` answer: its own graphs."""
    if rule.resource != "catalog" or key is None or key.scope is None:
        return result
    scope = key.scope
    return {**result, "graphs": [g for g in result["graphs"] if scope.has_graph(g["name"])]}


def revoked(key: ApiKey, now: float) -> ApiKey:
    return key if key.revoked else replace(key, revoked_at=now)
