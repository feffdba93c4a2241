from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Cluster, ProcessGroup, start_nats


def pytest_configure(config):
    """SIGTERM stops a run as Ctrl-C does, so fixtures stop what they started
    (scripts/test sends it to the unit and simulation run beside the integration
    tests when it is stopped early)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _group():
    workdir = Path(tempfile.mkdtemp(prefix="torua-test-"))
    g = ProcessGroup(workdir)
    try:
        yield g
    finally:
        g.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def group():
    """A temp dir and every process started in it; all stopped and removed when the test ends."""
    yield from _group()


@pytest.fixture
def nats_url(group) -> str:
    _, url = start_nats(group)
    return url


@pytest.fixture
def cluster(group, nats_url) -> Cluster:
    """Coordinator, 3 nodes and a gateway of its own, formed and green: for tests that break things."""
    return Cluster(group, nats_url).start(nodes=3)


@pytest.fixture(scope="module")
def module_group():
    yield from _group()


@pytest.fixture(scope="module")
def shared_cluster(module_group) -> Cluster:
    """One cluster for a module of tests that only read and write."""
    _, url = start_nats(module_group)
    return Cluster(module_group, url).start(nodes=3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every log of the processes the test started."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("group", "module_group"):
            g = item.funcargs.get(name)
            if g is None and name == "module_group":
                c = item.funcargs.get("shared_cluster")
                g = c.group if c is not None else None
            if g is not None:
                for proc in g.procs:
                    report.sections.append((f"log {proc.name} (pid {proc.pid})", proc.log()[-3000:]))


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes a test starts (append each); killed and reaped when it ends."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
