"""wanlab.fsutil's lock: one FileLock for the store, the task claims, the idempotency index and MagCache."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from wanlab.fsutil import FileLock, file_lock, umask


def test_a_held_lock_excludes_other_holders_until_released(tmp_path):
    path = tmp_path / "sub" / ".lock"
    first, second = FileLock(path), FileLock(path)
    assert first.acquire() and first.locked and path.is_file()
    assert second.acquire(blocking=False) is False and not second.locked
    first.release()
    first.release()  # safe twice
    assert second.acquire(blocking=False) is True
    second.release()


def test_threads_wait_for_each_other(tmp_path):
    path = tmp_path / ".lock"
    inside, order = threading.Event(), []

    def hold():
        with file_lock(path):
            inside.set()
            order.append("holder")
            threading.Event().wait(0.2)
            order.append("holder done")

    thread = threading.Thread(target=hold)
    thread.start()
    inside.wait(5)
    with file_lock(path):
        order.append("waiter")
    thread.join()
    assert order == ["holder", "holder done", "waiter"]


def test_another_process_is_excluded_and_the_kernel_releases_a_dead_holder(tmp_path):
    path = tmp_path / ".lock"
    code = ("import sys; from wanlab.fsutil import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert FileLock(path).acquire(blocking=False) is False
    finally:
        holder.kill()
        holder.wait()
    lock = FileLock(path)
    assert lock.acquire(blocking=False) is True
    lock.release()


def test_lock_files_take_the_mode_asked_and_locks_are_not_reentrant(tmp_path):
    lock = FileLock(tmp_path / "secret.lock", mode=0o600)
    with lock:
        with pytest.raises(RuntimeError, match=r"secret\.lock: this FileLock is already held \(it is not re-entrant\)"):
            lock.acquire()
    assert os.stat(tmp_path / "secret.lock").st_mode & 0o777 == 0o600 & ~umask()
    assert not lock.locked and "locked=False" in repr(lock)
