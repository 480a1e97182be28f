"""Data sets from NumPy files: ``.npz`` archives and ``.npy`` arrays, never pickles.

Accepted arrays (channels last, as :mod:`ncsn` itself writes ``samples.npz``):

- uint8 images (N, H, W) or (N, H, W, C) with C = 1 or 3 → uint8 (N, C, H, W), 256 levels;
- float images in [0, 1] of the same shapes → float32 (N, C, H, W), continuous;
- float vectors (N, D) in [0, 1] → float32 (N, D), continuous.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from numpy.lib.npyio import NpzFile

from ncsn.data.dataset import Dataset
from ncsn.errors import NCSNError

NPZ_KEYS = ("images", "x")  # the array used from an archive with several, in this order
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"


def load_array(path: str | Path) -> Dataset:
    """Examples from a ``.npz`` (key ``images``, else ``x``, else its only array) or ``.npy`` file.

    An archive may also hold integer ``labels``, one per example. Files are always read with
    ``allow_pickle=False``: object arrays and pickles are refused.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise NCSNError(f"{path}: array file not found (expected a .npz or .npy file)")
    kind = _file_kind(path)
    loaded = _np_load(path, str(path))
    if kind == "npy":
        x, levels = _to_examples(loaded, str(path))
        return Dataset(x, "npy", levels=levels)
    with loaded:
        key = _pick_key(path, list(loaded.files))
        where = f"{path} (array {key!r})"
        x, levels = _to_examples(_np_load(path, where, loaded, key), where)
        labels = None
        if key != "labels" and "labels" in loaded.files:
            labels = _to_labels(_np_load(path, f"{path} (array 'labels')", loaded, "labels"), path)
    if labels is not None and len(labels) != len(x):
        raise NCSNError(f"{path}: {len(labels)} labels for {len(x)} examples under {key!r}")
    return Dataset(x, "npz", levels=levels, labels=labels)


def _file_kind(path: Path) -> str:
    """'npy' or 'npz' from the file's first bytes, whatever its name."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise NCSNError(f"{path}: cannot read ({e.strerror or e})") from None
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head.startswith(_PICKLE_MAGIC):
        raise NCSNError(
            f"{path}: a Python pickle, not a NumPy .npy/.npz file; pickles are never loaded "
            "because they can run code: save the data with numpy.save or numpy.savez"
        )
    raise NCSNError(f"{path}: not a NumPy .npy or .npz file (starts with {head!r})")


def _np_load(
    path: Path, where: str, archive: NpzFile | None = None, key: str = ""
) -> np.ndarray | NpzFile:
    """``np.load(path)``, or ``archive[key]``, with every decoding failure as an NCSNError."""
    try:
        if archive is None:
            return np.load(path, allow_pickle=False)
        return archive[key]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise NCSNError(
                f"{where}: holds Python objects (an object array), which are never loaded "
                "because unpickling can run code: save a plain uint8 or float array"
            ) from None
        raise NCSNError(f"{where}: malformed NumPy data ({e})") from None
    except Exception as e:  # zip and npy decoding fail in many ways: BadZipFile, EOFError, ...
        raise NCSNError(f"{where}: malformed NumPy data ({type(e).__name__}: {e})") from None


def _pick_key(path: Path, keys: list[str]) -> str:
    for key in NPZ_KEYS:
        if key in keys:
            return key
    data_keys = [k for k in keys if k != "labels"]
    if len(data_keys) == 1:
        return data_keys[0]
    if not data_keys:
        raise NCSNError(f"{path}: the archive holds no data arrays (keys: {keys})")
    raise NCSNError(
        f"{path}: {len(keys)} arrays ({', '.join(keys)}) and none named "
        f"{' or '.join(NPZ_KEYS)}: name the examples 'images' (or 'x')"
    )


def _to_examples(a: np.ndarray, where: str) -> tuple[torch.Tensor, int | None]:
    """A (N, C, H, W) or (N, D) tensor and its number of levels, from a channels-last array."""
    is_uint8 = a.dtype == np.uint8
    if not (is_uint8 or a.dtype.kind == "f"):
        raise NCSNError(
            f"{where}: {a.dtype} array: expected uint8 images (0..255) or floats in [0, 1]"
        )
    shapes = "(N, H, W) or (N, H, W, C)" if is_uint8 else "(N, D), (N, H, W) or (N, H, W, C)"
    if a.ndim not in ((3, 4) if is_uint8 else (2, 3, 4)):
        raise NCSNError(f"{where}: {a.dtype} array of shape {a.shape}: expected {shapes}")
    if a.shape[0] == 0:
        raise NCSNError(f"{where}: array of shape {a.shape} holds no examples")
    if 0 in a.shape:
        raise NCSNError(f"{where}: array of shape {a.shape}: every example is empty")
    if a.ndim == 4 and a.shape[-1] not in (1, 3):
        extra = "; drop the alpha channel" if a.shape[-1] == 4 else ""
        raise NCSNError(
            f"{where}: images of shape {a.shape} have {a.shape[-1]} channels in the last axis: "
            f"expected 1 (grey) or 3 (RGB), channels last (N, H, W, C){extra}"
        )
    if not is_uint8:
        if not np.isfinite(a).all():
            raise NCSNError(f"{where}: contains NaN or infinite values: expected floats in [0, 1]")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise NCSNError(
                f"{where}: float values must lie in [0, 1], found min {lo:g} and max {hi:g}"
            )
        a = a.astype(np.float32, copy=False)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim == 4:
        a = a.transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(a))
    return x, (256 if is_uint8 else None)


def _to_labels(y: np.ndarray, path: Path) -> torch.Tensor:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise NCSNError(
            f"{path}: 'labels' is a {y.dtype} array of shape {y.shape}: expected integers (N,)"
        )
    return torch.from_numpy(y.astype(np.int64))
