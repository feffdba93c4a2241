"""`torua up`: one command runs the whole cluster, Ctrl-C stops all of it, data survives."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request

import psutil

from torua.cli.up import torua_command
from tests.support.processes import free_port, wait_until


def start_up(data_dir, http_port: int, nats_port: int) -> subprocess.Popen:
    return subprocess.Popen(
        torua_command()
        + ["up", "--nodes", "3", "--shards", "8", "--data-dir", str(data_dir), "--port", str(http_port), "--nats-port", str(nats_port), "--heartbeat-interval", "0.25"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def read_until(proc: subprocess.Popen, marker: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if marker in line:
            return seen
    raise AssertionError(f"{marker!r} not printed within {timeout}s; got:\n{seen.decode(errors='replace')}")


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> list[psutil.Process]:
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    assert proc.wait(60) == 0
    return children


def test_up_runs_a_cluster_and_ctrl_c_stops_every_process(tmp_path):
    http_port, nats_port = free_port(), free_port()
    proc = start_up(tmp_path / "data", http_port, nats_port)
    children: list[psutil.Process] = []
    try:
        out = read_until(proc, b"ready", 60)
        assert f"http://127.0.0.1:{http_port}".encode() in out
        assert f"nats://127.0.0.1:{nats_port}".encode() in out
        children = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = [" ".join(c.cmdline()) for c in children]
        for role in ("coordinator", "node --id n1", "node --id n2", "node --id n3", "gateway"):
            assert any(f"torua {role}" in line for line in cmdlines), (role, cmdlines)
        assert any("nats-server" in line for line in cmdlines)
        base = f"http://127.0.0.1:{http_port}"
        assert http("PUT", base + "/data/survives/restart", b"still here")[0] == 204
        children = stop(proc)
        wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), 10, "every child gone")

        proc = start_up(tmp_path / "data", http_port, nats_port)
        read_until(proc, b"ready", 60)
        assert http("GET", base + "/data/survives/restart") == (200, b"still here")
        # A child that dies is reported; the rest of the cluster keeps serving.
        n3 = next(c for c in psutil.Process(proc.pid).children() if "node" in c.cmdline() and "n3" in c.cmdline())
        n3.kill()
        read_until(proc, f"node-n3 (pid {n3.pid}) exited".encode(), 30)
        assert proc.poll() is None
        wait_until(lambda: http("GET", base + "/health")[0] == 200, 10, "the gateway to answer")
        children = stop(proc, signal.SIGTERM)
        wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), 10, "every child gone")
    finally:
        if proc.poll() is None:
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
            proc.wait(10)
        for c in children:
            try:
                c.kill()
            except psutil.Error:
                pass


def test_up_children_die_with_it_when_it_is_killed(tmp_path):
    proc = start_up(tmp_path / "data", free_port(), free_port())
    children: list[psutil.Process] = []
    try:
        read_until(proc, b"Torua 3 nodes", 60)
        children = wait_until(lambda: (ch := psutil.Process(proc.pid).children(recursive=True)) and len(ch) >= 6 and ch, 20, "children started")
        proc.kill()
        proc.wait(10)
        wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), 20, "orphans to exit")
    finally:
        for c in children:
            try:
                c.kill()
            except psutil.Error:
                pass
