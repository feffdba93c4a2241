"""API keys (features/security.feature): keys made through the admin key `torua up`
made, and requests sent with each."""

from __future__ import annotations

import json
import time

from behave import given, then, when

from torua_bdd import data_path


def _make(context, name: str, body: dict) -> None:
    resp = context.gateway.request("POST", "/auth/keys", json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert resp.status == 201, f"making key {name}: {resp!r}"
    made = resp.json()
    context.api_keys = getattr(context, "api_keys", {})
    context.api_keys[name] = made


def _as(context, name: str, method: str, path: str, body: bytes | None = None):
    token = context.api_keys[name]["token"] if name else ""
    context.response = context.gateway.request(method, path, body, {"Authorization": f"Bearer {token}" if token else ""})
    return context.response


@given('an API key "{name}" with role "{role}"')
def step_key(context, name, role):
    _make(context, name, {"name": name, "role": role})


@given('a tenant API key "{name}" with role "{role}" for the key prefix "{prefix}"')
def step_tenant_key(context, name, role, prefix):
    _make(context, name, {"name": name, "role": role, "prefixes": [prefix]})


@when('"{name}" stores "{key}"')
def step_store_as(context, name, key):
    _as(context, name, "PUT", data_path(key), b"value")


@when('"{name}" reads "{key}"')
def step_read_as(context, name, key):
    _as(context, name, "GET", data_path(key))


@when('"{name}" asks for "{path}"')
def step_ask_as(context, name, path):
    _as(context, name, "GET", path)


@when('a request without an API key reads "{key}"')
def step_read_without(context, key):
    _as(context, "", "GET", data_path(key))


@when('the admin revokes the key "{name}"')
def step_revoke(context, name):
    resp = context.gateway.request("DELETE", f"/auth/keys/{context.api_keys[name]['id']}")
    assert resp.status == 200 and resp.json()["revoked"], resp


@then('within a second "{name}" reading "{key}" is answered {status:d}')
def step_refused_within(context, name, key, status):
    deadline = time.monotonic() + 1.0
    while _as(context, name, "GET", data_path(key)).status != status:
        assert time.monotonic() < deadline, f"still {context.response!r} a second after the revocation"
        time.sleep(0.02)


@then('"{key}" does not exist')
def step_absent(context, key):
    resp = context.gateway.get(key)
    assert resp.status == 404, resp
