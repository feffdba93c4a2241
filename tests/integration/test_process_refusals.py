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
