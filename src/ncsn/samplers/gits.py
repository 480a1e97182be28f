"""Step schedules optimised for a trained model: GITS (Chen et al. 2024, "On the Trajectory
Regularity of ODE-based Diffusion Sampling", ICML, §4: "geometry-inspired time scheduling").

The probability-flow trajectories of a trained model are regular enough that a few hundred of them
decide where a few-step solver should put its steps. On a fine grid Γ = (γ_0 = σ₁ > … > γ_{G−1} =
σ_L) a teacher (Heun on Γ, then σ = 0) draws ``warmup`` trajectories from N(μ, σ₁² I); the cost of
jumping from γ_i to γ_j is the mean squared distance between one Euler step from the teacher's
x_i, x_i + (γ_j − γ_i) d(x_i, γ_i), and the teacher's x_j (their Eq. 12, with the first-order
solver as the "student"); dynamic programming picks the N levels γ_0 = σ₁ > … > σ_L of least total
cost (their Algorithm 1). The schedule ends at σ = 0 like every ODE ladder here
(:func:`ncsn.schedule.karras_sigmas`). Schedules are stored in the run directory
(``step_schedules.json``, written by ``ncsn steps``) and selected by name (``--step-schedule
gits``) for the N they were made for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ncsn.errors import NCSNError
from ncsn.files import atomic_write_bytes
from ncsn.samplers.ode import derivative, heun_step, ode_start
from ncsn.schedule import karras_sigmas

FILE = "step_schedules.json"


def fine_grid(sigma_max: float, sigma_min: float, size: int) -> list[float]:
    """Γ: ``size`` levels from σ₁ to σ_L, ρ = 7 spaced (Karras et al. 2022, Eq. 5; GITS builds its
    grid on the same spacing of the EDM sampler), without the final 0."""
    return karras_sigmas(sigma_max, sigma_min, size)[:-1]


@torch.inference_mode()
def teacher_costs(
    model, shape: tuple[int, ...], grid: list[float], *, generator, mean=None, batch_size=250
) -> np.ndarray:
    """The (G, G) matrix c[i, j] (i < j) = mean over the warm-up batch of ‖x_i + (γ_j − γ_i)
    d(x_i, γ_i) − x_j‖² per dimension, x the teacher's Heun trajectory on ``grid`` from
    N(μ, γ_0² I) for ``shape`` = (warmup, …) examples (Chen et al. 2024, Eq. 12)."""
    g = len(grid)
    cost = np.zeros((g, g))
    for start in range(0, shape[0], batch_size):
        n = min(batch_size, shape[0] - start)
        x = ode_start((n, *shape[1:]), grid[0], generator, mean)
        xs, ds = [], []
        for i in range(g):
            xs.append(x)
            ds.append(derivative(model, x, grid[i]))
            if i + 1 < g:
                x, _ = heun_step(model, x, grid[i], grid[i + 1])
        for i in range(g):
            for j in range(i + 1, g):
                euler = xs[i] + (grid[j] - grid[i]) * ds[i]
                cost[i, j] += float((euler - xs[j]).pow(2).flatten(1).mean(1).sum())
    return cost / shape[0]


def best_path(cost: np.ndarray, levels: int) -> list[int]:
    """Indices 0 = i_0 < i_1 < … < i_{levels−1} = G − 1 minimising Σ_k c[i_k, i_{k+1}] (dynamic
    programming over the number of steps taken, Chen et al. 2024, Algorithm 1)."""
    g = cost.shape[0]
    if not 2 <= levels <= g:
        raise NCSNError(f"--steps {levels}: expected 2 to {g} levels (the fine grid's size)")
    best = np.full((levels, g), np.inf)  # best[k, j]: least cost reaching j in k steps
    came = np.zeros((levels, g), dtype=int)
    best[0, 0] = 0.0
    for k in range(1, levels):
        for j in range(1, g):
            totals = best[k - 1, :j] + cost[:j, j]
            came[k, j] = int(np.argmin(totals))
            best[k, j] = totals[came[k, j]]
    path = [g - 1]
    for k in range(levels - 1, 0, -1):
        path.append(came[k, path[-1]])
    return path[::-1]


def gits_sigmas(cost: np.ndarray, grid: list[float], levels: int) -> list[float]:
    """The ``levels`` σ of least cost on ``grid``, then 0."""
    return [grid[i] for i in best_path(cost, levels)] + [0.0]


def load(run_dir: str | Path) -> dict:
    """The stored schedules of a run: {"gits": {"N": [σ …, 0]}, …} ({} when there are none)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise NCSNError(
            f"{path}: unreadable step schedules ({e}); delete it and rerun ncsn steps"
        ) from None
    if not isinstance(stored, dict) or not isinstance(stored.get("schedules"), dict):
        raise NCSNError(f"{path}: not a step-schedule file; delete it and rerun ncsn steps")
    return stored["schedules"]


def save(run_dir: str | Path, name: str, ladders: dict[int, list[float]], how: dict) -> Path:
    """Add ``ladders`` ({N: [σ …, 0]}) of schedule ``name`` to the run's file (atomically)."""
    path = Path(run_dir) / FILE
    stored = {"schedules": load(run_dir), "how": {}}
    if stored["schedules"]:  # load() has read and checked the file
        stored["how"] = json.loads(path.read_text()).get("how", {})
    stored["schedules"].setdefault(name, {}).update({str(n): s for n, s in ladders.items()})
    stored["how"][name] = how
    atomic_write_bytes(path, json.dumps(stored, indent=1).encode())
    return path
