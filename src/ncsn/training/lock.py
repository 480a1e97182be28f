"""One trainer per run directory: an OS lock on ``run_dir/.lock``, which names its holder.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on the file: the kernel releases it the moment its holder
dies, SIGKILL and power loss included, so there is no stale lock to detect or recover. The holder
writes its pid and host into the file so that a refused trainer can say who holds it. The file is
removed on exit; a lock file left by a killed trainer is simply taken over (nobody holds it).

``fcntl`` rather than the ``filelock`` package: filelock opens the lock file with ``O_TRUNC`` on
every attempt, so a refused attempt would erase the holder's pid and host that the refusal names.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ncsn.errors import NCSNError

LOCK_NAME = ".lock"


@contextmanager
def hold(run_dir: str | Path) -> Iterator[Path]:
    """Create ``run_dir`` if needed and hold its lock for the ``with`` block.

    A run directory this call created is removed again on exit if nothing was written into it,
    so a run that fails during set-up leaves nothing behind.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NCSNError(f"run_dir = {str(run_dir)!r}: exists and is not a directory") from None
    path = run_dir / LOCK_NAME
    fd = _acquire(path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # still holding the lock: nobody can have taken it
        os.close(fd)
        if created:
            try:
                run_dir.rmdir()  # only succeeds when empty
            except OSError:
                pass


def _acquire(path: Path) -> int:
    """An fd of ``path`` holding its exclusive lock, with this process's pid and host written."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise NCSNError(f"{path}: is a directory; expected the run's lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read(fd)
            os.close(fd)
            raise NCSNError(
                f"{path}: another trainer ({owner}) is writing to this run directory; wait for "
                "it to finish or stop it"
            ) from None
        try:  # a holder that was just finishing may have unlinked the file we opened: reopen
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)
    os.fsync(fd)
    return fd


def _read(fd: int) -> str:
    """The holder as "pid N on host H", from the lock file's record (best effort)."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(owner['pid'])} on host {str(owner['host'])!r}"
    except (OSError, ValueError, TypeError, KeyError):
        return "a process that has not written its pid yet"
