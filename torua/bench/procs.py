"""Every process a bench run starts, in one temp dir, and how they all stop.

Children get SIGTERM from the kernel if the bench dies (PR_SET_PDEATHSIG), and
`Stack.stop` ends them front to back (Torua, the HTTP echo, the echo responder,
NATS last) with a grace period, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from torua.api_keys import admin_key_path
from torua.cli.up import nats_config, nats_server_binary, torua_command, wait_for_port
from torua.ports import free_port

ECHO_SUBJECT = "bench.echo"

# A bare nats-py responder: the floor for any request over NATS from Python.
ECHO_SCRIPT = """
import asyncio, signal, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    async def echo(msg):
        await nc.publish(msg.reply, msg.data)
    await nc.subscribe(sys.argv[2], cb=echo)
    await nc.flush()
    print("echo ready", flush=True)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set)
    await stop.wait()
    await nc.close()
asyncio.run(main())
"""

# A bare aiohttp handler doing one NATS echo per HTTP request: the floor for a gateway of this shape.
HTTP_ECHO_SCRIPT = """
import asyncio, signal, sys, nats
from aiohttp import web
async def main():
    nc = await nats.connect(sys.argv[1])
    subject, port, value = sys.argv[2], int(sys.argv[3]), b"v" * int(sys.argv[4])
    async def get(request):
        msg = await nc.request(subject, value, timeout=5)
        return web.Response(body=msg.data, content_type="application/octet-stream")
    async def put(request):
        await nc.request(subject, await request.read(), timeout=5)
        return web.Response(status=204)
    app = web.Application(client_max_size=16 << 20)
    app.router.add_get("/data/{key:.+}", get)
    app.router.add_put("/data/{key:.+}", put)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("http echo ready", flush=True)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set)
    await stop.wait()
    await runner.cleanup()
    await nc.close()
asyncio.run(main())
"""


class BenchError(RuntimeError):
    """Something the bench needs did not start or did not work."""



def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM from the kernel if the bench dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Stack:
    def __init__(self, workdir: Path, insecure: bool = False) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.insecure = insecure  # the Torua it starts takes requests without API keys
        self.api_key = ""  # else the admin key its `torua up` made, which every Torua request carries

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def log_tail(self, name: str, chars: int = 3000) -> str:
        try:
            return self.log_path(name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        path = self.log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.procs.append((name, proc))
        return proc

    def run_anchor(self, name: str, module: str, workdir: Path) -> None:
        """`python -m module workdir` to its end (an anchor measured alone), its last words
        printed; `BenchError` if it failed."""
        proc = self.spawn(name, [sys.executable, "-m", module, str(workdir)])
        proc.wait()
        print(self.log_tail(name, 2000).rstrip(), flush=True)
        if proc.returncode != 0:
            raise BenchError(f"{name} exited with code {proc.returncode}")

    def wait_for_text(self, name: str, proc: subprocess.Popen, text: str, timeout: float, fail_texts: tuple[str, ...] = ()) -> None:
        deadline = time.monotonic() + timeout
        state = f"not ready after {timeout:g}s"
        while time.monotonic() < deadline:
            log = self.log_tail(name, 1 << 20)
            if text in log:
                return
            if proc.poll() is not None:
                state = f"exited with code {proc.returncode}"
                break
            if any(t in log for t in fail_texts):
                state = "failed"
                break
            time.sleep(0.1)
        raise BenchError(f"{name} {state}; its log ends with:\n{self.log_tail(name)}")

    def start_nats(self, name: str, sync_always: bool = False) -> str:
        port = free_port()
        conf = nats_config(self.workdir / name, port)
        if sync_always:  # fsync every JetStream write, like Torua's durable commit
            text = conf.read_text()
            synced = text.replace("jetstream {", "jetstream {\n  sync_interval: always", 1)
            if synced == text:
                raise BenchError(f"cannot set sync_interval in {conf}")
            conf.write_text(synced)
        proc = self.spawn(name, [nats_server_binary(), "-c", str(conf)])
        if not wait_for_port(port, time.monotonic() + 15, proc):
            raise BenchError(f"{name} did not start; its log ends with:\n{self.log_tail(name)}")
        return f"nats://127.0.0.1:{port}"

    def start_echo(self, nats_url: str) -> None:
        # The work dir on the command line marks the process as ours.
        proc = self.spawn("nats-echo", [sys.executable, "-c", ECHO_SCRIPT, nats_url, ECHO_SUBJECT, str(self.workdir)])
        self.wait_for_text("nats-echo", proc, "echo ready", 20)

    def start_http_echo(self, nats_url: str, value_size: int) -> str:
        port = free_port()
        argv = [sys.executable, "-c", HTTP_ECHO_SCRIPT, nats_url, ECHO_SUBJECT, str(port), str(value_size), str(self.workdir)]
        proc = self.spawn("aiohttp-echo", argv)
        self.wait_for_text("aiohttp-echo", proc, "http echo ready", 20)
        return f"http://127.0.0.1:{port}"

    def start_torua(
        self, nats_url: str, commit: str, nodes: int = 3, shards: int = 16, timeout: float = 60, replicas: int = 1, workers: int = 0,
    ) -> str:
        """`torua up` on `nats_url`; `workers`: GraphRAG workers (none unless asked: the other benches need none)."""
        port = free_port()
        argv = torua_command() + [
            "up", "--nats-url", nats_url, "--nodes", str(nodes), "--shards", str(shards), "--port", str(port), "--replicas", str(replicas),
            "--commit", commit, "--data-dir", str(self.workdir / "torua"), "--ready-timeout", str(timeout), "--workers", str(workers),
        ] + (["--insecure"] if self.insecure else [])
        proc = self.spawn("torua-up", argv)
        self.wait_for_text("torua-up", proc, "is ready", timeout + 15, fail_texts=("not ready after", "exited with code"))
        if not self.insecure:
            self.api_key = admin_key_path(self.workdir / "torua").read_text().strip()
        return f"http://127.0.0.1:{port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """What a request to the Torua it started carries."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def stop(self) -> None:
        """Front to back; `torua up` gets SIGINT (it stops its own children), the rest SIGTERM."""
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if name == "torua-up" else signal.SIGTERM)
                try:
                    proc.wait(timeout=45 if name == "torua-up" else 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            else:
                proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


T = TypeVar("T")
CLEANUP_S = 10.0  # what a bench's asynchronous part gets to end after Ctrl-C, and its tasks left after it


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a bench's asynchronous part (as `asyncio.run` does) so that Ctrl-C or SIGTERM
    stops it within bounds: the signal cancels it (its `finally` blocks run), it gets
    `CLEANUP_S` to end, the tasks left after it `CLEANUP_S` more, then
    KeyboardInterrupt (which `in_own_stack` answers). A KeyboardInterrupt raised in
    the middle of the event loop, as `_interrupt` raises it elsewhere, left
    `asyncio.run` waiting without end for the cleanup of a task it cancelled."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(main)
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            task.cancel()
            loop.call_later(CLEANUP_S, loop.stop)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        loop.add_signal_handler(sig, interrupt)
    try:
        return loop.run_until_complete(task)
    except (asyncio.CancelledError, RuntimeError):  # RuntimeError: stopped before it ended
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        for sig in previous:
            loop.remove_signal_handler(sig)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in left:
            t.cancel()
        with contextlib.suppress(Exception):
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=CLEANUP_S))
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), CLEANUP_S))
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), CLEANUP_S))
        asyncio.set_event_loop(None)
        loop.close()


def in_own_stack(prefix: str, insecure: bool, body: "Callable[[Stack, Path], int]") -> int:
    """Run a bench that starts its own processes: `body(stack, workdir)` in a fresh temp
    dir, its exit code answered; whatever it started is stopped at the end, also on
    Ctrl-C (130) or an error (1: the processes' logs are kept in a dir of their own,
    named), and the dir removed."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    stack = Stack(workdir, insecure=insecure)
    # Our own handler for both: asyncio.run's SIGINT handler only cancels the main task once.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"torua bench: work dir {workdir}", flush=True)
    failed = True
    try:
        code = body(stack, workdir)
        failed = code == 1
        return code
    except KeyboardInterrupt as exc:
        failed = False  # the user's choice: nothing to look into
        return bench_failed(exc, stack)
    except Exception as exc:
        return bench_failed(exc, stack)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans
        print("torua bench: stopping everything it started", flush=True)
        stack.stop()
        if failed:  # what the processes said, for the failure
            keep_logs(workdir, prefix + "logs-")
        shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def keep_logs(workdir: Path, prefix: str) -> None:
    """Copy what the processes of a failed run said out of `workdir` (which is removed)."""
    if not (workdir / "logs").exists():
        return
    kept = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copytree(workdir / "logs", kept / "logs")
    if (workdir / "torua" / "logs").exists():
        shutil.copytree(workdir / "torua" / "logs", kept / "logs" / "torua")
    print(f"torua bench: the processes' logs are kept in {kept / 'logs'}", file=sys.stderr)


def bench_failed(exc: BaseException, stack: "Stack") -> int:
    """What `torua bench` says and exits with when a run stops on `exc` (the caller
    still stops what it started): 1, or 130 for Ctrl-C."""
    if isinstance(exc, KeyboardInterrupt):
        print("torua bench: interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, BenchError):
        print(f"torua bench: {exc}", file=sys.stderr)
        return 1
    traceback.print_exception(exc)
    if any(name == "torua-up" for name, _ in stack.procs):
        print(f"torua bench: the torua up log ends with:\n{stack.log_tail('torua-up')}", file=sys.stderr)
    return 1
