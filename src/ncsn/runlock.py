"""One trainer per run directory: ``run_dir/.lock`` holds the owner's pid and host.

The lock file is created with ``O_CREAT | O_EXCL``, so of two trainers starting together exactly
one gets it; the other stops with an error naming the owner. A lock left by a process that died
(SIGKILL, power loss) is recovered with a warning when its pid is no longer alive on this host.
A lock from another host cannot be checked and is never taken over: the error says how to remove
it by hand. The lock is removed on exit, normal or by an exception. (Two trainers that start at
the same instant on a directory with a stale lock could both remove it; the lock re-reads the
file just before removing it, which makes that window tiny, not empty.)
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ncsn.errors import NCSNError

LOCK_NAME = ".lock"
_EMPTY_GRACE_S = 2.0  # an empty lock younger than this may still be being written by its owner
_held: set[str] = set()  # tokens of the locks this process holds


@contextmanager
def hold(run_dir: str | Path, warn: Callable[[str], object] = print) -> Iterator[Path]:
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
    token = _acquire(path, warn)
    try:
        yield path
    finally:
        _release(path, token)
        if created:
            try:
                run_dir.rmdir()  # only succeeds when empty
            except OSError:
                pass


def _acquire(path: Path, warn: Callable[[str], object]) -> str:
    token = uuid.uuid4().hex
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": token})
    deadline = time.monotonic() + 2 * _EMPTY_GRACE_S
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            _recover_or_refuse(path, warn)
            continue
        try:
            os.write(fd, record.encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        _held.add(token)
        return token
    raise NCSNError(f"{path}: could not take the run lock (another trainer keeps taking it)")


def _recover_or_refuse(path: Path, warn: Callable[[str], object]) -> None:
    """Remove ``path`` if its owner is dead; otherwise raise an NCSNError naming the owner."""
    owner = _read(path)
    if owner is None:  # vanished between our open and read: try again
        return
    remove_hint = f"if no trainer is running for this run directory, delete {path}"
    if owner == {}:  # being written by a trainer that is starting, or left so by a crash
        if _age(path) < _EMPTY_GRACE_S:
            time.sleep(0.05)
            return
        warn(f"warning: removing an empty or malformed lock file {path} (left by a crash)")
        path.unlink(missing_ok=True)
        return
    pid, host = owner["pid"], owner["host"]
    if host != socket.gethostname():
        raise NCSNError(
            f"{path}: run directory is locked by pid {pid} on host {host!r}, which cannot be "
            f"checked from here; {remove_hint}"
        )
    if pid_alive(pid) and not (pid == os.getpid() and owner["token"] not in _held):
        raise NCSNError(
            f"{path}: another trainer (pid {pid} on this host) is writing to this run "
            f"directory; wait for it to finish or stop it ({remove_hint})"
        )
    if _read(path) == owner:  # narrows the window in which another starter replaced it
        warn(f"warning: removing a stale lock of pid {pid}, which is no longer running")
        path.unlink(missing_ok=True)


def _read(path: Path) -> dict | None:
    """The lock's owner record; {} when empty or malformed; None when the file is gone."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise NCSNError(f"{path}: cannot read the run lock ({e.strerror or e})") from None
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    ok = (
        isinstance(owner, dict)
        and isinstance(owner.get("pid"), int)
        and 0 < owner["pid"] < 2**31
        and isinstance(owner.get("host"), str)
        and isinstance(owner.get("token"), str)
    )
    return owner if ok else {}


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


def _release(path: Path, token: str) -> None:
    """Remove the lock if it is still ours (a lock recovered by someone else is left alone)."""
    _held.discard(token)
    try:
        owner = _read(path)
    except NCSNError:
        return
    if owner and owner.get("token") == token:
        path.unlink(missing_ok=True)
