"""Checkpoints: tensors in safetensors, everything else as JSON in its header; atomic; verified.

A checkpoint is one ``.safetensors`` file. Its header metadata holds ``ncsn`` (JSON: step, config,
schedule, optimizer hyper-parameters, …) and ``sha256`` (of every tensor's bytes in key order), so
a truncated or altered file is detected on load. Files are written to a temporary name in the same
folder, flushed and fsynced, then renamed over the target: a crash leaves either the old file or
the new one, never half of one. Loading reads only safetensors and JSON: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ncsn.errors import NCSNError

FORMAT = "ncsn-checkpoint-1"
_NAME = re.compile(r"^ckpt-(\d{8,})\.safetensors$")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        h.update(key.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and JSON-serialisable ``meta`` atomically to ``path``."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {
        "format": FORMAT,
        "ncsn": json.dumps(meta, allow_nan=False),
        "sha256": _digest(tensors),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=header))


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint; any problem is an NCSNError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NCSNError(f"{path}: checkpoint not found") from None
    except OSError as e:
        raise NCSNError(f"{path}: cannot read checkpoint ({e})") from None
    if (
        data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
        or data[:4] == b"PK\x03\x04"
    ):
        raise NCSNError(
            f"{path}: this is a pickle/torch.save file, not an ncsn checkpoint (safetensors); "
            "it is refused because loading it could run arbitrary code"
        )
    try:
        tensors = st_load(data)
        header = _header(data)
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NCSNError(f"{path}: not a valid safetensors checkpoint ({e})") from None
    if header.get("format") != FORMAT:
        raise NCSNError(f"{path}: expected an {FORMAT} file, header says {header.get('format')!r}")
    if _digest(tensors) != header.get("sha256"):
        raise NCSNError(f"{path}: checksum mismatch: the checkpoint is corrupted")
    try:
        meta = json.loads(header["ncsn"])
    except (KeyError, json.JSONDecodeError) as e:
        raise NCSNError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    return tensors, meta


def _header(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ValueError("header length out of range")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {})


def path_for(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:08d}.safetensors"


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest(folder: str | Path, warn=print) -> tuple[dict[str, torch.Tensor], dict, Path] | None:
    """The newest checkpoint that loads and verifies; broken newer ones are skipped, with a
    warning."""
    for _, p in reversed(list_checkpoints(folder)):
        try:
            tensors, meta = load(p)
        except NCSNError as e:
            warn(f"warning: skipping unusable checkpoint: {e}")
            continue
        return tensors, meta, p
    return None


def prune(folder: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints."""
    for _, p in list_checkpoints(folder)[:-keep_last]:
        p.unlink(missing_ok=True)
