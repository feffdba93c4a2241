"""Every process stops on SIGTERM in bounded time, whatever state NATS is in
(torua.stopping): NATS killed, NATS paused, NATS never reached."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.processes import Cluster, Proc, free_port, start_nats, wait_until

# A stop with NATS gone or paused takes a few seconds (bounded drains and closes);
# every process gives up on its own well before this.
STOP_BOUND = 15.0


def stop_within(procs: list[Proc], bound: float) -> dict[str, tuple[int, float]]:
    """SIGTERM each at once; {name: (exit code, seconds)}; fails naming those still running at the bound."""
    started = time.monotonic()
    for p in procs:
        p.popen.send_signal(signal.SIGTERM)
    took: dict[str, tuple[int, float]] = {}
    deadline = started + bound
    while time.monotonic() < deadline and len(took) < len(procs):
        for p in procs:
            if p.name not in took and p.popen.poll() is not None:
                took[p.name] = (p.popen.returncode, round(time.monotonic() - started, 1))
        time.sleep(0.05)
    running = [p.name for p in procs if p.name not in took]
    assert not running, f"still running {bound:g}s after SIGTERM: {running}; stopped: {took}"
    return took


@pytest.mark.parametrize("fault", ["killed", "paused"])
def test_sigterm_stops_every_process_when_nats_is_gone(group, fault):
    """(a) NATS SIGKILLed, (c) NATS SIGSTOPped under a running coordinator, nodes and
    gateway: each exits on SIGTERM within the bound, with code 0 and no traceback."""
    nats, url = start_nats(group)
    cluster = Cluster(group, url).start(nodes=2)
    assert cluster.request("PUT", "/data/k", b"v")[0] == 204
    if fault == "killed":
        nats.kill()
    else:
        nats.pause()
    try:
        procs = [p for p in group.procs if p is not nats]
        took = stop_within(procs, STOP_BOUND)
    finally:
        if fault == "paused":
            nats.resume()
    assert {name: code for name, (code, _) in took.items()} == {p.name: 0 for p in procs}, took
    for p in procs:
        assert "Traceback" not in p.log(), p.log()[-3000:]


@pytest.mark.parametrize("role", [["coordinator"], ["node", "--id", "n1"], ["gateway", "--port", "0"]], ids=lambda r: r[0])
def test_sigterm_while_retrying_the_first_connection(group, role):
    """(b) A process still retrying its first NATS connection stops at once, cleanly."""
    from torua.cli.up import torua_command

    nowhere = f"nats://127.0.0.1:{free_port()}"
    extra = ["--data-dir", str(group.workdir / "n1")] if role[0] == "node" else []
    proc = group.start(role[0], torua_command() + role + extra + ["--nats-url", nowhere, "--connect-timeout", "60"])
    wait_until(lambda: "(attempt 2)" in proc.log(), 20, "a second connection attempt")
    took = stop_within([proc], 5.0)
    assert took[proc.name][0] == 0, proc.log()
