"""What a process owns is refused to a second one in one clear line, exit 1:
a port (the gateway's REST port, any metrics port). Directories: torua.dir_lock,
tests/unit/test_dir_lock.py and tests/integration/test_up.py."""

from __future__ import annotations

import socket
import subprocess

import pytest

from torua.cli.up import torua_command


@pytest.mark.parametrize(
    "argv,message",
    [
        (["gateway", "--port", "{port}"], "torua gateway: cannot serve the REST API on 127.0.0.1:{port}: Address already in use; pick another with --port"),
        (["gateway", "--port", "0", "--metrics-port", "{port}"], "torua gateway: cannot serve the metrics on 127.0.0.1:{port}: Address already in use; pick another with --metrics-port"),
        (["coordinator", "--metrics-port", "{port}"], "torua coordinator: cannot serve the metrics on 127.0.0.1:{port}: Address already in use; pick another with --metrics-port"),
        (["node", "--id", "n1", "--data-dir", "{dir}", "--metrics-port", "{port}"], "torua node: cannot serve the metrics on 127.0.0.1:{port}: Address already in use; pick another with --metrics-port"),
    ],
    ids=["gateway-rest", "gateway-metrics", "coordinator-metrics", "node-metrics"],
)
def test_a_port_in_use_is_refused_in_one_line(group, nats_url, argv, message):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [a.format(port=port, dir=group.workdir / "n1") for a in argv]
        done = subprocess.run(torua_command() + args + ["--nats-url", nats_url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    last = done.stderr.strip().splitlines()[-1]
    assert last == message.format(port=port), done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("role", ["coordinator", "node", "gateway", "worker", "up"])
def test_a_bad_gc_threshold_is_refused_in_one_line_before_anything_starts(tmp_path, role):
    """TORUA_GC_THRESHOLD (torua.gc_settings) is read by every role process as it starts,
    and by `torua up` before it starts any: a value that is not a positive integer is
    a configuration error (exit 2), said before the process connects to anything or
    starts a child (no NATS runs here; up's data dir stays empty)."""
    import os

    argv = torua_command() + [role, "--nats-url", "nats://127.0.0.1:1"] + (["--id", "n1", "--data-dir", str(tmp_path / "n1")] if role == "node" else [])
    if role == "up":
        argv = torua_command() + ["up", "--data-dir", str(tmp_path / "data"), "--port", "0", "--nats-port", "0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "TORUA_GC_THRESHOLD": "lots"})
    assert done.returncode == 2, done
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    assert done.stderr.strip() == f"torua {role}: TORUA_GC_THRESHOLD must be a positive integer (Python's own is 700), not 'lots'", done.stderr
