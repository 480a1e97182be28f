"""The value one training run holds, and the two things done to it outside the step: writing
its checkpoint (with the per-σ diagnostics) and rolling it back after non-finite steps.

:mod:`ncsn.training.loop` builds a :class:`TrainingRun` in its set-up and passes it through its
phases; failures and what they can cost are in docs/conventions.md, "Failures and recovery".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import ncsn.checkpoint as checkpoint
import ncsn.config as config
import ncsn.consistency as consistency
import ncsn.noise_levels as noise_levels
import ncsn.schedule as schedule
from ncsn.data.dataset import Dataset
from ncsn.errors import NCSNError
from ncsn.model import ScoreModel, count_parameters
from ncsn.training import distributed, per_sigma, state
from ncsn.training.guard import Guard
from ncsn.training.power_ema import PowerEMA

MAX_ROLLBACKS = 10  # then the run stops: the learning rate has been divided by ~1000 already


@dataclass
class TrainingRun:
    """Everything one training run holds; the phase functions below take and update it."""

    cfg: config.Config
    data: Dataset
    device: torch.device
    world: distributed.World
    log: object
    sched: schedule.Schedule
    model: ScoreModel
    ema: ScoreModel
    net: torch.nn.Module  # the model as the loss calls it (DDP and/or compiled)
    opt: torch.optim.Optimizer
    data_gen: torch.Generator
    noise_gen: torch.Generator
    guard: Guard
    sigmas: torch.Tensor  # the levels training draws from (one expert's band with train.band)
    layout: torch.memory_format
    step: int
    initial: tuple | None  # the rollback target until the first checkpoint exists
    levels: noise_levels.NoiseLevels | None = None  # how the DSM loss draws and weights σ
    pema: PowerEMA | None = None  # the power-function EMA profiles (train.ema_stds)
    data_std: float = 0.0  # the training data's pixel standard deviation
    held: Dataset | None = None  # train.holdout's examples, for the per-σ diagnostics
    ect: consistency.ECT | None = None  # train.objective = ect: its constants

    def __post_init__(self) -> None:
        self.params = list(self.model.parameters())
        self.ema_params = list(self.ema.parameters())
        self.param_names = [name for name, _ in self.model.named_parameters()]
        self.ckpt_dir = Path(self.cfg.run_dir) / "checkpoints"


def save(run: TrainingRun) -> None:
    """Write the checkpoint of ``run.step`` (rank 0) and prune old ones; NonFiniteError if any
    tensor holds a NaN or an infinity (every rank decides the same)."""
    tensors, extra = state.collect(run.model, run.ema, run.opt, run.data_gen, run.noise_gen)
    tensors |= run.pema.tensors(run.param_names) if run.pema is not None else {}
    meta = {
        "step": run.step,
        "config": config.to_dict(run.cfg),
        "schedule": run.sched.to_dict(),
        "data_shape": list(run.data.shape),
        "data_name": run.data.name,
        "classes": run.data.class_names() if run.cfg.model.num_classes else None,
        "parameters": count_parameters(run.model),
        "nonfinite": run.guard.state(),
        "data_std": run.data_std,
    } | extra
    path = checkpoint.path_for(run.ckpt_dir, run.step)
    if not run.world.main:  # same weights on every rank: the same decision, no file
        checkpoint.check_finite(tensors, path)
        return
    run.ckpt_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.save(path, tensors, meta)
    checkpoint.prune(run.ckpt_dir, run.cfg.train.keep_last)


def measure_per_sigma(run: TrainingRun) -> None:
    """The held-out per-σ loss of the EMA model, appended to RUN/per_sigma.csv."""
    held = run.held if run.held is not None else run.data
    x = held.as_float(held.x[: per_sigma.MAX_EXAMPLES]).to(run.device)
    sigmas = per_sigma.levels_for(run.sched.sigmas, run.cfg.train.per_sigma_levels)
    run.ema.eval()
    bf16 = run.cfg.train.precision == "bf16"  # measured in the training precision
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=bf16):
        per_sigma.record(Path(run.cfg.run_dir), run.ema, x, run.held is not None, sigmas,
                         run.levels, run.step, run.cfg.train.seed)  # fmt: skip


def roll_back(run: TrainingRun, reason: str) -> None:
    """Restore the last good state (or the initial weights) and lower the learning rate."""
    t, guard = run.cfg.train, run.guard
    if guard.rollbacks >= MAX_ROLLBACKS:
        raise NCSNError(
            f"{reason}; still failing after {MAX_ROLLBACKS} rollbacks with the learning "
            f"rate lowered to {t.lr * guard.lr_scale:.3g}: lower train.lr or "
            "train.grad_clip, or check the data and the model settings"
        )
    back = checkpoint.latest(run.ckpt_dir, warn=run.log, check=state.check_meta)
    if back is None and run.initial is None:
        raise NCSNError(f"{reason}; and no usable checkpoint in {run.ckpt_dir} to roll back to")
    tensors, meta, path = back if back is not None else (*run.initial, "the initial weights")
    state.restore(
        tensors, meta, Path(path), run.model, run.ema, run.opt, run.data_gen, run.noise_gen
    )
    if run.pema is not None:
        run.pema.load(tensors, run.param_names, Path(path))
    guard.rolled_back(t.nonfinite_lr_factor)
    run.step = meta.get("step", 0)
    run.log(
        f"warning: {reason}: rolled back to step {run.step} ({path}) and lowered the "
        f"learning rate to {t.lr * guard.lr_scale:.3g} (× {t.nonfinite_lr_factor})"
    )
