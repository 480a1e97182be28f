"""Preview grids during training: a few samples of the EMA weights, same seed every time:
annealed Langevin, or for a consistency model (``ncsn distill``) its two-jump sampler."""

from __future__ import annotations

from pathlib import Path

import torch

from ncsn.model import ScoreModel
from ncsn.samplers.conditioning import Conditioned
from ncsn.samplers.consistency import consistency_sampler
from ncsn.samplers.langevin import annealed_langevin
from ncsn.samplers.options import Consistency
from ncsn.samplers.run import ode_mean, resolve
from ncsn.schedule import Schedule
from ncsn.viz import save_grid, save_scatter


def save_preview(
    model: ScoreModel, sched: Schedule, shape, n: int, seed: int, path: Path, sigma_mid=None
):
    """Draw ``n`` samples with annealed Langevin (fixed seed) and save a grid or scatter plot;
    a class-conditional model draws its classes in turn (w = 1). A consistency model draws with
    ``--sampler consistency --steps 2`` instead: 2 NFE, where annealed Langevin's L·T (475 for
    the mnist preset) took most of a 15-minute distillation, and its f is no Langevin score;
    ``sigma_mid``: the second jump's σ (None: ECT's default)."""
    device = next(model.parameters()).device
    core = model  # its parameterization and σ's, before any class conditioning wraps it
    if model.num_classes:
        model = Conditioned(model, torch.arange(n, device=device) % model.num_classes)
    gen = torch.Generator(device).manual_seed(seed)
    if core.parameterization == "consistency":
        _, sigmas, _ = resolve(sched, "consistency", 2, Consistency(sigma_mid), core.sigma_data)
        mean = ode_mean(sched, (n, *shape))
        x = consistency_sampler(
            model, (n, *shape), sigmas, generator=gen, sigma_min=core.sigma_min, mean=mean
        )
    else:
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
