"""Keys read from the raw request path: strict percent-decoding, then `validate_key`."""

import pytest

from urllib.parse import quote

from torua.gateway.paths import key_from_raw_path, percent_decode, query_params
from torua.protocol.errors import ToruaError


@pytest.mark.parametrize(
    "raw,key",
    [
        ("/data/simple", "simple"),
        ("/data/user@example.com", "user@example.com"),
        ("/data/user%40example.com", "user@example.com"),
        ("/data/path/to/resource", "path/to/resource"),
        ("/data/path%2Fto%2Fresource", "path/to/resource"),
        ("/data/path%2fto/resource", "path/to/resource"),
        ("/data/key-with-spaces%20here", "key-with-spaces here"),
        ("/data/%E6%95%B0%E5%AD%97", "数字"),
        ("/data/数字", "数字"),  # a client that sent raw UTF-8
        ("/data/very:long:key:with:many:colons:and:segments", "very:long:key:with:many:colons:and:segments"),
        ("/data/a?ignored=query", "a"),
        ("/data/a%3Fb?c=d", "a?b"),  # an encoded '?' is part of the key
        ("/data/a+b", "a+b"),  # '+' is not a space in a path
        ("/data/100%25", "100%"),
        ("/data/" + "é" * 512, "é" * 512),  # exactly 1024 bytes
        ("/data/" + "%C3%A9" * 512, "é" * 512),
    ],
)
def test_keys_from_raw_paths(raw, key):
    assert key_from_raw_path(raw) == key


@pytest.mark.parametrize(
    "raw",
    [
        "/data/",  # empty
        "/data/?x=1",  # empty before the query
        "/data/%ZZ",  # not hex
        "/data/bad%ZZescape",
        "/data/trailing%2",  # cut short
        "/data/trailing%",
        "/data/%FF",  # not UTF-8
        "/data/%E6%95",  # truncated UTF-8 sequence
        "/data/%C0%AF",  # overlong encoding
        "/data/%00",  # NUL
        "/data/a%00b",
        "/data/" + "k" * 1025,  # 1025 bytes
        "/data/" + "%C3%A9" * 512 + "x",  # 1025 bytes once decoded
        "/data/\udcff",  # raw non-UTF-8 byte kept as a surrogate by the HTTP parser
        "/data/a#b",  # a raw '#': the key's '#' is %23 (this used to store the key "a")
        "/other/a",
    ],
)
def test_bad_raw_paths(raw):
    with pytest.raises(ToruaError) as err:
        key_from_raw_path(raw)
    assert err.value.code == "bad_request"
    assert err.value.http_status == 400


def test_location_paths():
    assert key_from_raw_path("/keys/a%2Fb/location", "/keys/", "/location") == "a/b"
    assert key_from_raw_path("/keys/a/b/location?x", "/keys/", "/location") == "a/b"
    with pytest.raises(ToruaError):
        key_from_raw_path("/keys/a/elsewhere", "/keys/", "/location")
    with pytest.raises(ToruaError):
        key_from_raw_path("/keys//location", "/keys/", "/location")


def test_percent_decode_is_strict_but_not_form_decoding():
    assert percent_decode("a%20b+c") == "a b+c"
    with pytest.raises(ToruaError):
        percent_decode("%G0")


# Every character the key rules allow, as a client percent-encodes it.
NASTY_KEYS = ["line\nbreak", "\n", "cr\rlf\r\n", "tab\there", "%0A literally", "a#b", "a?b=c&d", "100%", "+plus+",
              "/leading", "trailing/", "a//b", "..", ".", "a/../b", "数字/é/🙂", "\u2028\u2029", "\x7f\x01", "sp ace"]


@pytest.mark.parametrize("key", NASTY_KEYS, ids=repr)
def test_every_key_the_rules_allow_comes_back_from_its_encoded_path(key):
    assert key_from_raw_path("/data/" + quote(key, safe="")) == key
    assert key_from_raw_path("/data/" + quote(key, safe="/")) == key
    assert key_from_raw_path("/keys/" + quote(key, safe="") + "/location", "/keys/", "/location") == key


@pytest.mark.parametrize(
    "target,params",
    [
        ("/data", {}),
        ("/data?", {}),
        ("/data?prefix=&limit=&cursor=", {"prefix": "", "limit": "", "cursor": ""}),
        ("/data?prefix=a%2Fb", {"prefix": "a/b"}),
        ("/data?prefix=a+b", {"prefix": "a b"}),
        ("/data?prefix=a%2Bb", {"prefix": "a+b"}),
        ("/data?prefix=%E6%95%B0", {"prefix": "数"}),
        ("/data?prefix=line%0Abreak", {"prefix": "line\nbreak"}),
        ("/data?flag", {"flag": ""}),
        ("/data?a=1&&b=2", {"a": "1", "b": "2"}),
        ("/data?a=x=y", {"a": "x=y"}),
    ],
)
def test_query_params(target, params):
    assert query_params(target) == params


@pytest.mark.parametrize("target", ["/data?prefix=%FF", "/data?prefix=%E6%95", "/data?prefix=%ZZ", "/data?prefix=%", "/data?limit=1&limit=2",
                                    "/data?prefix=a#b", "/data?%FF=1"])
def test_bad_queries(target):
    with pytest.raises(ToruaError) as err:
        query_params(target)
    assert err.value.code == "bad_request"
