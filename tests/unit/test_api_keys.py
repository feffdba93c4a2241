"""API keys (torua.api_keys) and who may call what (torua.access): tokens, records,
and the decision for each role and tenant, as tables."""

from __future__ import annotations

import pytest

from torua import api_keys
from torua.access import APP_OPERATIONS, RULES, admit_app
from torua.api_keys import ApiKey, Rule, Scope, bearer_token, check_reach, check_role, check_secret, new_key, parse_token, permit, visible
from torua.gateway.endpoints import ENDPOINTS
from torua.protocol.errors import ToruaError


def key(role: str, scope: Scope | None = None) -> ApiKey:
    return new_key(f"k-{role}", role, scope, now=1.0)[1]


TENANT = Scope(graphs=("docs",), prefixes=("t1/", "shared/"))


def test_a_token_names_its_record_and_only_its_secret_matches():
    token, record = new_key("ingest", "write", None, now=5.0)
    key_id, secret = parse_token(token)
    assert key_id == record.id and record.matches(secret) and not record.matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert secret not in str(record.to_dict())  # the record keeps a hash, never the secret
    assert check_secret(record, secret) is record
    assert ApiKey.from_dict(record.to_dict()) == record


@pytest.mark.parametrize(
    "token",
    ["", "torua_", "torua_0123_abc", "Torua_0123456789abcdef_" + "a" * 43, "torua_0123456789abcdeg_" + "a" * 43, "torua_0123456789abcdef_" + "a" * 42],
)
def test_a_malformed_token_is_unauthorized(token):
    with pytest.raises(ToruaError) as err:
        parse_token(token)
    assert err.value.code == "unauthorized"


@pytest.mark.parametrize(
    "header, expected",
    [(None, None), ("", None), ("  ", None), ("Bearer abc", "abc"), ("bearer   abc ", "abc"), ("Basic dXNlcjpwdw==", "unauthorized"), ("Bearer", "unauthorized")],
)
def test_the_authorization_header(header, expected):
    if expected == "unauthorized":
        with pytest.raises(ToruaError) as err:
            bearer_token(header)
        assert err.value.code == "unauthorized"
    else:
        assert bearer_token(header) == expected


def test_unknown_revoked_and_wrong_secret_get_one_answer():
    token, record = new_key("x", "read", None, now=1.0)
    _, secret = parse_token(token)
    answers = set()
    for candidate, given in ((None, secret), (api_keys.revoked(record, 2.0), secret), (record, "b" * 43)):
        with pytest.raises(ToruaError) as err:
            check_secret(candidate, given)
        answers.add((err.value.code, err.value.message))
    assert answers == {("unauthorized", api_keys.NOT_VALID)}
    assert api_keys.revoked(api_keys.revoked(record, 2.0), 3.0).revoked_at == 2.0  # revoking twice keeps the first time


@pytest.mark.parametrize(
    "name, role, scope",
    [("", "read", None), ("x" * 65, "read", None), ("-lead", "read", None), ("ok", "owner", None), ("ok", "read", Scope((), ("",)))],
)
def test_a_new_key_with_a_bad_name_role_or_scope_is_refused(name, role, scope):
    with pytest.raises(ToruaError) as err:
        new_key(name, role, scope, now=1.0)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize("data", [None, [], {"v": 2}, {"v": 1, "id": "a"}, {**key("read").to_dict(), "role": "root"}, {**key("read").to_dict(), "created_at": "x"}])
def test_a_record_that_is_not_one_is_refused(data):
    with pytest.raises(ToruaError) as err:
        ApiKey.from_dict(data)
    assert err.value.code == "bad_request"


# (rule, key role, key scope, params, allowed?)
CASES = [
    (Rule("read", "key"), "read", None, {"key": "a"}, True),
    (Rule("write", "key"), "read", None, {"key": "a"}, False),
    (Rule("write", "key"), "write", None, {"key": "a"}, True),
    (Rule("admin", "cluster"), "write", None, {}, False),
    (Rule("admin", "cluster"), "admin", None, {}, True),
    (Rule("read", "cluster"), "admin", TENANT, {}, False),  # a tenant never sees the cluster as a whole
    (Rule("admin", "keys"), "admin", TENANT, {}, False),  # nor makes keys
    (Rule("write", "key"), "write", TENANT, {"key": "t1/x"}, True),
    (Rule("write", "key"), "write", TENANT, {"key": "shared/y"}, True),
    (Rule("write", "key"), "write", TENANT, {"key": "t2/x"}, False),
    (Rule("write", "key"), "write", TENANT, {"key": "t1"}, False),  # the prefix is "t1/", not "t1"
    (Rule("read", "prefix"), "read", TENANT, {"prefix": "t1/a"}, True),
    (Rule("read", "prefix"), "read", TENANT, {"prefix": ""}, False),  # listing everything is not within t1/
    (Rule("read", "prefix"), "read", TENANT, {"prefix": "t"}, False),
    (Rule("read", "graph"), "read", TENANT, {"graph": "docs"}, True),
    (Rule("read", "graph"), "read", TENANT, {"graph": "other"}, False),
    (Rule("admin", "graph"), "write", TENANT, {"graph": "docs"}, False),
    (Rule("admin", "graph"), "admin", TENANT, {"graph": "docs"}, True),  # a tenant admin makes and removes its own graphs
    (Rule("read", "catalog"), "read", TENANT, {}, True),
    (Rule("public", "none"), "read", TENANT, {}, True),
]


@pytest.mark.parametrize("rule, role, scope, values, allowed", CASES)
def test_permit(rule, role, scope, values, allowed):
    k = key(role, scope)
    if allowed:
        permit(rule, k, values, "op")
        return
    with pytest.raises(ToruaError) as err:
        permit(rule, k, values, "op")
    assert err.value.code == "forbidden"
    assert "other" not in err.value.message and "t2/" not in err.value.message  # its own rights, never what was asked for


def test_the_role_is_checked_without_params_and_the_reach_with_them():
    tenant = key("write", TENANT)
    check_role(Rule("write", "graph"), tenant, "vertex_put")  # no graph named yet: the role alone passes
    with pytest.raises(ToruaError):
        check_reach(Rule("write", "graph"), tenant, {"graph": "other"}, "vertex_put")
    check_reach(Rule("write", "graph"), key("read"), {"graph": "other"}, "vertex_put")  # an unscoped key reaches every graph


def test_a_tenant_sees_only_its_graphs_in_the_list():
    listed = {"graphs": [{"name": "docs"}, {"name": "other"}]}
    assert visible(RULES["graph_list"], key("read", TENANT), listed) == {"graphs": [{"name": "docs"}]}
    assert visible(RULES["graph_list"], key("read"), listed) == listed
    assert visible(RULES["kv_list"], key("read", TENANT), {"keys": ["x"]}) == {"keys": ["x"]}


def test_every_endpoint_has_a_rule_and_admin_operations_need_admin():
    assert set(RULES) == {e.name for e in ENDPOINTS}
    from torua.gateway.audit import ADMIN_OPERATIONS

    assert all(RULES[op].role == "admin" for op in ADMIN_OPERATIONS)
    assert {name for name, rule in RULES.items() if rule.role == "public"} == {"health", "openapi"}


@pytest.mark.parametrize(
    "kind, op, role, scope, values, keys_on, code",
    [
        ("kv", "get", None, None, {"key": "a"}, False, None),  # keys off: anything an application sends
        ("kv", "put", None, None, {"key": "a"}, True, "unauthorized"),
        ("kv", "put", "read", None, {"key": "a"}, True, "forbidden"),
        ("kv", "put", "write", None, {"key": "a"}, True, None),
        ("kv", "list", "read", TENANT, {"key": "", "prefix": "t1/"}, True, None),
        ("kv", "list", "read", TENANT, {"key": "", "prefix": ""}, True, "forbidden"),
        ("graph", "vertex.put", "write", TENANT, {"graph": "docs"}, True, None),
        ("graph", "edge.put", "write", TENANT, {"graph": "other"}, True, "forbidden"),
        ("graph", "edges", "read", None, {"graph": "docs"}, True, None),
        ("graph", "import", "write", TENANT, {"graph": "docs"}, True, None),  # Graph.put_many: a worker's batch for one shard
        ("graph", "import", "read", TENANT, {"graph": "docs"}, True, "forbidden"),
        ("graph", "edge.attach", "admin", None, {"graph": "docs"}, True, "forbidden"),  # nodes' own operations are not an application's
        ("graph", "edge.attach", None, None, {"graph": "docs"}, False, "forbidden"),
        ("kv", "gets", "admin", None, {"key": "a"}, True, "forbidden"),
    ],
)
def test_an_applications_one_hop_request(kind, op, role, scope, values, keys_on, code):
    k = key(role, scope) if role else None
    if code is None:
        admit_app(kind, op, k, values, keys_on)
        return
    with pytest.raises(ToruaError) as err:
        admit_app(kind, op, k, values, keys_on)
    assert err.value.code == code


def test_every_one_hop_operation_follows_an_endpoints_rule():
    assert {name for ops in APP_OPERATIONS.values() for name in ops.values()} <= set(RULES)


def test_a_client_finds_its_key_in_the_environment_then_the_data_dir(tmp_path):
    assert api_keys.discovered_token({"TORUA_API_KEY": " tok ", "TORUA_DATA_DIR": str(tmp_path)}) == "tok"
    assert api_keys.discovered_token({"TORUA_DATA_DIR": str(tmp_path)}) == ""
    api_keys.admin_key_path(tmp_path).parent.mkdir()
    api_keys.admin_key_path(tmp_path).write_text("torua_x\n")
    assert api_keys.discovered_token({"TORUA_DATA_DIR": str(tmp_path)}) == "torua_x"


@pytest.mark.parametrize("rate, max_bytes", [(0.0, None), (-1.0, None), (2e6, None), (None, 0), (None, (1 << 30) + 1)])
def test_a_new_key_with_a_bad_limit_is_refused(rate, max_bytes):
    with pytest.raises(ToruaError) as err:
        new_key("x", "read", None, 1.0, rate, max_bytes)
    assert err.value.code == "bad_request"


def test_a_keys_limits_travel_with_its_record_and_an_older_record_has_none():
    _, limited = new_key("x", "write", None, 1.0, rate=5.0, max_bytes=100)
    assert ApiKey.from_dict(limited.to_dict()) == limited
    older = {k: v for k, v in limited.to_dict().items() if k not in ("rate", "max_bytes")}
    assert ApiKey.from_dict(older).rate is None and ApiKey.from_dict(older).max_bytes is None


@pytest.mark.parametrize("max_bytes, size, limit, refused, allowed", [
    (None, 10**9, 100, False, 100), (100, 100, 1000, False, 100), (100, 101, 1000, True, 100), (100, None, 50, False, 50),
])
def test_a_keys_request_size(max_bytes, size, limit, refused, allowed):
    k = new_key("x", "write", None, 1.0, max_bytes=max_bytes)[1]
    assert api_keys.size_limit(k, limit) == allowed and api_keys.size_limit(None, limit) == limit
    if refused:
        with pytest.raises(ToruaError) as err:
            api_keys.check_size(k, size)
        assert err.value.code == "value_too_large"
    else:
        api_keys.check_size(k, size)
