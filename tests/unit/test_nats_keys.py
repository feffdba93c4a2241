"""The NATS roles' permissions (torua.nats_roles) and the keys a `torua up` data dir
keeps (torua.nats_keys), and how processes and tools find them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import nkeys
import pytest

from torua import nats_keys
from torua.bus import NatsAuth, login_hint
from torua.cli.up_plan import ChildSpec, child_environment, with_nats_keys
from torua.nats_roles import NatsUser, deploy_auth_conf, permissions, render_authorization

DEPLOY_AUTH = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "auth.conf"


def test_the_deploy_auth_conf_is_the_table_rendered():
    """deploy/nats/auth.conf (which test_nats_security runs a cluster on) is the same
    table `torua up` renders; write it with `python -m torua.nats_roles`."""
    assert DEPLOY_AUTH.read_text() == deploy_auth_conf()


@pytest.mark.parametrize(
    "role,node_id,subject,may_publish",
    [
        ("coordinator", "", "torua.cluster.map", True),
        ("coordinator", "", "torua.node.*.shard.drop", True),
        ("node", "n1", "torua.cluster.map", False),
        ("node", "n1", "torua.node.*.shard.drop", False),
        ("node", "n1", "torua.cluster.heartbeat", True),  # for a coordinator of an older release
        ("node", "n1", "torua.cluster.heartbeat.n1", True),
        ("node", "n1", "torua.cluster.heartbeat.n2", False),
        ("gateway", "", "torua.node.*.kv", True),
        ("gateway", "", "torua.node.*.shard.snapshot", False),
        ("gateway", "", "$KV.torua_cluster.>", False),
        ("client", "", "torua.api.>", True),
        ("client", "", "torua.coordinator.info", True),
        ("client", "", "torua.coordinator.maintenance", False),
        ("client", "", "torua.cluster.broadcast", False),
        ("client", "", "torua.node.*.app.kv", True),  # one hop, with an API key the node checks
        ("client", "", "torua.node.*.kv", False),  # the gateway's, whose callers it checked
        ("gateway", "", "$KV.torua_keys.>", True),
        ("node", "n1", "$KV.torua_keys.>", False),  # nodes read the keys, never write them
        ("client", "acme", "torua.node.*.app.graph", True),
        ("client", "acme", "torua.coordinator.nodes", False),  # a named application sees no node list
    ],
)
def test_each_role_publishes_only_its_subjects(role, node_id, subject, may_publish):
    assert (subject in permissions(role, node_id).publish) is may_publish


def test_a_node_subscribes_to_its_own_subjects_and_inboxes_only():
    subs = permissions("node", "n7").subscribe
    assert "torua.node.n7.>" in subs and "_INBOX.torua-node-n7.>" in subs
    assert not any(s.startswith(("torua.node.*", "torua.node.>", "_INBOX.>")) for s in subs)
    with pytest.raises(ValueError, match="name its id"):
        permissions("node")
    with pytest.raises(ValueError, match="unknown role"):
        permissions("admin")  # type: ignore[arg-type]


def test_rendered_users_log_in_by_nkey_or_password():
    text = render_authorization([NatsUser("client", nkey="UABC"), NatsUser("node", "n2", user="n2", password="$P")])
    assert 'nkey: "UABC"' in text and "user: n2, password: $P" in text
    assert '"torua.node.n2.>"' in text and text.count("allow_responses") == 2


def test_a_seed_is_made_once_private_and_kept(tmp_path):
    path = nats_keys.ensure_seed(tmp_path, "node", "n1")
    assert path == tmp_path / "secrets" / "nats-node-n1.nk"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    seed = path.read_bytes()
    assert nkeys.from_seed(bytearray(seed.strip())).public_key.decode().startswith("U")
    assert nats_keys.ensure_seed(tmp_path, "node", "n1").read_bytes() == seed
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize(
    "role,node_id,problem",
    [
        ("node", "", "needs a node id"),
        ("node", "n/1", "needs a node id"),
        ("coordinator", "c1", "only a node key or a named application's key names an id"),
        ("client", "a.b", "an application's name is"),
        ("admin", "", "unknown role 'admin'"),
    ],
)
def test_a_key_asked_wrongly_is_refused(tmp_path, role, node_id, problem):
    with pytest.raises(nats_keys.NatsKeyError, match=problem):
        nats_keys.ensure_seed(tmp_path, role, node_id)
    assert not (tmp_path / "secrets").exists() or not list((tmp_path / "secrets").iterdir())


def test_a_damaged_seed_is_said_at_once(tmp_path):
    path = nats_keys.seed_path(tmp_path, "gateway")
    path.parent.mkdir(parents=True)
    path.write_text("not a seed\n")
    with pytest.raises(nats_keys.NatsKeyError, match="does not hold a NATS user nkey seed"):
        nats_keys.ensure_seed(tmp_path, "gateway")


def test_a_named_application_reads_only_its_own_replies():
    acme, shared = permissions("client", "acme"), permissions("client")
    assert "_INBOX.torua-client-acme.>" in acme.subscribe and not any(s.startswith("_INBOX.>") for s in acme.subscribe)
    assert "_INBOX.>" in shared.subscribe  # the unnamed login: trusted tools and plain nats clients


def test_the_auth_conf_names_every_kept_key_with_its_role(tmp_path):
    for role, node_id in (("coordinator", ""), ("node", "n2"), ("node", "n10"), ("client", ""), ("client", "acme")):
        nats_keys.ensure_seed(tmp_path, role, node_id)
    assert nats_keys.seed_path(tmp_path, "client", "acme").name == "nats-client-acme.nk"
    users = nats_keys.users(tmp_path)
    assert [(u.role, u.node_id) for u in users] == [("coordinator", ""), ("node", "n10"), ("node", "n2"), ("client", ""), ("client", "acme")]
    assert '"_INBOX.torua-client-acme.>"' in nats_keys.write_auth_conf(tmp_path).read_text()
    conf = nats_keys.write_auth_conf(tmp_path).read_text()
    for u in users:
        assert f'nkey: "{u.nkey}"' in conf
    assert '"torua.node.n10.>"' in conf and "gateway" not in conf


def test_a_reload_signals_only_a_running_nats_server(tmp_path):
    assert nats_keys.reload_server(tmp_path) is None  # no pid file
    # a pid file left by a dead server, whose pid is another process's now
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "nats").mkdir()
        (tmp_path / "nats" / nats_keys.PID_FILE).write_text(f"{other.pid}\n")
        assert nats_keys.reload_server(tmp_path) is None
        assert other.poll() is None  # not sent SIGHUP (which would have ended it)
    finally:
        other.kill()
        other.wait()


def test_processes_and_tools_find_the_key_of_their_role(tmp_path):
    seed = nats_keys.ensure_seed(tmp_path, "client")
    assert NatsAuth.discover("client", {"TORUA_DATA_DIR": str(tmp_path)}).nkey_seed == str(seed)
    assert NatsAuth.discover("gateway", {"TORUA_DATA_DIR": str(tmp_path)}).nkey_seed == ""
    # a login given in the environment wins
    given = NatsAuth.discover("client", {"TORUA_DATA_DIR": str(tmp_path), "TORUA_NATS_USER": "me", "TORUA_NATS_PASSWORD": "pw"})
    assert (given.user, given.nkey_seed) == ("me", "")
    assert "no credentials were given" in login_hint(NatsAuth())
    assert str(seed) in login_hint(NatsAuth(nkey_seed=str(seed)))


def test_children_of_a_secured_up_get_their_own_key_and_no_login_from_the_environment(tmp_path):
    specs = [ChildSpec("coordinator-c1", "coordinator", ("coordinator", "--id", "c1")),
             ChildSpec("node-n2", "node", ("node", "--id", "n2"), node_id="n2"),
             ChildSpec("gateway", "gateway", ("gateway",))]
    keyed = with_nats_keys(specs, tmp_path)
    assert [s.args[-2:] for s in keyed] == [
        ("--nats-nkey-seed", str(tmp_path / "secrets" / "nats-coordinator.nk")),
        ("--nats-nkey-seed", str(tmp_path / "secrets" / "nats-node-n2.nk")),
        ("--nats-nkey-seed", str(tmp_path / "secrets" / "nats-gateway.nk")),
    ]
    env = {"TORUA_NATS_USER": "u", "TORUA_NATS_PASSWORD": "p", "TORUA_NATS_CREDS": "c", "TORUA_NATS_TLS_CA": "ca", "PATH": os.defpath}
    assert child_environment(env, secured=True) == {"TORUA_NATS_TLS_CA": "ca", "PATH": os.defpath}
    assert child_environment(env, secured=False) == env


def test_torua_auth_nats_prints_a_key_and_refuses_what_it_cannot_make(tmp_path, capsys):
    from torua.cli.main import main

    assert main(["auth", "nats", "client", "--data-dir", str(tmp_path)]) == 2  # no torua up ran here
    assert "is not the data dir of a torua up" in capsys.readouterr().err
    (tmp_path / "nats").mkdir()
    assert main(["auth", "nats", "node", "--data-dir", str(tmp_path)]) == 2
    assert "needs a node id" in capsys.readouterr().err
    assert main(["auth", "nats", "node", "n4", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str((tmp_path / "secrets" / "nats-node-n4.nk").resolve())
    assert "no nats-server of" in out.err  # none runs: the next torua up takes it
    assert 'nkey: "' in (tmp_path / "nats" / "auth.conf").read_text()
    assert main(["auth", "nats", "node", "n4", "--data-dir", str(tmp_path)]) == 0  # again: the same key, nothing new
    assert capsys.readouterr().err == ""
