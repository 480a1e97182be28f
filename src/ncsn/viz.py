"""Pictures: image grids (PNG), noise-to-data animations (GIF), 2-D sample scatter plots."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ncsn.files import atomic_write_bytes


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float images (N, C, H, W) in [0, 1] → uint8 (N, H, W, C), clipped."""
    x = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return x.permute(0, 2, 3, 1).numpy()


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Float images (N, C, H, W) as ``samples.npz`` stores them: 8 bits, back in [0, 1]."""
    return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2).float() / 255.0


def make_grid(
    images: torch.Tensor, nrow: int | None = None, padding: int = 1, min_cell: int = 32
) -> np.ndarray:
    """Tile images (N, C, H, W) in [0, 1] into one uint8 (H', W', C) array.

    Small images are enlarged by an integer factor (nearest neighbour) so each cell is at least
    ``min_cell`` pixels: an 8×8 digit becomes 32×32 and stays readable.
    """
    x = to_uint8(images)
    n, h, w, c = x.shape
    if n == 0:
        return np.full((max(h, 1), max(w, 1), c), 255, np.uint8)
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    k = max(1, math.ceil(min_cell / max(h, w)))
    x = x.repeat(k, axis=1).repeat(k, axis=2)
    h, w = h * k, w * k
    grid = np.full(
        (ncol * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, np.uint8
    )
    for i in range(n):
        r, q = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + q * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = x[i]
    return grid


def _pil(grid: np.ndarray) -> Image.Image:
    return Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    nrow: int | None = None,
    row_labels: Sequence[str] | None = None,
) -> None:
    """Write a PNG grid of images in [0, 1] (atomically), ``nrow`` images per row; with
    ``row_labels``, each row's label is written in a margin on its left (class grids)."""
    image = _pil(make_grid(images, nrow))
    if row_labels:
        image = _label_rows(image, list(row_labels))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _label_rows(image: Image.Image, labels: list[str]) -> Image.Image:
    """``image`` with a white margin on the left holding one label per (equal-height) row."""
    font = ImageFont.load_default()
    width = 8 + max(int(ImageDraw.Draw(image).textlength(t, font=font)) for t in labels)
    out = Image.new(image.mode, (image.width + width, image.height), 255 if image.mode == "L"
                    else (255, 255, 255))  # fmt: skip
    out.paste(image, (width, 0))
    draw, row = ImageDraw.Draw(out), image.height / len(labels)
    for i, text in enumerate(labels):
        draw.text((4, int((i + 0.5) * row) - 5), text, fill=0 if image.mode == "L" else (0, 0, 0),
                  font=font)  # fmt: skip
    return out


def save_gif(frames: Sequence[np.ndarray], path: str | Path, duration_ms: int = 80) -> None:
    """Write an animated GIF of uint8 frames (H, W, C); the last frame is held for 1.5 s."""
    images = [_pil(f) for f in frames]
    durations = [duration_ms] * (len(images) - 1) + [1500]
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
    )
    atomic_write_bytes(path, buf.getvalue())


def scatter_frame(points: torch.Tensor, lim: float, size: int = 320) -> np.ndarray:
    """Render 2-D points as a uint8 (size, size, 3) image (for GIFs of toy samplers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(size / 80, size / 80), dpi=80)
    p = points.detach().float().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, linewidths=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    fig.canvas.draw()
    frame = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return frame


def save_scatter(points: torch.Tensor, path: str | Path, lim: float | None = None) -> None:
    """PNG scatter plot of 2-D samples (atomically)."""
    if lim is None:
        lim = float(points.abs().max()) * 1.1 + 1e-6
    buf = io.BytesIO()
    Image.fromarray(scatter_frame(points, lim, size=480)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
