"""torua.dir_lock: one process per directory, refused clearly, never stale."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from torua.dir_lock import LOCK_FILE, DirLockError, DirTaken, Holder, claim


def test_a_second_claim_is_refused_naming_the_path_and_the_holder(tmp_path):
    lock = claim(tmp_path / "n1", "torua node --id n1")
    try:
        before = (tmp_path / "n1" / LOCK_FILE).read_bytes()
        with pytest.raises(DirTaken) as refused:
            claim(tmp_path / "n1", "torua node --id n1")
        assert refused.value.holder == Holder(os.getpid(), "torua node --id n1")
        assert str(refused.value) == f"{tmp_path / 'n1'} is in use by torua node --id n1 (pid {os.getpid()}); one directory serves one process at a time"
        # the refused claim wrote nothing
        assert (tmp_path / "n1" / LOCK_FILE).read_bytes() == before
        assert sorted(p.name for p in (tmp_path / "n1").iterdir()) == [LOCK_FILE]
    finally:
        lock.release()


def test_released_then_claimed_again(tmp_path):
    claim(tmp_path, "torua up").release()
    lock = claim(tmp_path, "torua up")
    assert lock.held
    lock.release()
    assert not lock.held
    lock.release()  # twice is harmless


def test_the_lock_dies_with_its_process(tmp_path):
    """kill -9 leaves no stale lock: the kernel drops a dead process's flock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from torua.dir_lock import claim; claim(sys.argv[1], 'holder'); print('held', flush=True); time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(DirTaken) as refused:
            claim(tmp_path, "torua up")
        assert refused.value.holder == Holder(holder.pid, "holder")
        holder.kill()
        holder.wait(10)
        claim(tmp_path, "torua up").release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_a_child_given_the_descriptor_holds_the_directory_after_its_parent(tmp_path):
    """`torua up` passes its lock to its nats-server: the JetStream store stays held
    until both have ended, and the refusal says the holder itself is gone."""
    parent = subprocess.Popen(
        [
            sys.executable, "-c",
            "import subprocess, sys; from torua.dir_lock import claim\n"
            "lock = claim(sys.argv[1], 'torua up')\n"
            "child = subprocess.Popen(['sleep', '600'], pass_fds=[lock.fd])\n"
            "print(child.pid, flush=True)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        assert parent.wait(10) == 0
        with pytest.raises(DirTaken) as refused:
            claim(tmp_path, "torua up")
        assert f"a process that torua up (pid {parent.pid}, gone now) started" in str(refused.value)
    finally:
        os.kill(child_pid, 9)
    # once the child is gone too (reaped by init), the directory is free
    from tests.support.processes import wait_until

    wait_until(lambda: _claimable(tmp_path), 10, "the directory to be free")


def _claimable(path) -> bool:
    try:
        claim(path, "torua up").release()
        return True
    except DirTaken:
        return False


def test_a_directory_that_cannot_be_made_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DirLockError, match="cannot use .*file/sub"):
        claim(tmp_path / "file" / "sub", "torua node --id n1")


def test_an_unreadable_holder_record_still_refuses(tmp_path):
    lock = claim(tmp_path, "torua up")
    try:
        os.ftruncate(lock.fd, 0)  # as if the holder had not written it yet
        with pytest.raises(DirTaken, match="in use by another process"):
            claim(tmp_path, "torua up")
    finally:
        lock.release()
