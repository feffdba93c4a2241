"""What the REST gateway lets in (torua.gateway.http_rules), pure: JSON media types,
browser requests from other origins, and the JSON error for each parser refusal.
The same on a real gateway: tests/integration/test_gateway_http.py and test_gateway_http_wire.py."""

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, BadStatusLine, InvalidURLError, LineTooLong

from torua.gateway.http_rules import cross_origin_refusal, is_json_media_type, parse_failure
from torua.protocol.errors import HTTP_STATUS


@pytest.mark.parametrize(
    "content_type,json",
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON ; charset=UTF-8", True),
        ("application/merge-patch+json", True),
        ("application/vnd.torua.v1+json", True),
        (None, False),
        ("", False),
        ("text/plain", False),
        ("text/plain; charset=application/json", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("text/json", False),
        ("application/jsonx", False),
        ("application/json-seq", False),
        ("application/+json", False),
        ("application/", False),
        ("application/js on", False),
        ("*/*", False),
    ],
)
def test_json_media_types(content_type, json):
    assert is_json_media_type(content_type) is json


HOST = {"Host": "127.0.0.1:8080"}


@pytest.mark.parametrize(
    "method,headers,refused",
    [
        # clients that are not browsers say nothing about where they come from
        ("POST", HOST, False),
        ("DELETE", {}, False),
        # a browser on the gateway's own origin, or a typed-in URL
        ("POST", {**HOST, "Origin": "http://127.0.0.1:8080"}, False),
        ("POST", {**HOST, "Origin": "HTTP://127.0.0.1:8080"}, False),
        ("PUT", {**HOST, "Sec-Fetch-Site": "same-origin"}, False),
        ("POST", {**HOST, "Sec-Fetch-Site": "none"}, False),
        # reading is never refused
        ("GET", {**HOST, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, False),
        ("HEAD", {**HOST, "Sec-Fetch-Site": "cross-site"}, False),
        ("OPTIONS", {**HOST, "Origin": "http://evil.example"}, False),
        # another origin: another host, another port, an opaque origin, another site or a sibling
        ("POST", {**HOST, "Origin": "http://evil.example"}, True),
        ("POST", {**HOST, "Origin": "http://127.0.0.1:3000"}, True),
        ("POST", {**HOST, "Origin": "null"}, True),
        ("POST", {**HOST, "Origin": "not a url"}, True),
        ("POST", {"Origin": "http://127.0.0.1:8080"}, True),  # no Host to compare with
        ("DELETE", {**HOST, "Sec-Fetch-Site": "cross-site"}, True),
        ("PUT", {**HOST, "Sec-Fetch-Site": "same-site"}, True),
        ("POST", {**HOST, "Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:8080"}, True),  # the fetch metadata wins
    ],
)
def test_cross_origin_refusal(method, headers, refused):
    reason = cross_origin_refusal(method, headers)
    assert (reason is not None) is refused, reason
    if refused:
        assert method in reason


GET = b"GET /data/x HTTP/1.1\r"


@pytest.mark.parametrize(
    "exc,first_line,line_length,line_done,status,code",
    [
        (LineTooLong(b"aaa...", 8190), b"GET /data/aaaa", 9000, False, 414, "uri_too_long"),
        (LineTooLong(b"aaa...", 8190), b"GET /data/aaaa", 9020, True, 414, "uri_too_long"),  # the whole line came in one read
        (LineTooLong(b"aaa...", 8190), GET, len(GET), True, 431, "headers_too_large"),
        (BadHttpMessage("Too many headers received"), GET, len(GET), True, 431, "headers_too_large"),
        (BadHttpMethod(error="Invalid method encountered:\n\n  b'FROB /x'"), b"FROB /data/x HTTP/1.1\r", 22, True, 501, "not_implemented"),
        (BadHttpMethod(error="Invalid method encountered"), b"FROB /data/" + b"a" * 50, 5000, True, 501, "not_implemented"),
        (BadHttpMethod(error="Invalid method encountered"), b"hello there\r", 12, True, 400, "bad_request"),
        (BadHttpMethod(error="Invalid method encountered"), b"FROB /data/x", 12, False, 400, "bad_request"),
        (BadHttpMethod(error="Received HTTPS traffic on an HTTP port"), b"\x16\x03\x01\x00", 4, False, 400, "bad_request"),
        (InvalidURLError("Invalid char in url path:\n\n  b'GET /\\xff'"), b"GET /\xff HTTP/1.1", 15, True, 400, "bad_request"),
        (BadStatusLine(error="Bad status line:\n  Expected HTTP/"), b"GET /a b HTTP/1.1", 17, True, 400, "bad_request"),
        (BadHttpMessage("Invalid character in Content-Length:\n\n  b'Content-Length: abc'"), GET, len(GET), True, 400, "bad_request"),
        (None, b"", 0, False, 400, "bad_request"),
    ],
)
def test_parse_failures(exc, first_line, line_length, line_done, status, code):
    got_status, got_code, message = parse_failure(exc, first_line, line_length, line_done)
    assert (got_status, got_code) == (status, code)
    assert HTTP_STATUS[code] == status
    assert message and "\n" not in message and "b'" not in message  # one clean line, no echo of raw bytes


def test_parse_failure_messages_say_what_was_wrong():
    assert parse_failure(BadHttpMessage("Invalid character in Content-Length:\n\n  b'x'\n   ^"), b"", 0, True)[2] == (
        "malformed HTTP request: Invalid character in Content-Length"
    )
    assert "8190" in parse_failure(LineTooLong(b"x", 8190), b"GET /x", 9000, False)[2]
    assert "FROB" in parse_failure(BadHttpMethod(error="x"), b"FROB /x HTTP/1.1", 16, True)[2]
