"""Pictures of the 2-D toy experiment: density, score fields, score error, particles, weights.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas (no pyplot, so no
global backend or figure state) and written atomically.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ncsn.data.toy import GaussianMixture, SampledToy
from ncsn.files import atomic_write_bytes
from ncsn.viz import save_gif

TARGET = 0.05
_GRID = 240
_ARROWS = 21


def save_json(data: dict, path: str | Path) -> None:
    """Write ``data`` as indented JSON (atomically)."""
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def save_density(
    toy: GaussianMixture | SampledToy, lim: float, path: str | Path, *, generator: torch.Generator
) -> None:
    """Heat map of the exact log-density log p(x) (mixtures) or a 2-D histogram of samples."""
    fig = _figure(5.4, 4.6)
    ax = fig.subplots()
    if isinstance(toy, GaussianMixture):
        points, shape = _grid(lim, _GRID)
        log_p = toy.log_prob(points.double()).reshape(shape).numpy()
        image = ax.imshow(
            log_p,
            origin="lower",
            extent=(-lim, lim, -lim, lim),
            cmap="viridis",
            vmin=log_p.max() - 20,
        )
        fig.colorbar(image, ax=ax, label="log p(x)")
        ax.set_title("exact log-density")
    else:
        x = toy.sample(200000, generator).numpy()
        *_, image = ax.hist2d(
            x[:, 0], x[:, 1], bins=150, range=[[-lim, lim], [-lim, lim]], cmap="viridis"
        )
        fig.colorbar(image, ax=ax, label="count")
        ax.set_title("histogram of 200,000 exact samples")
    _square(ax, lim)
    _save(fig, path)


@torch.no_grad()
def save_score_field(
    model,
    mixture: GaussianMixture | None,
    sigmas: Sequence[float],
    lim: float,
    path: str | Path,
    *,
    samples: torch.Tensor | None = None,
) -> None:
    """Quiver plots of the learned score s_θ(x, σ) (top row) and the exact ∇ₓ log p_σ (bottom)
    at each σ, on a common arrow scale per column, over the exact log p_σ in grey. Without a
    mixture only the learned row, over ``samples`` (exact data points) when given."""
    rows = 1 if mixture is None else 2
    fig = _figure(3.2 * len(sigmas), 3.3 * rows)
    axes = np.asarray(fig.subplots(rows, len(sigmas), squeeze=False))
    points, shape = _grid(lim, _ARROWS)
    background, bg_shape = _grid(lim, 120)
    spacing = 2 * lim / (_ARROWS - 1)
    p = points.numpy()
    for j, sigma in enumerate(sigmas):
        fields = [model.score(points, float(sigma)).double()]
        if mixture is not None:
            fields.append(mixture.score(points.double(), float(sigma)))
        longest = max(float(f.norm(dim=1).max()) for f in fields) + 1e-12
        for i, field in enumerate(fields):
            ax = axes[i, j]
            if mixture is not None:
                log_p = mixture.log_prob(background.double(), float(sigma)).reshape(bg_shape)
                ax.imshow(
                    log_p.numpy(),
                    origin="lower",
                    extent=(-lim, lim, -lim, lim),
                    cmap="Greys",
                    vmin=float(log_p.max()) - 10,
                    alpha=0.5,
                )
            elif samples is not None:
                d = samples.numpy()
                ax.scatter(d[:, 0], d[:, 1], s=1, color="0.75", linewidths=0)
            f = field.numpy()
            ax.quiver(
                p[:, 0],
                p[:, 1],
                f[:, 0],
                f[:, 1],
                angles="xy",
                scale_units="xy",
                scale=longest / (0.9 * spacing),
                color="tab:blue" if i == 0 else "tab:red",
                width=0.004,
            )
            ax.set_title(f"{'learned' if i == 0 else 'exact'}, σ = {sigma:.3g}", fontsize=10)
            _square(ax, lim)
    _save(fig, path)


def save_score_error(
    sigmas: Sequence[float], errors: Mapping[str, Sequence[float]], path: str | Path
) -> None:
    """Relative score error E‖s_θ − s*‖²/E‖s*‖² against σ (log-log), one line per model, with
    the 0.05 target."""
    fig = _figure(5.6, 4.0)
    ax = fig.subplots()
    for label, values in errors.items():
        ax.plot(sigmas, values, marker="o", markersize=3, label=label)
    ax.axhline(TARGET, color="grey", linestyle="--", label=f"target {TARGET}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("σ")
    ax.set_ylabel("E‖s_θ − s*‖² / E‖s*‖²")
    ax.set_title("relative score error, x ~ p_σ")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)


def save_samples(x: torch.Tensor, exact: torch.Tensor, lim: float, path: str | Path) -> None:
    """Annealed Langevin particles next to as many exact samples."""
    fig = _figure(9.0, 4.5)
    axes = fig.subplots(1, 2)
    for ax, points, title in [
        (axes[0], x, f"annealed Langevin, {x.shape[0]} particles"),
        (axes[1], exact, "exact samples"),
    ]:
        p = points.detach().float().numpy()
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, linewidths=0)
        ax.set_title(title, fontsize=10)
        _square(ax, lim)
    _save(fig, path)


def save_langevin_gif(
    frames: Sequence[tuple[torch.Tensor, float]], lim: float, path: str | Path
) -> None:
    """Animation of the particles from noise to data; the view zooms from the spread of the
    noise down to the data's square of half-width ``lim`` (dotted), and each frame names its σ.

    One figure is redrawn for every frame (new points, limits and title), which is several
    times faster than building a figure per frame.
    """
    fig = _figure(4.0, 4.0, dpi=90)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.12, right=0.96, bottom=0.08, top=0.92)
    dots = ax.scatter(np.zeros(1), np.zeros(1), s=3, alpha=0.5, linewidths=0)
    ax.add_patch(_box(lim))
    ax.set_aspect("equal")
    images = []
    for x, sigma in frames:
        p = x.detach().float().numpy()
        view = max(lim, 1.05 * float(np.quantile(np.abs(p), 0.95)))
        dots.set_offsets(p)
        ax.set_xlim(-view, view)
        ax.set_ylim(-view, view)
        ax.set_title("final denoising step" if sigma == 0.0 else f"σ = {sigma:.3g}", fontsize=10)
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    save_gif(images, path)


def save_weights(true: torch.Tensor, recovered: torch.Tensor, path: str | Path) -> None:
    """Bar chart of the true mixture weights next to the ones the particles recovered."""
    k = np.arange(len(true))
    fig = _figure(max(4.0, 0.8 * len(true) + 2.0), 3.6)
    ax = fig.subplots()
    for offset, values, label in [(-0.2, true, "true"), (0.2, recovered, "recovered")]:
        bars = ax.bar(k + offset, values.numpy(), width=0.4, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(k)
    ax.set_xlabel("component k")
    ax.set_ylabel("weight")
    ax.set_title("mixture weights")
    ax.legend()
    _save(fig, path)


def _figure(width: float, height: float, dpi: int = 100) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _grid(lim: float, n: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """n × n points on [−lim, lim]², rows along y (as imshow with origin='lower' expects)."""
    axis = torch.linspace(-lim, lim, n)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1), (n, n)


def _box(lim: float):
    from matplotlib.patches import Rectangle

    return Rectangle((-lim, -lim), 2 * lim, 2 * lim, fill=False, color="grey", linestyle=":")


def _square(ax, lim: float) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")


def _save(fig: Figure, path: str | Path) -> None:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
