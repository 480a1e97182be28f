"""Images from files: the one guarded reader every image read goes through (:func:`read_image`),
and image folders as data sets (CelebA, LSUN exports, your photos)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

import ncsn.limits as limits
import ncsn.progress as _progress
from ncsn.data.dataset import Dataset
from ncsn.errors import NCSNError

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)
_PROGRESS_MIN_FILES = 1000


def load_folder(root: str | Path, image_size: int, channels: int = 3) -> Dataset:
    """Every image under ``root`` (recursive, sorted paths), centre-cropped square and resized.

    Files are chosen by extension (:data:`IMAGE_EXTENSIONS`, any case); hidden files and folders
    (names starting with ".") are skipped. Images are converted to RGB (``channels=3``) or grey
    (``channels=1``), transparent parts composited over white, then the largest centred square
    is resized to ``image_size`` with a bicubic filter. Returns uint8 (N, C, H, W), 256 levels;
    with every image in a sub-folder ``root/CLASS/``, labels by class (:func:`_classes`).
    """
    if root is None or str(root) == "":
        raise NCSNError("data.root is not set: data.name = 'folder' reads files from it")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise NCSNError(f"{root}: image folder not found (data.root should be a directory)")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise NCSNError(f"data.image_size = {image_size!r}: expected a positive integer")
    if channels not in (1, 3):
        raise NCSNError(f"data.channels = {channels!r}: expected 1 (grey) or 3 (RGB)")
    paths = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    )
    if not paths:
        raise NCSNError(
            f"{root}: no images found (looked recursively for files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    mode = "L" if channels == 1 else "RGB"
    x = np.empty((len(paths), image_size, image_size, channels), dtype=np.uint8)
    progress = _progress.bar(
        paths, desc=f"reading {root}", unit="img", disable=len(paths) <= _PROGRESS_MIN_FILES
    )
    for i, path in enumerate(progress):
        x[i] = _read_image(path, image_size, mode).reshape(image_size, image_size, channels)
    labels, classes = _classes(root, paths)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    return Dataset(images, "folder", levels=256, labels=labels, classes=classes)


def _classes(root: Path, paths: list[Path]) -> tuple[torch.Tensor | None, list[str] | None]:
    """Labels from the sub-folder each image lies in (``root/CLASS/…``, torchvision's
    ImageFolder convention): class names sorted, label = index. None when any image lies
    directly in ``root`` (then the folder has no classes)."""
    tops = [p.relative_to(root).parts for p in paths]
    if any(len(parts) < 2 for parts in tops):
        return None, None
    classes = sorted({parts[0] for parts in tops})
    index = {name: i for i, name in enumerate(classes)}
    return torch.tensor([index[parts[0]] for parts in tops], dtype=torch.long), classes


def read_image(path: str | Path, mode: str, what: str = "") -> Image.Image:
    """One image file in ``mode`` ('L' or 'RGB'), through the guards every image read in the
    package takes: a regular file of at most ``limits.MAX_IMAGE_BYTES``, at most
    ``limits.MAX_IMAGE_PIXELS`` pixels (read from the header, before decoding: decompression
    bombs), fully decoded (a truncated file is an error), EXIF orientation applied, 16-bit grey
    and transparency converted (:func:`_convert`). ``what`` (e.g. ``--mask``) names it in errors.
    """
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if path.is_dir():
        raise NCSNError(f"{name}: is a directory; expected an image file")
    try:
        nbytes = path.stat().st_size
    except FileNotFoundError:
        raise NCSNError(f"{name}: image not found") from None
    if nbytes > limits.MAX_IMAGE_BYTES:
        raise NCSNError(f"{name}: {nbytes:,} bytes; an image file is at most "
                        f"{limits.MAX_IMAGE_BYTES:,}")  # fmt: skip
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                w, h = opened.size
                if w * h > limits.MAX_IMAGE_PIXELS:
                    raise NCSNError(
                        f"{name}: {w}×{h} pixels; an image has at most "
                        f"{limits.MAX_IMAGE_PIXELS:,} (a decompression bomb?)"
                    )
                opened.load()
                img = ImageOps.exif_transpose(opened)
    except NCSNError:
        raise
    except Exception as e:  # Pillow reports corrupt files through many exception types
        raise NCSNError(f"{name}: cannot read image ({type(e).__name__}: {e})") from None
    try:
        return _convert(img, mode)
    except ValueError as e:  # e.g. LAB pixels: Pillow has no conversion to grey
        raise NCSNError(f"{name}: cannot convert its {img.mode} pixels to {mode} ({e})") from None


def _read_image(path: Path, size: int, mode: str) -> np.ndarray:
    """One image file as a uint8 (size, size[, 3]) array: converted, centre-cropped, resized."""
    img = read_image(path, mode)
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    # crop before resizing: a resize box would let the filter reach pixels outside the square
    square = img.crop((left, top, left + s, top + s))
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC))


def _convert(img: Image.Image, mode: str) -> Image.Image:
    """``img`` in ``mode`` ('L' or 'RGB'): 16-bit grey scaled down, transparency over white."""
    if img.mode.startswith("I;16"):
        img = Image.fromarray((np.asarray(img) >> 8).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), rgba)
    return img.convert(mode)
