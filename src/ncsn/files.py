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
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ncsn.errors import NCSNError

_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` atomically when the ``with`` block ends without an
    error: temporary file, fsync, rename, fsync the folder.

    On any failure the temporary file is removed and ``path`` keeps its old contents; a full disk
    is reported as an NCSNError that says so.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


@contextmanager
def npz_writer(
    path: str | Path,
    key: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    extra: dict[str, np.ndarray] | None = None,
) -> Iterator[Callable[[np.ndarray], None]]:
    """Write an ``.npz`` holding one array ``key`` of ``shape`` batch by batch along its first
    axis (uncompressed, as ``np.savez`` writes; numpy's own .npy header), atomically: the whole
    array never needs to be in memory. Yields ``write(batch)``; all rows must be written.
    ``extra`` arrays (e.g. ``labels``), known in advance, are stored after it."""
    dtype, done = np.dtype(dtype), 0
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}

    def write(batch: np.ndarray) -> None:
        nonlocal done
        batch = np.ascontiguousarray(batch, dtype=dtype)
        if batch.shape[1:] != shape[1:] or done + len(batch) > shape[0]:
            raise ValueError(f"batch of shape {batch.shape} does not fit {shape} at row {done}")
        member.write(batch.tobytes())
        done += len(batch)

    with (
        atomic_open(path) as f,
        zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            yield write
            if done != shape[0]:
                raise ValueError(f"{path}: {done} of {shape[0]} rows written")
        for name, array in (extra or {}).items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


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


def check_kinds(folder: Path, kinds: dict[str, str], what: str) -> None:
    """An NCSNError for the first entry of ``folder`` that exists but is not of its kind
    (``"folder"`` or ``"file"``); ``what`` says which setting chose ``folder``."""
    for name, kind in kinds.items():
        path = folder / name
        if path.exists() and path.is_dir() != (kind == "folder"):
            found = "a folder" if path.is_dir() else "a file"
            raise NCSNError(
                f"{what}: {path} is {found}; expected a {kind} there: move it away or choose "
                "another directory"
            )


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
