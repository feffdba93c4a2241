"""The REST gateway's HTTP connections: aiohttp's protocol with two changes.

- Every error aiohttp answers itself, below the application (a request its parser
  cannot read: bad bytes in the path, a header over 8190 bytes, a bad
  Content-Length, an unknown method), leaves as the JSON error
  ``{"error": {"code", "message"}}`` with its status (`http_rules.parse_failure`),
  never as text/plain.
- A request's head (request line and headers) must arrive within the request
  deadline (``--request-timeout``), counted from its first byte: a client that
  sends it slowly, or stops half-way, gets a 408 ``request_timeout`` and the
  connection is closed. (aiohttp itself only closes a connection on which no
  complete request arrives for ``keepalive_timeout``.) A body's deadline is the
  handler's business (`torua.gateway.http.read_body`). A response the client
  does not read within the same deadline is dropped with its connection (aiohttp
  would wait for it forever, holding the whole value in memory).

`GatewayRunner` is `aiohttp.web.AppRunner` serving such connections.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from torua.gateway.http_rules import SECURITY_HEADERS, parse_failure

log = logging.getLogger("torua.gateway.http")

# Idle keep-alive connections (and ones that never send a byte) are closed after this.
IDLE_TIMEOUT = 60.0
# How much of a request's first line is kept to describe a refusal.
_FIRST_LINE_BYTES = 64


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def raw_error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, for when no request object exists."""
    body = error_body(code, message)
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json; charset=utf-8", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in SECURITY_HEADERS.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class GatewayProtocol(RequestHandler):
    """aiohttp's RequestHandler with JSON errors and a deadline on each request head and each response."""

    def __init__(self, manager: web.Server, *, deadline: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._deadline = deadline
        self._head_timer: asyncio.TimerHandle | None = None
        self._last_payload: Any = None  # the body stream of the last request whose head arrived
        self._first_line = bytearray()  # the start of the head being read, to describe a refusal
        self._line_length = 0  # how long its request line is (so far)
        self._line_done = False  # whether that line has ended
        self._refused_head = (b"", 0, False)  # the three above for the last head that arrived or was refused

    # ------------------------------------------------------------ head deadline

    def data_received(self, data: bytes) -> None:
        between_requests = self._last_payload is None or self._last_payload.is_eof()
        if data and between_requests:
            self._note_head_bytes(data)
        requests_before = self._request_count
        super().data_received(data)
        if self._request_count != requests_before:  # a head arrived (or the parser refused one)
            self._refused_head = (bytes(self._first_line), self._line_length, self._line_done)  # for handle_error, later
            self._head_done()
            if not between_requests and self._messages and not isinstance(self._messages[-1][0], RawRequestMessage):
                self._refuse_body(self._messages.pop()[0])
            elif self._messages:
                self._last_payload = self._messages[-1][1]
        elif data and between_requests and self._head_timer is None and self.transport is not None:
            self._head_timer = self._loop.call_later(self._deadline, self._head_timed_out)

    def _refuse_body(self, refusal: Any) -> None:
        """The parser refused the body of the request being handled (e.g. a malformed
        chunk): that request's read fails (its handler answers 400), and since the
        parser cannot go on, the connection closes after that answer."""
        reason = (getattr(refusal, "message", None) or "malformed body").split("\n", 1)[0].rstrip(":. ")
        self._last_payload.set_exception(web.RequestPayloadError(reason))
        self._last_payload.feed_eof()  # nothing left to linger for
        self.close()

    def _note_head_bytes(self, data: bytes) -> None:
        if self._line_done:
            return
        line, newline, _ = data.partition(b"\n")
        room = _FIRST_LINE_BYTES - len(self._first_line)
        if room > 0:
            self._first_line += line[:room]
        self._line_length += len(line)
        self._line_done = bool(newline)

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._first_line = bytearray()
        self._line_length = 0
        self._line_done = False

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None or self._force_close:
            return
        if self._request_in_progress or self._messages:
            # A pipelined head behind a request still being answered: its answer goes first.
            self._head_timer = self._loop.call_later(self._deadline, self._head_timed_out)
            return
        log.info("closing a connection whose request head did not arrive within %.1f s", self._deadline)
        message = f"the request's headers did not arrive within {self._deadline:g} s"
        self.transport.write(raw_error_response(408, "Request Timeout", "request_timeout", message))
        self.force_close()  # closes once the answer is written

    async def finish_response(self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None) -> tuple[web.StreamResponse, bool]:
        """Send the response, within the deadline: a client that does not read it is cut off."""
        try:
            async with asyncio.timeout(self._deadline):
                return await super().finish_response(request, resp, start_time)
        except TimeoutError:
            log.info("dropping a connection that did not read its response within %.1f s", self._deadline)
            if self.transport is not None:
                self.transport.abort()  # close() would wait to flush what the client does not read
            self.force_close()
            return resp, True  # as aiohttp reports a client gone mid-response

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    # ------------------------------------------------------------ JSON errors

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        """aiohttp's own error answers (parser refusals, and 500/504 from outside the
        application's middlewares) as JSON; the connection is closed after it."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; no error can be sent")  # as aiohttp does
        headers = dict(SECURITY_HEADERS)
        if status == 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            code, text = "internal", "internal error; see the gateway log"
        elif status == 504:
            code, text = "timeout", "the request's deadline passed"
        else:
            status, code, text = parse_failure(exc, *self._refused_head)
            log.info("refused a malformed HTTP request from %s: %s", request.remote, text)
        resp = web.Response(status=status, body=error_body(code, text), content_type="application/json", headers=headers)
        resp.force_close()
        return resp


class GatewayServer(web.Server):
    """Makes a `GatewayProtocol` for each connection."""

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def __call__(self) -> RequestHandler:
        return GatewayProtocol(self, loop=self._loop, deadline=self.deadline, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `GatewayProtocol`s: a request's head must
    arrive within `request_timeout`; the unread rest of a refused body is read and
    dropped for at most as long (aiohttp's lingering time, so the client can read
    the refusal) before the connection closes; an idle one closes after `IDLE_TIMEOUT`."""

    def __init__(self, app: web.Application, *, request_timeout: float, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", IDLE_TIMEOUT)
        kwargs.setdefault("lingering_time", request_timeout)
        super().__init__(app, **kwargs)
        self._deadline = request_timeout

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the app; its Server is then rebuilt as ours
        return GatewayServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            deadline=self._deadline,
            **plain._kwargs,
        )
