"""Checkpoints: tensors in safetensors, everything else as JSON in its header; atomic; verified.

A checkpoint is one ``.safetensors`` file. Its header metadata holds ``ncsn`` (JSON: step, config,
schedule, optimizer hyper-parameters, …) and ``sha256`` (of every tensor's bytes in key order and of
the ``ncsn`` text), so a truncated or altered file is detected on load. Files are written to a
temporary name in the same folder, flushed and fsynced, then renamed over the target
(:mod:`ncsn.files`): a crash leaves either the old file or the new one, never half of one. A
checkpoint holding a NaN or an infinity is never written. Loading reads only safetensors and
JSON: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ncsn.errors import NCSNError
from ncsn.files import atomic_write_bytes

FORMAT = "ncsn-checkpoint-2"
_FORMAT_1 = "ncsn-checkpoint-1"  # its sha256 covers the tensors only; still readable
_NAME = re.compile(r"^ckpt-(\d{8,})\.safetensors$")


class NonFiniteError(NCSNError):
    """A checkpoint was about to be written with a NaN or infinite value in a float tensor."""


def _digest(tensors: dict[str, torch.Tensor], text: str | None) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        h.update(key.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    if text is not None:
        h.update(b"\x00ncsn\x00" + text.encode())
    return h.hexdigest()


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise :class:`NonFiniteError` if a float tensor holds a NaN or ±inf."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise NonFiniteError(
            f"{path}: not written: {len(bad)} tensors hold NaN or infinite values "
            f"({', '.join(sorted(bad)[:3])}{', …' if len(bad) > 3 else ''})"
        )


def save(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and JSON-serialisable ``meta`` atomically to ``path``.

    Raises :class:`NonFiniteError` (and writes nothing) if a float tensor holds a NaN or ±inf.
    """
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    check_finite(tensors, path)
    text = json.dumps(meta, allow_nan=False)
    header = {"format": FORMAT, "ncsn": text, "sha256": _digest(tensors, text)}
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
    except (SafetensorError, ValueError, RecursionError, TypeError) as e:
        raise NCSNError(f"{path}: not a valid safetensors checkpoint ({e})") from None
    fmt, text = header.get("format"), header.get("ncsn")
    if fmt not in (FORMAT, _FORMAT_1):
        raise NCSNError(f"{path}: expected an {FORMAT} file, header says {fmt!r}")
    if not isinstance(text, str):
        raise NCSNError(f"{path}: checkpoint has no ncsn metadata")
    if _digest(tensors, text if fmt == FORMAT else None) != header.get("sha256"):
        raise NCSNError(f"{path}: checksum mismatch: the checkpoint is corrupted")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise NCSNError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    return tensors, meta


def _header(data: bytes) -> dict:
    """The ``__metadata__`` mapping of a safetensors file (ValueError if malformed)."""
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ValueError("header length out of range")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise ValueError("header is not a mapping")
    return meta


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


def latest(
    folder: str | Path,
    warn: Callable[[str], object] = print,
    check: Callable[[dict, Path], object] | None = None,
) -> tuple[dict[str, torch.Tensor], dict, Path] | None:
    """The newest checkpoint that loads, verifies and passes ``check`` (which raises NCSNError
    to reject one); broken newer ones are skipped, with a warning."""
    for _, p in reversed(list_checkpoints(folder)):
        try:
            tensors, meta = load(p)
            if check is not None:
                check(meta, p)
        except NCSNError as e:
            warn(f"warning: skipping unusable checkpoint: {e}")
            continue
        return tensors, meta, p
    return None


def prune(folder: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints."""
    for _, p in list_checkpoints(folder)[:-keep_last]:
        p.unlink(missing_ok=True)
