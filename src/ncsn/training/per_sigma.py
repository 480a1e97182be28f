"""Per-σ diagnostics: the held-out DSM loss at a fixed set of noise levels, at every checkpoint.

NCSNv2's ``log_all_sigmas`` (Song & Ermon 2020, their runner's test loss per σ): λ(σᵢ)·ℓ(θ; σᵢ)
of the EMA model on the ``train.holdout`` examples that training never sees (on the first
training examples when there are none, which the file says), at ``train.per_sigma_levels``
levels spread evenly over the ladder (σ₁ and σ_L included), always with the same noise. One row
per (step, σ) in RUN/per_sigma.csv; RUN/per_sigma.png draws the loss against σ, the latest
checkpoint against the first. It shows which band of σ is learned poorly, and ``ncsn info RUN
--per-sigma`` prints it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from matplotlib.figure import Figure

import ncsn.files as files
from ncsn.noise_levels import NoiseLevels
from ncsn.objectives import dsm_per_level

FILE, PLOT = "per_sigma.csv", "per_sigma.png"
MAX_EXAMPLES = 256  # the diagnostic's cost is bounded: levels × this many forward passes
_FIELDS = ("step", "sigma", "loss", "examples", "held_out")


def levels_for(sigmas: list[float], count: int) -> list[float]:
    """``count`` levels of the ladder at evenly spaced indices, first and last included."""
    if count >= len(sigmas):
        return list(sigmas)
    if count == 1:
        return [sigmas[0]]
    return [sigmas[round(i * (len(sigmas) - 1) / (count - 1))] for i in range(count)]


@torch.no_grad()
def record(run_dir: Path, model, x: torch.Tensor, held_out: bool, sigmas: list[float],
           levels: NoiseLevels, step: int, seed: int) -> list[dict]:  # fmt: skip
    """Measure the per-σ loss of ``model`` on ``x`` at ``sigmas``, append it to the run's CSV
    (rewritten atomically, rows of later steps dropped: a resumed run writes them again) and
    redraw the plot; returns the new rows."""
    gen = torch.Generator(x.device).manual_seed(seed + 3)
    was_training = model.training
    model.eval()
    losses = dsm_per_level(model, x, sigmas, generator=gen, levels=levels)
    model.train(was_training)
    rows = [
        {"step": step, "sigma": s, "loss": v, "examples": len(x), "held_out": int(held_out)}
        for s, v in zip(sigmas, losses, strict=True)
    ]
    path = Path(run_dir) / FILE
    kept = [r for r in read(path) if r["step"] < step] + rows
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    files.atomic_write_bytes(path, text.getvalue().encode())
    plot(kept, Path(run_dir) / PLOT)
    return rows


def read(path: Path) -> list[dict]:
    """The rows of a per_sigma.csv (empty when there is none)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [
            {"step": int(r["step"]), "sigma": float(r["sigma"]), "loss": float(r["loss"]),
             "examples": int(r["examples"]), "held_out": int(r["held_out"])}
            for r in csv.DictReader(f)
        ]  # fmt: skip


def by_step(rows: list[dict]) -> dict[int, list[tuple[float, float]]]:
    out: dict[int, list[tuple[float, float]]] = {}
    for r in rows:
        out.setdefault(r["step"], []).append((r["sigma"], r["loss"]))
    return out


def plot(rows: list[dict], path: Path) -> None:
    """Loss against σ (log–log) at the first and the latest checkpoint."""
    steps = by_step(rows)
    if not steps:
        return
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    for step in sorted({min(steps), max(steps)}):
        sig, loss = zip(*sorted(steps[step]), strict=True)
        ax.plot(sig, loss, "o-", label=f"step {step}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("σ")
    ax.set_ylabel("λ(σ)·DSM loss (held-out)" if rows[-1]["held_out"] else "λ(σ)·DSM loss")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    files.atomic_write_bytes(path, buffer.getvalue())
