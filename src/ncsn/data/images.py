"""Image data sets: scikit-learn's digits, MNIST (IDX files), CIFAR-10 (python batches), a folder.

Every loader returns a :class:`Dataset` of uint8 (N, C, H, W) images with 256 levels (digits:
float32 with 17 levels). Every missing, truncated or malformed file raises an :class:`NCSNError`
that names the file and what was expected; no bytes read from disk can produce a raw traceback.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ncsn.data.dataset import Dataset
from ncsn.data.download import download_cifar10, download_mnist
from ncsn.errors import NCSNError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_IDX_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS = 0x00000801  # unsigned bytes, 1 dimension


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")  # fmt: skip


def load_digits() -> Dataset:
    """scikit-learn's bundled 8×8 digits: float32 (1797, 1, 8, 8) = v / 16 for v in 0..16.

    The source has 17 intensity levels, so ``levels = 17``; labels are the digits 0..9.
    """
    from sklearn.datasets import load_digits as _sklearn_digits  # slow import, only when used

    bunch = _sklearn_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return Dataset(x, "digits", levels=17, labels=labels)


def load_mnist(root: str | Path, split: str = "train", *, download: bool = False) -> Dataset:
    """MNIST from its IDX files, plain or ``.gz``, in ``root`` or ``root/MNIST/raw`` (torchvision).

    Returns uint8 (N, 1, 28, 28), 256 levels, int64 labels; the labels file is optional (labels
    are None without it) but must match the images when present. With ``download``, missing
    images are fetched into ``root`` first (:func:`ncsn.data.download.download_mnist`).
    """
    root = _root_path(root, "mnist")
    image_name, label_name = MNIST_FILES[_check_split(split)]
    dirs = [root, root / "MNIST" / "raw"]
    image_path = _find_file(dirs, image_name, (".gz",))
    if image_path is None and download:
        download_mnist(root, split)
        image_path = _find_file(dirs, image_name, (".gz",))
    if image_path is None:
        expected = [f"{image_name} (or {image_name}.gz)"]
        raise _missing(f"MNIST {split} images", expected, dirs, download)
    images = _read_idx(image_path, _IDX_IMAGES)
    n, rows, cols = images.shape
    labels = None
    label_path = _find_file([image_path.parent], label_name, (".gz",))
    if label_path is not None:
        y = _read_idx(label_path, _IDX_LABELS)
        if len(y) != n:
            raise NCSNError(f"{label_path}: {len(y)} labels, but {image_path} holds {n} images")
        labels = torch.from_numpy(y.astype(np.int64))
    x = torch.from_numpy(images.reshape(n, 1, rows, cols))
    return Dataset(x, "mnist", levels=256, labels=labels)


def load_cifar10(root: str | Path, split: str = "train", *, download: bool = False) -> Dataset:
    """CIFAR-10 from torchvision's ``cifar-10-batches-py`` folder (``root`` or ``root``'s child).

    Train is ``data_batch_1`` … ``data_batch_5``, test is ``test_batch``. The batches are pickles;
    they are read with an unpickler that only builds numpy arrays, never arbitrary objects.
    Returns uint8 (N, 3, 32, 32), 256 levels, int64 labels. With ``download``, missing batches
    are fetched first (:func:`ncsn.data.download.download_cifar10`).
    """
    root = _root_path(root, "cifar10")
    names = CIFAR10_FILES[_check_split(split)]
    dirs = [root, root / CIFAR10_DIR]
    folder = next((d for d in dirs if any((d / name).is_file() for name in names)), None)
    if download and (folder is None or not all((folder / n).is_file() for n in names)):
        folder = download_cifar10(root)
    if folder is None:
        raise _missing(f"CIFAR-10 {split} batches", list(names), dirs, download)
    absent = [name for name in names if not (folder / name).is_file()]
    if absent:
        raise _missing(f"CIFAR-10 {split} batches", absent, [folder], download)
    batches = [_read_cifar_batch(folder / name) for name in names]
    x = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([y for _, y in batches])
    return Dataset(torch.from_numpy(x), "cifar10", levels=256, labels=torch.from_numpy(labels),
                   classes=list(CIFAR10_CLASSES))  # fmt: skip


def _root_path(root: str | Path | None, name: str) -> Path:
    if root is None or str(root) == "":
        raise NCSNError(f"data.root is not set: data.name = {name!r} reads files from it")
    return Path(root).expanduser()


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise NCSNError(f"data.split = {split!r}: expected 'train' or 'test'")
    return split


def _find_file(dirs: list[Path], name: str, suffixes: tuple[str, ...]) -> Path | None:
    """The first of ``dir/name``, ``dir/name + suffix`` that exists, in the order of ``dirs``."""
    for d in dirs:
        for candidate in [d / name] + [d / (name + s) for s in suffixes]:
            if candidate.is_file():
                return candidate
    return None


def _missing(what: str, names: list[str], dirs: list[Path], download: bool) -> NCSNError:
    files = ", ".join(names)
    where = " or ".join(str(d) for d in dirs)
    if download:
        return NCSNError(f"{what} not found even after downloading: expected {files} in {where}")
    if dirs[0].is_dir():
        note = ""
    elif dirs[0].exists():
        note = f" ({dirs[0]} is not a directory)"
    else:
        note = f" ({dirs[0]} does not exist)"
    return NCSNError(f"{what} not found: looked for {files} in {where}{note}")


def _read_bytes(path: Path) -> bytes:
    """The contents of ``path``, gunzipped when it ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise NCSNError(f"{path}: not a valid gzip file ({e})") from None
    except OSError as e:
        raise NCSNError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """A uint8 array from an IDX file (LeCun's MNIST format), checked against its header."""
    data = _read_bytes(path)
    kind = "images" if magic == _IDX_IMAGES else "labels"
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise NCSNError(
            f"{path}: truncated: {len(data)} bytes, shorter than the {header}-byte IDX "
            f"{kind} header"
        )
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise NCSNError(
            f"{path}: not an IDX {kind} file: magic number 0x{found:08x}, expected 0x{magic:08x}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected, size = math.prod(dims), len(data) - header
    if size != expected:
        problem = "truncated" if size < expected else f"{size - expected} bytes too long"
        if kind == "images":
            says = f"{'×'.join(map(str, dims))} = {expected} bytes of pixels"
        else:
            says = f"{expected} labels"
        raise NCSNError(f"{path}: {problem}: header says {says}, file has {size}")
    if dims[0] == 0:
        raise NCSNError(f"{path}: header says 0 {kind}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to write bytes into protocol-2 pickles."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _Inert:
    """Stands in for a numpy array or dtype while unpickling: keeps its arguments and state.

    Real numpy objects are never built from the pickle's data, because numpy's ``__setstate__``
    trusts it (a malformed dtype state crashes the interpreter); :func:`_to_array` checks the
    recorded state and builds the array with ``np.frombuffer``.
    """

    def __init__(self, *args: Any) -> None:
        self.args, self.state = args, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _InertDtype(_Inert):
    pass


_NDARRAY = object()  # numpy.ndarray, which pickles only pass to _reconstruct
_INTEGER_CODES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8")
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _Inert,
    ("numpy._core.multiarray", "_reconstruct"): _Inert,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _InertDtype,
    ("_codecs", "encode"): _latin1_encode,
}


def _to_array(value: Any, path: Path, key: str) -> Any:
    """The numpy array a pickled array stands for (checked); other values unchanged."""
    if not isinstance(value, _Inert) or isinstance(value, _InertDtype):
        return value
    state = value.state
    bad = NCSNError(f"{path}: {key}: malformed pickled numpy array")
    if not (isinstance(state, tuple) and len(state) == 5):
        raise bad
    _, shape, dtype, fortran, raw = state
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    if not (
        isinstance(dtype, _InertDtype)
        and dtype.args[:1] in [(c,) for c in _INTEGER_CODES]
        and isinstance(shape, tuple)
        and len(shape) <= 4
        and all(isinstance(n, int) and 0 <= n < 2**31 for n in shape)
        and isinstance(fortran, bool)
        and isinstance(raw, bytes)
    ):
        raise bad
    order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "|"
    dt = np.dtype(dtype.args[0]).newbyteorder(order if order in ("<", ">") else "=")
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise bad
    return np.frombuffer(raw, dt).reshape(shape, order="F" if fortran else "C").copy()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, bytes and (inert) numpy arrays; refuses other globals."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise NCSNError(
                f"{self.path}: refusing to unpickle {module}.{name}: a CIFAR-10 batch may only "
                "hold numpy arrays, lists and numbers"
            ) from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 3072) uint8 and labels (N,) int64 from one CIFAR-10 python batch."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, path).load()
    except NCSNError:
        raise
    except OSError as e:
        raise NCSNError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # malformed pickles fail in many ways: EOFError, ValueError, ...
        raise NCSNError(
            f"{path}: not a CIFAR-10 python batch (unpickling failed: {type(e).__name__}: {e})"
        ) from None
    if not isinstance(batch, dict):
        raise NCSNError(
            f"{path}: not a CIFAR-10 python batch: expected a dict with b'data' and b'labels', "
            f"got {type(batch).__name__}"
        )
    data = _to_array(batch.get(b"data", batch.get("data")), path, "b'data'")
    labels = _to_array(batch.get(b"labels", batch.get("labels")), path, "b'labels'")
    if data is None or labels is None:
        raise NCSNError(
            f"{path}: not a CIFAR-10 python batch: expected keys b'data' and b'labels', "
            f"found {sorted(map(repr, batch))}"
        )
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
    ):
        got = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise NCSNError(f"{path}: b'data' should be a uint8 array of shape (N, 3072), got {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise NCSNError(f"{path}: b'labels' should be a list of integers") from None
    if y.shape != (len(data),):
        raise NCSNError(
            f"{path}: {y.size} labels for {len(data)} images: expected one integer label per image"
        )
    return data, y
