"""The API keys a gateway checks requests against: the JetStream KV bucket
``torua_keys`` (made by the coordinator), mirrored by a watch (`BucketMirror`),
so checking a key costs no round trip and a revocation made through any gateway
reaches every other within moments.

Records are `torua.api_keys.ApiKey` as JSON, by id; a revoked key keeps its
record (marked), so `GET /auth/keys` still shows it and a token can never come
back to life. The decisions are `torua.api_keys`'; this module reads and writes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import KeyWrongLastSequenceError

from torua import api_keys
from torua.api_keys import ApiKey, Scope
from torua.bucket_mirror import BucketMirror
from torua.protocol import subjects
from torua.protocol.errors import ToruaError
from torua.rate_limits import Limiter
from torua.secret_files import private_dir, write_file

log = logging.getLogger("torua.gateway.keys")


def decode(data: bytes) -> ApiKey:
    try:
        parsed = json.loads(data)
    except ValueError:
        raise ToruaError("bad_request", "an API key record is not JSON") from None
    return ApiKey.from_dict(parsed)


def encode(key: ApiKey) -> bytes:
    return json.dumps(key.to_dict(), separators=(",", ":")).encode()


class KeyRing(BucketMirror[ApiKey]):
    def __init__(self, nc: NATS) -> None:
        super().__init__(nc, subjects.KEYS_BUCKET, decode, "the API key store", log)
        self.limiter = Limiter()  # each key's request rate in this process (torua.rate_limits)

    async def authenticate(self, token: str) -> ApiKey:
        """The key `token` is, if it is one and not revoked; `unauthorized` otherwise;
        `too_many_requests` (429) when the key has made its `rate` of requests here.
        Only while the watch has not delivered the whole bucket (at start, after a lost
        connection) is an id it does not hold read from the bucket: once it has, a
        stranger's made-up tokens cost no JetStream read (a key made through another
        gateway arrives by the watch within moments)."""
        key_id, secret = api_keys.parse_token(token)
        record = self.entries.get(key_id)
        if record is None and not self.synced:
            found = await self._read(key_id)
            record = None if found is None else found[0]
        key = api_keys.check_secret(record, secret)
        if key.rate is not None:
            wait = self.limiter.take(key.id, key.rate, time.monotonic())
            if wait > 0:
                raise ToruaError(
                    "too_many_requests", f"API key {key.name!r} may make {key.rate:g} requests a second here; retry in {wait:.2f} s",
                    retry_after=wait,
                )
        return key

    async def create(
        self, name: str, role: str, scope: Scope | None, now: float, rate: float | None = None, max_bytes: int | None = None,
    ) -> tuple[str, ApiKey]:
        """(the token, its record), stored."""
        token, record = api_keys.new_key(name, role, scope, now, rate, max_bytes)
        await self._create(record)
        return token, record

    async def _read(self, key_id: str) -> tuple[ApiKey, int] | None:
        """The record of `key_id` and its revision as the bucket has it; None when there is
        none, or one nobody can read (which is no key)."""
        try:
            return await self.read_entry(key_id)
        except ToruaError as exc:
            if exc.code != "bad_request":
                raise
            log.warning("the API key record %s cannot be read: %s", key_id, exc.message)
            return None

    async def _create(self, record: ApiKey) -> bool:
        """Store a new record; False when its id is taken."""
        kv = await self._bucket()
        try:
            await kv.create(record.id, encode(record))
        except KeyWrongLastSequenceError:
            return False
        except NatsError as exc:
            raise self.unavailable("write", exc) from None
        self.entries[record.id] = record
        return True

    async def revoke(self, key_id: str, now: float) -> ApiKey:
        """Mark the key revoked (compare-and-set on its revision); `not_found` if there is none."""
        for _ in range(3):
            found = await self._read(key_id)
            if found is None:
                raise ToruaError("not_found", f"no API key has id {key_id}")
            record, revision = found
            if record.revoked:
                return record
            done = api_keys.revoked(record, now)
            kv = await self._bucket()
            try:
                await kv.update(key_id, encode(done), last=revision)
            except KeyWrongLastSequenceError:
                continue  # changed meanwhile: read it again
            except NatsError as exc:
                raise self.unavailable("write", exc) from None
            self.entries[key_id] = done
            return done
        raise ToruaError("conflict", f"API key {key_id} is being changed concurrently; try again")

    async def all(self) -> list[ApiKey]:
        """Every key, oldest first."""
        if not self.synced:
            await self._bucket()  # unavailable when there is no store yet
            raise ToruaError("unavailable", "the API key store is not read yet", retry_after=1.0)
        return sorted(self.entries.values(), key=lambda k: (k.created_at, k.id))

    async def ensure(self, token: str, name: str, now: float, role: str = "admin") -> bool:
        """The key `token` (a file `torua up` wrote: the admin key, the workers' key) is in
        the store with `role`: stored now if it was not. A key once revoked stays revoked.
        True if this call stored it."""
        record = api_keys.record_of(token, name, role, now)
        if await self._read(record.id) is not None:
            return False
        return await self._create(record)


def admin_key_token(path: Path) -> str:
    """The admin key kept in `path`, made (0600, its directory 0700) when there is none."""
    return key_token(path, "admin", "admin")


def key_token(path: Path, name: str, role: str) -> str:
    """The key kept in `path`, made (0600, its directory 0700) with `name` and `role` when
    there is none."""
    if path.exists():
        token = path.read_text().strip()
        api_keys.parse_token(token)  # a file that holds no key: unauthorized, said at start
        return token
    token, _ = api_keys.new_key(name, role, None, 0.0)
    private_dir(path.parent)
    write_file(path, (token + "\n").encode())
    return token
