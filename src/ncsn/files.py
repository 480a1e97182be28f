"""Atomic file writes, and the clean-up of temporaries that a killed writer left behind.

Every file ``ncsn`` writes (checkpoints, configs, logs, images, sample sets) goes to a temporary
name in the same folder (``.NAME.tmp-PID``), is flushed and fsynced, then renamed over the
target: a crash leaves either the old file or the new one, never half of one, plus at worst a
temporary that :func:`remove_stale_temporaries` deletes on the next start.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from ncsn.errors import NCSNError

_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, fsync the folder.

    On any failure the temporary file is removed and ``path`` keeps its old contents; a full disk
    is reported as an NCSNError that says so.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            raise NCSNError(
                f"disk full while writing {path} ({e.strerror or e}); the file was left as it "
                "was: free some space and rerun"
            ) from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporary files that :func:`atomic_write_bytes` left behind in ``folder`` when its
    process was killed (their writer's pid is no longer alive); returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in folder.iterdir():
        m = _TEMPORARY.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


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
