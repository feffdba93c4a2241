"""An in-memory NATS for tests: the part of the nats-py client API Torua's node,
coordinator, router and state store use, with scripted faults between processes.

Every process gets its own `MemoryClient` (named after the process: "coordinator",
"n1", "client", ...), all attached to one `MemoryBus`. A message from one process
to another travels over the directed link (sender, receiver), where the fault
script may drop it, delay it (delays keep the link's order, as NATS keeps a
publisher's order), or hold it:

- ``set_faults(src, dst, drop=, delay=, subject=)``: drop probability and a delay
  range in seconds on a link; ``"*"`` stands for any process, `subject` (NATS
  wildcards) narrows the rule to some messages, a reply counting as on its
  request's subject. The rule set last wins where several match.
- ``partition(a, b)`` / ``heal()``: drop everything between two processes.
- ``pause(name)`` / ``resume(name)``: what SIGSTOP looks like to everyone else.
  Messages to the process, and messages it sends while paused, are held and
  delivered in order on resume (what it sent before the pause is on the wire
  and arrives), and its subscriptions handle nothing meanwhile. Its own timers
  keep running (unlike a real SIGSTOP), so its requests time out and its leases
  lapse, which is what a woken process finds too; what it "sends" while paused
  leaves only on resume, as if sent then.
- ``crash(name)``: the connection closes at once (SIGKILL): subscriptions go,
  so requests to it fail with no responders, as with a real server.

What is not modelled: the JetStream KV store is the server's and never loses or
delays anything (a call from a paused process waits for its resume); a request
finds "no responders" when nobody subscribes at the moment it is sent.

All randomness comes from the `random.Random` passed in. Counters in `stats`;
`taps` are called with every message once its fate is known (delivered, dropped,
late: a reply whose requester has given up).

>>> bus = MemoryBus(random.Random(7))
>>> bus.set_faults("*", "*", drop=0.05, delay=(0.0, 0.02))
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import BucketNotFoundError, InvalidKeyError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger("tests.memory_bus")

INBOX_PREFIX = "_INBOX."
MAX_PAYLOAD = 16 << 20  # as the nats-server `torua up` runs (torua.cli.up.NATS_MAX_PAYLOAD)
_VALID_KEY = re.compile(r"^[-/_=\.a-zA-Z0-9]+$")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcards: ``*`` one token, ``>`` one or more trailing tokens.

    >>> subject_matches("torua.node.*.kv", "torua.node.n1.kv"), subject_matches("nodes.>", "nodes")
    (True, False)
    """
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


@dataclass(frozen=True)
class FaultRule:
    src: str = "*"
    dst: str = "*"
    subject: str = ">"
    drop: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)

    def applies(self, env: "Envelope") -> bool:
        subject = env.request.subject if env.request is not None else env.subject
        return self.src in ("*", env.src) and self.dst in ("*", env.dst) and subject_matches(self.subject, subject)


NO_FAULTS = FaultRule()


@dataclass
class Envelope:
    """One message on one link. `request` is set on replies: the request answered."""

    src: str
    dst: str
    subject: str
    data: bytes
    reply: str = ""
    headers: dict[str, str] | None = None
    request: "Envelope | None" = None
    sent_at: float = field(default_factory=time.monotonic)
    held: bool = False  # waited for a paused end
    sent_paused: bool = False  # sent while its sender was paused: leaves on resume
    outcome: str = "pending"  # delivered | dropped | late | undeliverable


@dataclass
class BusStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    delayed: int = 0
    held: int = 0
    late_replies: int = 0
    undeliverable: int = 0  # the receiver closed (crashed) meanwhile
    no_responders: int = 0
    callback_errors: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.__dict__.items())


class _Link:
    """The in-flight messages of one directed link, delivered in order by one task."""

    def __init__(self, bus: "MemoryBus", src: str, dst: str) -> None:
        self.bus, self.src, self.dst = bus, src, dst
        self.queue: deque[tuple[float, Envelope, Callable[[Envelope], None]]] = deque()
        self.last_due = 0.0
        self.wake = asyncio.Event()
        self.task = asyncio.ensure_future(self._pump())

    def push(self, due: float, env: Envelope, deliver: Callable[[Envelope], None]) -> None:
        env.sent_paused = self.bus.is_paused(self.src)
        if self._blocked(env):
            self.bus.mark_held(env)
        self.last_due = max(due, self.last_due)
        self.queue.append((self.last_due, env, deliver))
        self.wake.set()

    def _blocked(self, env: Envelope) -> bool:
        return self.bus.is_paused(self.dst) or (env.sent_paused and self.bus.is_paused(self.src))

    async def _pump(self) -> None:
        bus = self.bus
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            due, env, deliver = self.queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._blocked(env):
                bus.mark_held(env)
                await bus.wait_running(self.src)
                await bus.wait_running(self.dst)
                continue  # the queue may have been purged meanwhile (crash)
            if self.queue and self.queue[0][1] is env:
                self.queue.popleft()
                try:
                    deliver(env)
                except Exception:  # never let one message stop the link
                    log.exception("delivering %s from %s to %s", env.subject, self.src, self.dst)


class MemoryBus:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.stats = BusStats()
        self.taps: list[Callable[[Envelope], None]] = []
        self._clients: dict[str, MemoryClient] = {}
        self._subs: list[MemorySubscription] = []
        self._faults: list[FaultRule] = []
        self._partitions: set[frozenset[str]] = set()
        self._running: dict[str, asyncio.Event] = {}  # set unless paused
        self._links: dict[tuple[str, str], _Link] = {}
        self._inboxes: dict[str, tuple[MemoryClient, asyncio.Future[Msg]]] = {}
        self._requests: dict[tuple[str, str], Envelope] = {}  # (inbox, receiver) -> request delivered, until answered
        self._ids = itertools.count(1)
        self.buckets: dict[str, _Bucket] = {}
        self.streams: dict[str, api.StreamConfig] = {}  # streams other than the KV buckets: their configuration

    # ------------------------------------------------------------ processes

    def connector(self, name: str) -> Callable[..., Awaitable["MemoryClient"]]:
        """A `torua.bus.connect` stand-in for `Node`, `Coordinator` and friends: each call
        connects a new client for process `name` (the client name, timeout and
        options such as credentials are ignored)."""

        async def connect(url: str, _client_name: str = "", timeout: float = 10.0, **_options: Any) -> MemoryClient:
            return self.connect(name)

        return connect

    def connect(self, name: str) -> "MemoryClient":
        old = self._clients.get(name)
        if old is not None and not old.is_closed:
            raise RuntimeError(f"process {name} is already connected")
        client = MemoryClient(self, name, next(self._ids))
        self._clients[name] = client
        self._running.setdefault(name, _set_event())
        return client

    def client(self, name: str) -> "MemoryClient | None":
        return self._clients.get(name)

    async def crash(self, name: str) -> None:
        """Close `name`'s connection at once; what a paused process sent while paused never left it."""
        if self.is_paused(name):
            for (src, _dst), link in self._links.items():
                if src == name:
                    for item in [i for i in link.queue if i[1].sent_paused]:
                        link.queue.remove(item)
                        self._finish(item[1], "dropped")
            self.resume(name)
        client = self._clients.get(name)
        if client is not None:
            await client.close()

    async def close(self) -> None:
        """Close every client and stop every link."""
        for client in list(self._clients.values()):
            await client.close()
        for link in self._links.values():
            link.task.cancel()
        await asyncio.gather(*(link.task for link in self._links.values()), return_exceptions=True)
        self._links.clear()
        for event in self._running.values():
            event.set()

    # ---------------------------------------------------------- fault script

    def set_faults(self, src: str = "*", dst: str = "*", drop: float = 0.0, delay: tuple[float, float] = (0.0, 0.0), subject: str = ">") -> None:
        self._faults.append(FaultRule(src, dst, subject, drop, delay))

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self, env: Envelope) -> FaultRule:
        """The rule for `env`: the one set last among those that match."""
        for rule in reversed(self._faults):
            if rule.applies(env):
                return rule
        return NO_FAULTS

    def partition(self, a: str, b: str) -> None:
        self._partitions.add(frozenset((a, b)))

    def heal(self) -> None:
        """End every partition and remove every drop and delay."""
        self._partitions.clear()
        self.clear_faults()

    def pause(self, name: str) -> None:
        self._running.setdefault(name, _set_event()).clear()

    def resume(self, name: str) -> None:
        self._running.setdefault(name, _set_event()).set()

    def is_paused(self, name: str) -> bool:
        event = self._running.get(name)
        return event is not None and not event.is_set()

    async def wait_running(self, name: str) -> None:
        event = self._running.get(name)
        if event is not None and not event.is_set():
            await event.wait()

    # -------------------------------------------------------------- delivery

    def mark_held(self, env: Envelope) -> None:
        if not env.held:
            env.held = True
            self.stats.held += 1

    def _finish(self, env: Envelope, outcome: str) -> None:
        env.outcome = outcome
        counter = "late_replies" if outcome == "late" else outcome
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        for tap in self.taps:
            try:
                tap(env)
            except Exception:
                log.exception("bus tap failed")

    def _send(self, env: Envelope, deliver: Callable[[Envelope], None]) -> None:
        """Put `env` on its link: dropped, delayed, held or delivered by the fault script."""
        self.stats.sent += 1
        if frozenset((env.src, env.dst)) in self._partitions and env.src != env.dst:
            self._finish(env, "dropped")
            return
        faults = self.faults(env)
        if faults.drop and self.rng.random() < faults.drop:
            self._finish(env, "dropped")
            return
        delay = self.rng.uniform(*faults.delay) if faults.delay[1] > 0 else 0.0
        key = (env.src, env.dst)
        link = self._links.get(key)
        if delay <= 0 and (link is None or not link.queue) and not self.is_paused(env.src) and not self.is_paused(env.dst):
            deliver(env)  # nothing ahead of it on this link: straight through
            return
        if delay > 0:
            self.stats.delayed += 1
        if link is None:
            link = self._links[key] = _Link(self, env.src, env.dst)
        link.push(time.monotonic() + delay, env, deliver)

    def _publish(self, sender: "MemoryClient", subject: str, data: bytes, reply: str, headers: dict[str, str] | None) -> None:
        if subject.startswith(INBOX_PREFIX):
            self._publish_reply(sender, subject, data, headers)
            return
        matching = [s for s in self._subs if s.active and subject_matches(s.subject, subject)]
        for sub in self._pick_queue_members(matching):
            env = Envelope(sender.name, sub.client.name, subject, data, reply, headers)
            self._send(env, lambda e, sub=sub: self._deliver_to(sub, e))

    def _pick_queue_members(self, subs: list["MemorySubscription"]) -> list["MemorySubscription"]:
        plain = [s for s in subs if not s.queue]
        groups: dict[str, list[MemorySubscription]] = {}
        for s in subs:
            if s.queue:
                groups.setdefault(s.queue, []).append(s)
        return plain + [self.rng.choice(members) for _, members in sorted(groups.items())]

    def _deliver_to(self, sub: "MemorySubscription", env: Envelope) -> None:
        if not sub.active:
            self._finish(env, "undeliverable")
            return
        self._finish(env, "delivered")
        if env.reply.startswith(INBOX_PREFIX):
            self._requests[(env.reply, env.dst)] = env
        sub.enqueue(Msg(sub.client, subject=env.subject, reply=env.reply, data=env.data, headers=env.headers), env)  # type: ignore[arg-type]

    def _publish_reply(self, sender: "MemoryClient", inbox: str, data: bytes, headers: dict[str, str] | None) -> None:
        owner = inbox[len(INBOX_PREFIX):].split(".", 1)[0]
        request = self._requests.pop((inbox, sender.name), None)
        env = Envelope(sender.name, owner, inbox, data, "", headers, request=request)
        self._send(env, self._deliver_reply)

    def _deliver_reply(self, env: Envelope) -> None:
        waiting = self._inboxes.get(env.subject)
        if waiting is None:
            self._finish(env, "late")
            return
        client, future = waiting
        if future.done():
            self._finish(env, "late")
            return
        self._finish(env, "delivered")
        future.set_result(Msg(client, subject=env.subject, data=env.data, headers=env.headers))  # type: ignore[arg-type]

    def has_interest(self, subject: str) -> bool:
        return any(s.active and subject_matches(s.subject, subject) for s in self._subs)


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


class MemorySubscription:
    """Handles its messages one at a time, in order, in its own task (as nats-py does)."""

    def __init__(self, client: "MemoryClient", subject: str, queue: str, cb: Callable[[Msg], Awaitable[None]]) -> None:
        self.client, self.subject, self.queue, self._cb = client, subject, queue, cb
        self.active = True
        self._pending: asyncio.Queue[tuple[Msg, Envelope]] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())

    def enqueue(self, msg: Msg, env: Envelope) -> None:
        self._pending.put_nowait((msg, env))

    async def _run(self) -> None:
        bus = self.client.bus
        while True:
            msg, env = await self._pending.get()
            try:
                if bus.is_paused(self.client.name):  # a paused process handles nothing: it waits in its buffer
                    bus.mark_held(env)
                    await bus.wait_running(self.client.name)
                await self._cb(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                bus.stats.callback_errors += 1
                log.exception("%s: handler for %s raised", self.client.name, msg.subject)
            finally:
                self._pending.task_done()

    def _stop(self) -> None:
        self.active = False
        bus = self.client.bus
        if self in bus._subs:
            bus._subs.remove(self)
        if self._task is not asyncio.current_task():
            self._task.cancel()

    async def unsubscribe(self, limit: int = 0) -> None:
        if self.client.is_closed:
            raise ConnectionClosedError
        self._stop()

    async def _drain(self, timeout: float) -> None:
        self.active = False
        try:
            await asyncio.wait_for(self._pending.join(), timeout)
        except asyncio.TimeoutError:
            pass
        self._stop()


class MemoryClient:
    """One process's connection: the nats-py `Client` calls Torua makes."""

    def __init__(self, bus: MemoryBus, name: str, incarnation: int) -> None:
        self.bus, self.name = bus, name
        self._prefix = f"{INBOX_PREFIX}{name}.{incarnation}."
        self._next = itertools.count(1)
        self._subs: list[MemorySubscription] = []
        self._status = "connected"

    @property
    def is_connected(self) -> bool:
        return self._status == "connected"

    @property
    def is_closed(self) -> bool:
        return self._status == "closed"

    @property
    def is_draining(self) -> bool:
        return self._status == "draining"

    @property
    def is_reconnecting(self) -> bool:
        return False

    @property
    def max_payload(self) -> int:
        return MAX_PAYLOAD

    def _check_open(self) -> None:
        if self.is_closed:
            raise ConnectionClosedError

    async def subscribe(self, subject: str, queue: str = "", cb: Callable[[Msg], Awaitable[None]] | None = None, **_: Any) -> MemorySubscription:
        self._check_open()
        if cb is None:
            raise NotImplementedError("the memory bus supports callback subscriptions only")
        sub = MemorySubscription(self, subject, queue, cb)
        self._subs.append(sub)
        self.bus._subs.append(sub)
        return sub

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None) -> None:
        self._check_open()
        self.bus._publish(self, subject, payload, reply, headers)

    async def request(self, subject: str, payload: bytes = b"", timeout: float = 0.5, old_style: bool = False, headers: dict[str, str] | None = None) -> Msg:
        self._check_open()
        bus = self.bus
        if not bus.has_interest(subject):
            bus.stats.no_responders += 1
            raise NoRespondersError
        inbox = f"{self._prefix}{next(self._next)}"
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        bus._inboxes[inbox] = (self, future)
        try:
            bus._publish(self, subject, payload, inbox, headers)
            try:
                return await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise NatsTimeout from None
        finally:
            bus._inboxes.pop(inbox, None)

    def jetstream(self, **_: Any) -> "MemoryJetStream":
        return MemoryJetStream(self)

    async def flush(self, timeout: float = 10) -> None:
        """A round trip to the server: the bus answers at once while this client is open."""
        self._check_open()

    async def drain(self) -> None:
        if self.is_closed:
            raise ConnectionClosedError
        if self.is_draining:
            return
        self._status = "draining"
        await asyncio.gather(*(sub._drain(5.0) for sub in list(self._subs)), return_exceptions=True)
        await self.close()

    async def close(self) -> None:
        if self.is_closed:
            return
        self._status = "closed"
        for sub in list(self._subs):
            sub._stop()
        self._subs.clear()
        # Like nats-py, requests in flight are left to time out.


# ------------------------------------------------------------------ JetStream KV


@dataclass
class _Bucket:
    name: str
    seq: int = 0
    entries: dict[str, tuple[bytes, int]] = field(default_factory=dict)


class MemoryJetStream:
    """JetStream KV buckets; other streams (the GraphRAG queue the coordinator makes)
    hold only their configuration: nothing in the simulations publishes to them."""

    def __init__(self, client: MemoryClient) -> None:
        self._client = client

    async def add_stream(self, config: api.StreamConfig) -> api.StreamInfo:
        await self._client.bus.wait_running(self._client.name)
        held = self._client.bus.streams.setdefault(config.name, config)
        return api.StreamInfo(config=held, state=api.StreamState(messages=0, bytes=0, first_seq=0, last_seq=0, consumer_count=0))

    async def update_stream(self, config: api.StreamConfig) -> api.StreamInfo:
        await self._client.bus.wait_running(self._client.name)
        if config.name not in self._client.bus.streams:
            raise NotFoundError(code=404, err_code=10059, description="stream not found")
        self._client.bus.streams[config.name] = config
        return await self.stream_info(config.name)

    async def key_value(self, bucket: str) -> "MemoryKeyValue":
        await self._client.bus.wait_running(self._client.name)
        found = self._client.bus.buckets.get(bucket)
        if found is None:
            raise BucketNotFoundError(description=f"bucket {bucket} not found")
        return MemoryKeyValue(self._client, found)

    async def create_key_value(self, config: Any = None, bucket: str | None = None, **_: Any) -> "MemoryKeyValue":
        await self._client.bus.wait_running(self._client.name)
        name = bucket or getattr(config, "bucket", None)
        assert name, "create_key_value needs a bucket name"
        found = self._client.bus.buckets.setdefault(name, _Bucket(name))
        return MemoryKeyValue(self._client, found)

    async def get_last_msg(self, stream_name: str, subject: str, direct: bool = False) -> api.RawStreamMsg:
        """A KV bucket's entry read as its stream's last message on `subject` (``$KV.<bucket>.<key>``)."""
        await self._client.bus.wait_running(self._client.name)
        bucket = self._client.bus.buckets.get(stream_name[3:]) if stream_name.startswith("KV_") else None
        found = bucket.entries.get(subject[len(f"$KV.{bucket.name}."):]) if bucket is not None else None
        if found is None:
            raise NotFoundError(code=404, err_code=10037, description="no message found")
        return api.RawStreamMsg(subject=subject, seq=found[1], data=found[0])

    async def stream_info(self, name: str, subjects_filter: str | None = None) -> api.StreamInfo:
        """A KV bucket's stream (``KV_<bucket>``, subjects ``$KV.<bucket>.<key>``); with
        `subjects_filter`, `state.subjects` counts one message per matching key."""
        await self._client.bus.wait_running(self._client.name)
        bucket = self._client.bus.buckets.get(name[3:]) if name.startswith("KV_") else None
        if bucket is None and name in self._client.bus.streams:
            return api.StreamInfo(config=self._client.bus.streams[name], state=api.StreamState(messages=0, bytes=0, first_seq=0, last_seq=0, consumer_count=0))
        if bucket is None:
            raise NotFoundError(code=404, err_code=10059, description="stream not found")
        base = f"$KV.{bucket.name}."
        subjects = {base + key: 1 for key in bucket.entries if subjects_filter and subject_matches(subjects_filter, base + key)}
        state = api.StreamState(
            messages=len(bucket.entries),
            bytes=sum(len(v) for v, _ in bucket.entries.values()),
            first_seq=min((rev for _, rev in bucket.entries.values()), default=0),
            last_seq=bucket.seq,
            consumer_count=0,
            subjects=subjects or None,
        )
        return api.StreamInfo(config=api.StreamConfig(name=name, subjects=[base + ">"]), state=state)


class MemoryKeyValue:
    """get / put / create / update (compare-and-set on the revision) / keys, raising
    what nats-py raises. A revision is the bucket's stream sequence, as in JetStream."""

    def __init__(self, client: MemoryClient, bucket: _Bucket) -> None:
        self._client, self._bucket = client, bucket

    async def _ready(self, key: str | None = None) -> None:
        self._client._check_open()
        await self._client.bus.wait_running(self._client.name)
        if key is not None and (not _VALID_KEY.match(key) or key[0] == "." or key[-1] == "."):
            raise InvalidKeyError(key)

    async def get(self, key: str, revision: int | None = None) -> KeyValue.Entry:
        await self._ready(key)
        found = self._bucket.entries.get(key)
        if found is None or (revision is not None and found[1] != revision):
            raise KeyNotFoundError
        value, rev = found
        return KeyValue.Entry(self._bucket.name, key, value, rev, None, None, None)

    def _write(self, key: str, value: bytes) -> int:
        self._bucket.seq += 1
        self._bucket.entries[key] = (bytes(value), self._bucket.seq)
        return self._bucket.seq

    async def put(self, key: str, value: bytes) -> int:
        await self._ready(key)
        return self._write(key, value)

    async def create(self, key: str, value: bytes) -> int:
        await self._ready(key)
        if key in self._bucket.entries:
            raise KeyWrongLastSequenceError(description="wrong last sequence: key exists")
        return self._write(key, value)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        await self._ready(key)
        current = self._bucket.entries.get(key, (b"", 0))[1]
        if current != (last or 0):
            raise KeyWrongLastSequenceError(description=f"wrong last sequence: {current}")
        return self._write(key, value)

    async def keys(self, filters: list[str] | None = None, **_: Any) -> list[str]:
        await self._ready()
        found = [k for k in self._bucket.entries if not filters or any(subject_matches(f, k) for f in filters)]
        if not found:
            raise NoKeysError
        return found
