"""Steps for storing, reading, overwriting, deleting and listing values through the gateway."""

from __future__ import annotations

import os
import threading
from urllib.parse import quote

from behave import given, then, when

from torua_bdd import Response, generated_value


def assert_reads(gateway, key: str, value: bytes) -> None:
    resp = gateway.get(key)
    assert resp.status == 200, f"GET {key!r}: expected 200, got {resp!r}"
    if resp.body != value:
        raise AssertionError(f"GET {key!r}: expected {describe(value)}, got {describe(resp.body)}")


def describe(data: bytes) -> str:
    if len(data) <= 80:
        return repr(data)
    return f"{len(data)} bytes starting {data[:16]!r}"


def store_generated(context, count: int, pattern: str) -> None:
    assert "{n}" in pattern, f"the key pattern {pattern!r} needs a {{n}}"
    context.keys = [pattern.replace("{n}", str(n)) for n in range(count)]
    for key in context.keys:
        value = generated_value(key)
        resp = context.gateway.put(key, value)
        assert resp.status == 204, f"PUT {key!r}: expected 204, got {resp!r}"
        context.written[key] = value


# ------------------------------------------------------------- single keys


@given('the key "{key}" holds "{value}"')
def step_key_holds(context, key, value):
    resp = context.gateway.put(key, value.encode())
    assert resp.status == 204, f"PUT {key!r}: expected 204, got {resp!r}"
    context.written[key] = value.encode()


@when('I store "{value}" under the key "{key}"')
def step_store(context, value, key):
    context.response = context.gateway.put(key, value.encode())
    context.written[key] = value.encode()


@when('I store {size:g} MiB of random bytes under the key "{key}"')
def step_store_random(context, size, key):
    data = os.urandom(int(size * (1 << 20)))
    context.response = context.gateway.put(key, data, "application/octet-stream")
    context.written[key] = data


@then("the store is accepted")
def step_store_accepted(context):
    assert context.response.status == 204, f"expected 204, got {context.response!r}"


@then('the store is refused with {status:d} and error code "{code}"')
def step_store_refused(context, status, code):
    assert_error(context.response, status, code)


@then('reading the key "{key}" returns "{value}"')
def step_read_returns(context, key, value):
    assert_reads(context.gateway, key, value.encode())


@then('reading the key "{key}" returns exactly those bytes')
def step_read_exact(context, key):
    assert_reads(context.gateway, key, context.written[key])


@when('I delete the key "{key}"')
def step_delete(context, key):
    context.response = context.gateway.delete(key)


@then("the delete is accepted")
def step_delete_accepted(context):
    assert context.response.status == 204, f"expected 204, got {context.response!r}"


@then('deleting the key "{key}" again is accepted as well')
def step_delete_again(context, key):
    resp = context.gateway.delete(key)
    assert resp.status == 204, f"second DELETE {key!r}: expected 204, got {resp!r}"


@then('reading the key "{key}" answers 404 with error code "{code}"')
def step_read_404(context, key, code):
    assert_error(context.gateway.get(key), 404, code)


def assert_error(resp: Response, status: int, code: str) -> None:
    assert resp.status == status, f"expected {status}, got {resp!r}"
    content_type = resp.headers.get("Content-Type", "")
    assert content_type.startswith("application/json"), f"expected a JSON error, got Content-Type {content_type!r}: {resp!r}"
    assert resp.error_code() == code, f"expected error code {code!r}, got {resp!r}"
    assert resp.json()["error"].get("message"), f"the error has no message: {resp!r}"


# ------------------------------------------------------------- many keys


@given('{count:d} keys named "{pattern}" are stored')
def step_keys_stored(context, count, pattern):
    store_generated(context, count, pattern)


@when('I store {count:d} keys named "{pattern}"')
def step_store_keys(context, count, pattern):
    store_generated(context, count, pattern)


@when('I store {count:d} keys named "{pattern}" one after another')
def step_store_keys_sequentially(context, count, pattern):
    store_generated(context, count, pattern)


@then("every one of those keys reads back its value")
def step_every_key_reads(context):
    for key in context.keys:
        assert_reads(context.gateway, key, context.written[key])


@then('listing keys with prefix "{prefix}" returns exactly those {count:d} keys')
def step_list_prefix(context, prefix, count):
    seen: list[str] = []
    cursor = None
    while True:
        path = f"/data?prefix={quote(prefix, safe='')}&limit=1000"
        if cursor:
            path += f"&cursor={quote(cursor, safe='')}"
        page = context.gateway.get_json(path)
        seen.extend(page["keys"])
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert len(seen) <= count * 2, f"listing does not end: {len(seen)} keys so far"
    assert len(seen) == len(set(seen)), f"listing returned duplicates: {len(seen)} keys, {len(set(seen))} distinct"
    assert len(seen) == count, f"expected {count} keys, listing returned {len(seen)}"
    assert sorted(seen) == sorted(context.keys), f"listing differs: missing {sorted(set(context.keys) - set(seen))[:10]}, extra {sorted(set(seen) - set(context.keys))[:10]}"


# ------------------------------------------------------------- concurrency


@when("{clients:d} clients at once each store {count:d} keys of their own and read each one back")
def step_concurrent(context, clients, count):
    gateway = context.gateway
    start = threading.Barrier(clients)
    errors: list[str] = []
    written: dict[str, bytes] = {}
    finished: list[int] = []
    lock = threading.Lock()

    def client(w: int) -> None:
        try:
            start.wait(timeout=30)
            mine = {}
            for i in range(count):
                key = f"concurrent/{w}/{i}"
                value = f"written by client {w}, value {i}".encode() * (1 + i % 5)
                resp = gateway.put(key, value)
                if resp.status != 204:
                    errors.append(f"client {w} PUT {key}: {resp!r}")
                    continue
                mine[key] = value
                got = gateway.get(key)
                if (got.status, got.body) != (200, value):
                    errors.append(f"client {w} GET {key}: expected {value!r}, got {got!r}")
            with lock:
                written.update(mine)
                finished.append(w)
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(f"client {w} failed: {exc!r}")

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    context.concurrent = {"errors": errors, "finished": sorted(finished), "clients": clients, "count": count}
    context.written.update(written)
    context.keys = sorted(written)


@then("every client read back exactly the values it wrote")
def step_concurrent_ok(context):
    result = context.concurrent
    assert not result["errors"], "\n".join(result["errors"][:20])
    assert result["finished"] == list(range(result["clients"])), f"clients that did not finish: {set(range(result['clients'])) - set(result['finished'])}"


@then("afterwards every one of those {count:d} keys holds the value its writer wrote")
def step_concurrent_after(context, count):
    assert len(context.keys) == count, f"expected {count} keys written, got {len(context.keys)}"
    for key in context.keys:
        assert_reads(context.gateway, key, context.written[key])
