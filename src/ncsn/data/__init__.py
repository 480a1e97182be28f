"""Training data: each loader returns a :class:`Dataset`; :func:`load_dataset` picks one."""

from __future__ import annotations

from ncsn.config import DataConfig
from ncsn.data.arrays import load_array
from ncsn.data.dataset import Dataset
from ncsn.data.folder import load_folder
from ncsn.data.images import load_cifar10, load_digits, load_mnist
from ncsn.data.toy import load_toy
from ncsn.errors import NCSNError

__all__ = [
    "Dataset",
    "load_array",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_folder",
    "load_mnist",
]


def load_dataset(cfg: DataConfig, seed: int = 0) -> Dataset:
    """The data set ``cfg`` describes, restricted to ``cfg.subset`` when given.

    ``seed`` only matters for ``toy`` data, which is drawn at random. ``cfg.split`` applies to
    MNIST and CIFAR-10; the other sources have a single split.
    """
    if cfg.name == "digits":
        ds = load_digits()
    elif cfg.name == "mnist":
        ds = load_mnist(cfg.root, cfg.split, download=cfg.download)
    elif cfg.name == "cifar10":
        ds = load_cifar10(cfg.root, cfg.split, download=cfg.download)
    elif cfg.name == "folder":
        if cfg.image_size is None:
            raise NCSNError("data.image_size is not set: data.name = 'folder' needs a square size")
        ds = load_folder(cfg.root, cfg.image_size, cfg.channels or 3)
    elif cfg.name in ("npz", "npy"):
        if not cfg.root:
            raise NCSNError(f"data.root is not set: data.name = {cfg.name!r} reads a file")
        ds = load_array(cfg.root)
    elif cfg.name == "toy":
        ds = load_toy(cfg.toy, cfg.toy_n, seed)
    else:
        raise NCSNError(
            f"data.name = {cfg.name!r}: expected one of "
            "digits, mnist, cifar10, folder, npz, npy, toy"
        )
    if cfg.subset is not None:
        ds = _subset(ds, cfg.subset)
    return ds


def _subset(ds: Dataset, subset: list[int]) -> Dataset:
    if len(subset) != 2 or not 0 <= subset[0] < subset[1]:
        raise NCSNError(f"data.subset = {subset!r}: expected [start, stop] with 0 <= start < stop")
    start, stop = subset
    if stop > len(ds):
        raise NCSNError(
            f"data.subset = {subset!r}: stop {stop} is past the end of {ds.name}, "
            f"which has {len(ds)} examples"
        )
    return ds.subset(start, stop)
