"""Fetch MNIST and CIFAR-10 from their usual public locations, verified by MD5.

MNIST comes from the S3 mirror torchvision uses, with the original site as fallback; CIFAR-10 is
the python tarball from the University of Toronto. The checksums are the well-known torchvision
values. Every file is streamed to a temporary name in the target folder, checked, then renamed
into place, so an interrupted or corrupted download never leaves a file that looks complete. The
CIFAR-10 tarball is extracted member by member after checking that no member is a link, a device
or a path outside the target folder.

Where to download from can be overridden, for mirrors and tests: ``NCSN_MNIST_URL`` (one base
URL, or several separated by commas, tried in order) and ``NCSN_CIFAR10_URL`` (the tarball's
URL); or the module-level :data:`MNIST_MIRRORS` and :data:`CIFAR10_URL`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

import ncsn.progress as _progress
from ncsn.errors import NCSNError

MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
TIMEOUT_S = 60
_CHUNK = 1 << 20


def download_mnist(root: str | Path, split: str) -> list[Path]:
    """Download the images and labels of ``split`` ('train' or 'test') into ``root``.

    Files already present with the right checksum are kept. Returns the two ``.gz`` paths.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise NCSNError(f"data.split = {split!r}: expected 'train' or 'test'")
    env = os.environ.get("NCSN_MNIST_URL")
    mirrors = [u.strip() for u in env.split(",") if u.strip()] if env else list(MNIST_MIRRORS)
    root = _make_root(root)
    paths = []
    for name in (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"):
        path = root / name
        if not (path.is_file() and _md5(path) == MNIST_MD5[name]):
            _fetch_first([_join(base, name) for base in mirrors], path, MNIST_MD5[name])
        paths.append(path)
    return paths


def download_cifar10(root: str | Path) -> Path:
    """Download and extract the CIFAR-10 python batches into ``root/cifar-10-batches-py``.

    The tarball is kept next to it (``cifar-10-python.tar.gz``) and reused when its checksum is
    right. Returns the batches folder.
    """
    root = _make_root(root)
    folder = root / CIFAR10_DIR
    archive = root / CIFAR10_ARCHIVE
    if not (archive.is_file() and _md5(archive) == CIFAR10_MD5):
        _fetch_first([os.environ.get("NCSN_CIFAR10_URL") or CIFAR10_URL], archive, CIFAR10_MD5)
    extract_tar(archive, root, only=CIFAR10_DIR)
    return folder


def extract_tar(archive: str | Path, root: str | Path, *, only: str) -> None:
    """Extract the folder ``only`` of a tarball into ``root``, refusing unsafe members.

    Every member must be a regular file or a folder whose path is relative, has no ``..`` part
    and lies under ``only``; otherwise nothing is extracted. Extraction goes to a temporary folder
    that is renamed to ``root/only`` at the end (an existing ``root/only`` is replaced).
    """
    archive, root = Path(archive), Path(root)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive, only)
            tmp = root / f".{only}.extract-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                for member in members:
                    relative = PurePosixPath(member.name).relative_to(only)
                    target = tmp.joinpath(*relative.parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                final = root / only
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise NCSNError(f"{archive}: cannot extract ({type(e).__name__}: {e})") from None


def _check_member(member: tarfile.TarInfo, archive: Path, only: str) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith(("/", "\\")) or ".." in path.parts:
        raise NCSNError(
            f"{archive}: refusing to extract {member.name!r}: absolute paths and '..' could "
            "write outside the target folder"
        )
    if not (member.isfile() or member.isdir()):
        raise NCSNError(
            f"{archive}: refusing to extract {member.name!r}: only regular files and folders "
            "are allowed (links and devices are not)"
        )
    if not path.parts or path.parts[0] != only:
        raise NCSNError(f"{archive}: unexpected member {member.name!r}: expected it under {only}/")


def _make_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NCSNError(f"{root}: cannot create the download folder ({e.strerror or e})") from None
    return root


def _join(base: str, name: str) -> str:
    return base if base.endswith(name) else base.rstrip("/") + "/" + name


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_first(urls: list[str], path: Path, md5: str) -> None:
    """Try each URL in turn until one gives a file with the expected MD5."""
    failures = []
    for url in urls:
        try:
            _fetch(url, path, md5)
            return
        except NCSNError as e:
            failures.append(str(e))
    if len(failures) == 1:
        raise NCSNError(failures[0])
    raise NCSNError(f"could not download {path.name}:\n  " + "\n  ".join(failures))


def _fetch(url: str, path: Path, md5: str) -> None:
    """Stream ``url`` to a temporary file next to ``path``, check its MD5, rename into place."""
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    digest = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "ncsn"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(tmp, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with _progress.bar(total=total, unit="B", unit_scale=True, desc=path.name) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    f.write(block)
                    digest.update(block)
                    bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
        actual = digest.hexdigest()
        if actual != md5:
            raise NCSNError(
                f"{url}: checksum mismatch: expected MD5 {md5}, got {actual}; the download is "
                "corrupted or the file changed (nothing was written)"
            )
        os.replace(tmp, path)
    except urllib.error.HTTPError as e:
        raise NCSNError(f"{url}: download failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise NCSNError(
            f"{url}: download failed ({reason}); check the network connection or the URL"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
