"""The gateway's HTTP below its handlers, from a raw socket, as fuzzers and broken
clients talk to it: every request aiohttp's parser refuses is the JSON error with
its status (never text/plain), and a request whose head or body does not arrive
within --request-timeout is cut off with a JSON 408 and its connection closed.

One real gateway with a 1 s deadline on its own nats-server; none of these requests
reaches the cluster, so no coordinator or node is needed (that nothing is stored is
checked on a whole cluster in test_gateway_http.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass

import pytest

from tests.support.processes import free_port, start_nats, wait_until
from torua.cli.up import torua_command

DEADLINE = 1.0
# Every wait for the gateway: the deadline plus room for a loaded 2-core machine.
PATIENCE = DEADLINE + 10


@pytest.fixture(scope="module")
def ports(module_group) -> dict[str, int]:
    """{"rest": port, "metrics": port} of one gateway with a 1 s request deadline."""
    _, nats_url = start_nats(module_group)
    ports = {"rest": free_port(), "metrics": free_port()}
    argv = torua_command() + [
        "gateway", "--port", str(ports["rest"]), "--metrics-port", str(ports["metrics"]), "--request-timeout", str(DEADLINE),
        "--nats-url", nats_url, "--log-level", "info",
    ]
    proc = module_group.start("gateway-wire", argv)

    def answers() -> bool:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{ports['rest']}/health", timeout=2) as resp:
            return resp.status == 200

    wait_until(lambda: not proc.alive() or answers(), 20, "the gateway to answer")
    assert proc.alive(), proc.log()
    return ports


@pytest.fixture(scope="module")
def gateway(ports) -> tuple[str, int]:
    return "127.0.0.1", ports["rest"]


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def error(self) -> dict:
        """The JSON error this response must be: {"error": {"code", "message"}}, as JSON, inert."""
        assert self.headers["content-type"].startswith("application/json"), self
        assert self.headers["x-content-type-options"] == "nosniff", self
        body = json.loads(self.body)
        assert set(body) == {"error"} and set(body["error"]) >= {"code", "message"} and body["error"]["message"], body
        return body["error"]


class RawClient:
    """One TCP connection, bytes in and out as written."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr

    async def __aenter__(self) -> "RawClient":
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(*self.addr), PATIENCE)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = PATIENCE) -> Response:
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Response(status, headers, body)

    async def closed(self, timeout: float = PATIENCE) -> bool:
        """True once the gateway closed the connection (EOF or reset) within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
            return True
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False

    async def dribble(self, chunk: bytes, every: float, times: int) -> None:
        """Send `chunk` every `every` seconds (a slow client), until the gateway hangs up."""
        with contextlib.suppress(ConnectionError, OSError):
            for _ in range(times):
                await self.send(chunk)
                await asyncio.sleep(every)


HOST = b"Host: wire.test\r\n"

PARSER_REFUSALS = [
    ("bad-byte-in-path", b"GET /data/\xff HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request"),
    ("space-in-path", b"GET /data/a b HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request"),
    ("control-byte-in-path", b"GET /data/a\x01b HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request"),
    ("header-over-8190-bytes", b"GET /health HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
    ("too-many-headers", b"GET /health HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431, "headers_too_large"),
    ("uri-over-8190-bytes", b"GET /data/" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "uri_too_long"),
    ("bad-content-length", b"PUT /data/wire/x HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n", 400, "bad_request"),
    ("negative-content-length", b"PUT /data/wire/x HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n", 400, "bad_request"),
    ("two-content-lengths", b"PUT /data/wire/x HTTP/1.1\r\n" + HOST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "bad_request"),
    ("bad-chunk-size", b"PUT /data/wire/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_request"),
    ("bad-header-line", b"GET /health HTTP/1.1\r\n" + HOST + b"no colon here\r\n\r\n", 400, "bad_request"),
    ("bad-version", b"GET /health HTTP/9.x\r\n" + HOST + b"\r\n", 400, "bad_request"),
    ("unknown-method", b"FROB /data/x HTTP/1.1\r\n" + HOST + b"\r\n", 501, "not_implemented"),
    ("not-http", b"hello there\r\n\r\n", 400, "bad_request"),
    ("tls-on-the-http-port", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32, 400, "bad_request"),
    ("connect-to-a-host", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405, "method_not_allowed"),
    ("connect-to-a-path", b"CONNECT /data/x HTTP/1.1\r\n" + HOST + b"\r\n", 405, "method_not_allowed"),
    ("options-asterisk", b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request"),
]


@pytest.mark.parametrize("request_bytes,status,code", [r[1:] for r in PARSER_REFUSALS], ids=[r[0] for r in PARSER_REFUSALS])
async def test_every_request_the_parser_refuses_is_a_json_error_with_its_status(gateway, request_bytes, status, code):
    async with RawClient(gateway) as client:
        await client.send(request_bytes)
        response = await client.response()
        assert response.status == status, response
        assert response.error()["code"] == code
        if status == 405:
            assert set(response.headers["allow"].replace(" ", "").split(",")) == {"DELETE", "GET", "HEAD", "POST", "PUT"}


async def test_a_malformed_chunk_after_the_body_started_is_a_json_400(gateway):
    async with RawClient(gateway) as client:
        await client.send(b"PUT /data/wire/chunks HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await client.send(b"not a chunk size\r\n")
        response = await client.response()
        assert response.status == 400 and response.error()["code"] == "bad_request", response


@pytest.mark.parametrize("target", [b"/data/a#b", b"/keys/a#b/location", b"/data?prefix=a#b", b"http://wire.test/data/a#b"])
async def test_a_raw_hash_is_refused_not_cut_off(gateway, target):
    """'/data/a#b' used to mean the key 'a': a fragment is never sent, so the key's '#' is %23.
    (HTTP clients strip fragments, hence a raw socket.)"""
    async with RawClient(gateway) as client:
        await client.send(b"GET " + target + b" HTTP/1.1\r\n" + HOST + b"\r\n")
        response = await client.response()
        assert response.status == 400 and response.error()["code"] == "bad_request", response
        assert "%23" in response.error()["message"]


# ------------------------------------------------------------------ deadlines


@pytest.mark.parametrize(
    "head",
    [
        b"PUT /data/wire/slow HTTP/1.1\r\n" + HOST + b"Content-Length: 1000\r\n\r\n",
        b"PUT /data/wire/slow HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n",
        b"POST /broadcast HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    ],
    ids=["value", "chunked-value", "json-body"],
)
async def test_a_body_sent_too_slowly_is_cut_off_with_a_408(gateway, head):
    """A byte every 0.1 s would take 100 s: the deadline (1 s) ends it, and the connection."""
    async with RawClient(gateway) as client:
        await client.send(head)
        slow = asyncio.create_task(client.dribble(b"1\r\nx\r\n" if b"chunked" in head else b"x", 0.1, 1000))
        try:
            started = time.monotonic()
            response = await client.response()
            assert time.monotonic() - started < PATIENCE
            assert response.status == 408 and response.error()["code"] == "request_timeout", response
            assert response.headers["connection"] == "close"
            assert await client.closed()
        finally:
            slow.cancel()


async def test_a_body_shorter_than_its_content_length_is_cut_off_with_a_408(gateway):
    async with RawClient(gateway) as client:
        await client.send(b"PUT /data/wire/short HTTP/1.1\r\n" + HOST + b"Content-Length: 100\r\n\r\nonly this")
        response = await client.response()
        assert response.status == 408 and response.error()["code"] == "request_timeout", response
        assert "9 of 100 bytes" in response.error()["message"]
        assert await client.closed()


@pytest.mark.parametrize("port", ["rest", "metrics"])
@pytest.mark.parametrize("slowly", [True, False], ids=["headers-dribbled", "head-stops-half-way"])
async def test_headers_that_do_not_arrive_in_time_are_cut_off_with_a_408(ports, port, slowly):
    """On the metrics port too (every process has one; its deadline is 5 s)."""
    async with RawClient(("127.0.0.1", ports[port])) as client:
        await client.send(b"GET /health HTTP/1.1\r\n" + HOST)
        slow = asyncio.create_task(client.dribble(b"X-Slow: 1\r\n", 0.1, 1000)) if slowly else None
        try:
            response = await client.response()
            assert response.status == 408 and response.error()["code"] == "request_timeout", response
            assert "headers" in response.error()["message"]
            assert await client.closed()
        finally:
            if slow:
                slow.cancel()


async def test_a_keep_alive_connection_may_idle_and_pipeline(gateway):
    """The head deadline starts at a request's first byte, not at the last answer."""
    async with RawClient(gateway) as client:
        get = b"GET /health HTTP/1.1\r\n" + HOST + b"\r\n"
        await client.send(get)
        assert (await client.response()).status == 200
        await asyncio.sleep(2 * DEADLINE)  # idle between requests, longer than the deadline
        await client.send(get + get)  # two pipelined requests in one write
        assert [(await client.response()).status for _ in range(2)] == [200, 200]
