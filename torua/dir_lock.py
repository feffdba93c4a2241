"""One process per directory: an exclusive lock on what a process owns on disk.

`torua up` holds its data dir (the JetStream store of the nats-server it starts,
the nodes' directories, the logs) and each `torua node` its own node dir, for as
long as the process lives. The lock is flock(2) on `<dir>/torua.lock`: the kernel
drops it when the last process holding it ends, however it ends (kill -9 too), so
a stale lock never stays behind and nothing needs cleaning up by hand. The file
also says who holds it (pid and command), for the refusal a second process gets.

A refused claim writes nothing: the directory and the lock file exist already
when another process holds them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "torua.lock"


class DirLockError(RuntimeError):
    """A process cannot take the directory it is to own."""


@dataclass(frozen=True)
class Holder:
    """Who holds a directory, as its lock file says."""

    pid: int
    command: str

    def encode(self) -> bytes:
        return json.dumps({"pid": self.pid, "command": self.command}).encode() + b"\n"

    @classmethod
    def decode(cls, raw: bytes) -> "Holder | None":
        """None when the file says nothing usable (the holder has not written it yet)."""
        try:
            record = json.loads(raw)
            return cls(int(record["pid"]), str(record.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None


class DirTaken(DirLockError):
    """Another process holds the directory."""

    def __init__(self, directory: Path, holder: Holder | None, holder_alive: bool = True) -> None:
        self.directory = directory
        self.holder = holder
        super().__init__(refusal(directory, holder, holder_alive))


def refusal(directory: Path, holder: Holder | None, holder_alive: bool = True) -> str:
    """The one line a refused process prints.

    >>> refusal(Path("/d/n1"), Holder(42, "torua node --id n1"))
    '/d/n1 is in use by torua node --id n1 (pid 42); one directory serves one process at a time'
    >>> refusal(Path("/d"), Holder(42, "torua up"), holder_alive=False)
    '/d is in use by a process that torua up (pid 42, gone now) started; one directory serves one process at a time'
    >>> refusal(Path("/d"), None)
    '/d is in use by another process; one directory serves one process at a time'
    """
    if holder is None:
        who = "another process"
    elif holder_alive:
        who = f"{holder.command or 'a process'} (pid {holder.pid})"
    else:  # the lock lives on in a child that inherited it (torua up's nats-server)
        who = f"a process that {holder.command or 'a process'} (pid {holder.pid}, gone now) started"
    return f"{directory} is in use by {who}; one directory serves one process at a time"


class DirLock:
    """A held directory; released by `release()` or when the process ends."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self.fd = fd

    @property
    def held(self) -> bool:
        return self.fd >= 0

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = -1


def claim(directory: Path | str, command: str) -> DirLock:
    """Take `directory` (made if missing) for this process, or raise `DirTaken`.

    The descriptor is close-on-exec; pass it to a child (`pass_fds`) to have the
    child hold the directory too, until both have ended."""
    directory = Path(directory).resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DirLockError(f"cannot use {directory}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        try:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DirLockError(f"cannot lock {directory / LOCK_FILE}: {exc.strerror or exc}") from None
            holder = Holder.decode(os.pread(fd, 4096, 0))
            raise DirTaken(directory, holder, holder is None or _alive(holder.pid)) from None
        finally:
            os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, Holder(os.getpid(), command).encode(), 0)
    return DirLock(directory, fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
