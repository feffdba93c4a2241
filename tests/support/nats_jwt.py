"""Just enough NATS JWT to run a nats-server in operator mode for a test: an
operator, an account and a user, each an nkey, the JWTs signed with
ed25519 (nkeys), and the user's .creds file (JWT and seed) as `nsc` writes it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

import nkeys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _keypair(prefix: int) -> tuple[bytes, nkeys.KeyPair, str]:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    pair = nkeys.from_seed(bytearray(seed))
    return seed, pair, pair.public_key.decode()


def _jwt(signer: nkeys.KeyPair, claims: dict) -> str:
    claims = dict(claims, iat=int(time.time()))
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()).decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signer.sign(f'{head}.{body}'.encode()))}"


def operator_setup(directory: Path) -> tuple[str, Path]:
    """(server config lines for operator mode, path of a user's .creds file)."""
    _, operator, operator_pub = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    _, account, account_pub = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user_seed, _, user_pub = _keypair(nkeys.PREFIX_BYTE_USER)
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}
    operator_jwt = _jwt(operator, {"iss": operator_pub, "sub": operator_pub, "name": "test", "nats": {"type": "operator", "version": 2}})
    account_jwt = _jwt(operator, {"iss": operator_pub, "sub": account_pub, "name": "torua", "nats": {"limits": unlimited, "type": "account", "version": 2}})
    user_jwt = _jwt(account, {
        "iss": account_pub, "sub": user_pub, "name": "n1",
        "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2},
    })
    creds = directory / "user.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user_seed.decode()}\n------END USER NKEY SEED------\n"
    )
    conf = f"operator: {operator_jwt}\nresolver: MEMORY\nresolver_preload: {{ {account_pub}: {account_jwt} }}\n"
    return conf, creds
