"""Preview grids during training: a few samples of the EMA weights, same seed every time."""

from __future__ import annotations

from pathlib import Path

import torch

from ncsn.model import ScoreModel
from ncsn.samplers.conditioning import Conditioned
from ncsn.samplers.langevin import annealed_langevin
from ncsn.schedule import Schedule
from ncsn.viz import save_grid, save_scatter


def save_preview(model: ScoreModel, sched: Schedule, shape, n: int, seed: int, path: Path):
    """Draw ``n`` samples with annealed Langevin (fixed seed) and save a grid or scatter plot;
    a class-conditional model draws its classes in turn (w = 1)."""
    device = next(model.parameters()).device
    if model.num_classes:
        model = Conditioned(model, torch.arange(n, device=device) % model.num_classes)
    gen = torch.Generator(device).manual_seed(seed)
    init = "uniform" if len(shape) == 3 else "gaussian"
    x = annealed_langevin(
        model,
        (n, *shape),
        sched.sigmas,
        generator=gen,
        eps=sched.step_size,
        n_steps_each=sched.steps_per_level,
        init=init,
    )
    (save_grid if len(shape) == 3 else save_scatter)(x, path)
