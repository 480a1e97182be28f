"""The small Python API: load a trained run and sample it, train a run, evaluate samples.

    import ncsn
    run = ncsn.load("runs/digits")                     # EMA weights, schedule, config
    x = run.sample(16, sampler="ode", steps=10, seed=0)  # (16, C, H, W) in [0, 1]
    run = ncsn.train("digits", train={"steps": 200}, run_dir="runs/quick")
    scores = ncsn.evaluate(x, reference, extractor="classifier:clf.safetensors")
    run.likelihood(x_test).bits_per_dim                # per image, through the ODE

Everything here goes through the same functions as the command line (``ncsn train``,
``ncsn sample``, ``ncsn evaluate``, ``ncsn likelihood``): same seed, same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

import ncsn.config as config
import ncsn.consistency as consistency
import ncsn.likelihood as likelihood
import ncsn.presets as presets
import ncsn.samplers.conditioning as conditioning
import ncsn.samplers.gits as gits
from ncsn.devices import resolve_device
from ncsn.errors import NCSNError
from ncsn.metrics.evaluate import evaluate as _score
from ncsn.metrics.evaluate import load_extractor
from ncsn.model import ScoreModel
from ncsn.samplers import run as samplers
from ncsn.schedule import Schedule
from ncsn.training.loop import train as _train
from ncsn.training.state import load_run


@dataclass
class Run:
    """A trained run: its model (EMA weights unless loaded with ``ema=False``), noise schedule,
    config and checkpoint metadata (``meta["data_shape"]``, ``meta["step"]``, …)."""

    model: ScoreModel
    schedule: Schedule
    config: config.Config
    meta: dict

    @property
    def shape(self) -> tuple[int, ...]:
        """One example's shape: (C, H, W) for images, (D,) for vectors."""
        return tuple(self.meta["data_shape"])

    def sample(
        self,
        n: int,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        labels: torch.Tensor | int | None = None,
        guidance: float | None = None,
        **options,
    ) -> torch.Tensor:
        """``n`` samples from ``sampler`` (any of ``ncsn.SAMPLERS``; default the run's
        ``sample.sampler`` and ``sample.steps``; ``steps`` as in ``ncsn sample``), with the
        sampler's options by name (e.g. ``eps=``, ``snr=``, ``s_churn=``; see
        :mod:`ncsn.samplers.run`; ``consistency``'s ``sigma_mid`` defaults, as in ``ncsn
        sample``, to the level a grid run was distilled for). A class-conditional run takes
        ``labels`` (one class index, or one per sample; default the classes in turn) and the
        classifier-free ``guidance`` weight w (default 1). Images come clipped to [0, 1];
        vectors as they are."""
        if sampler is None:  # the run's sample.sampler, with its sample.steps
            sampler = self.config.sample.sampler
            steps = steps if steps is not None else self.config.sample.steps
        if sampler == "consistency" and options.get("sigma_mid") is None:  # as ncsn sample
            options["sigma_mid"] = consistency.trained_mid(self.config.train)
        opts = samplers.options(sampler, **options)
        k = self.model.num_classes
        if isinstance(labels, int):
            labels = torch.full((n,), labels, dtype=torch.long)
        if labels is None and (k or guidance is not None):
            labels = conditioning.class_labels(None, k, n, flag="labels")
            if labels is None:
                raise NCSNError(f"guidance = {guidance}: the run is not class-conditional")
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long)
            if not k:
                raise NCSNError("labels given, but the run is not class-conditional")
            if labels.shape != (n,) or not bool(((labels >= 0) & (labels < k)).all()):
                raise NCSNError(f"labels: expected {n} class indices from 0 to {k - 1}")
        x, _ = samplers.draw(
            self.model,
            self.schedule,
            n,
            self.shape,
            seed=seed,
            batch_size=batch_size or self.config.sample.batch_size,
            sampler=sampler,
            steps=steps,
            opts=opts,
            labels=labels,
            guidance=guidance,
        )
        return x.clamp(0, 1) if len(self.shape) == 3 else x

    def likelihood(
        self, x: torch.Tensor, *, levels: int | None = 256, seed: int = 0, **options
    ) -> likelihood.ImageScores:
        """log p (nats) and, for ``levels``-level data dequantized (8-bit images by default;
        ``levels=None`` for continuous data), bits/dim of each example of ``x`` (N, *shape) on the
        [0, 1] scale, through the probability-flow ODE from the run's σ_L to σ₁ (options as in
        :func:`ncsn.likelihood.log_likelihood`: ``steps``, ``solver``, ``probes``, …)."""
        if tuple(x.shape[1:]) != self.shape:
            raise NCSNError(f"x has examples of shape {tuple(x.shape[1:])}; the run models "
                            f"{self.shape}")  # fmt: skip
        return likelihood.score_examples(
            self.model, x, sigma_min=self.schedule.sigma_min, sigma_max=self.schedule.sigma_max,
            mean=samplers.ode_mean(self.schedule, (1, *self.shape)),
            levels=levels if len(self.shape) == 3 else None, seed=seed, **options,
        )  # fmt: skip


def load(run_dir: str | Path, *, ema: bool = True, device: str = "auto") -> Run:
    """The latest good checkpoint of ``run_dir`` as a :class:`Run`."""
    model, sched, cfg, meta = load_run(
        run_dir, ema=ema, device=resolve_device(device), log=lambda _: None
    )
    sched.step_schedules = gits.load(run_dir)  # schedule="gits" of the fast samplers
    return Run(model, sched, cfg, meta)


def train(
    config_or_path: config.Config | str | Path | None = None,
    *,
    progress: bool = True,
    **overrides,
) -> Run:
    """Train (or resume) a run and return it loaded.

    ``config_or_path`` is a :class:`ncsn.config.Config`, a YAML file or a preset name (``digits``,
    ``mnist``, …; None: the defaults). ``overrides`` set config values by section, as
    ``--set`` does: ``train={"steps": 200}``, ``model={"channels": 32}``, ``run_dir="runs/x"``.
    """
    items = _as_overrides(overrides)
    if isinstance(config_or_path, config.Config):
        cfg = config.load(None, [*_as_overrides(config.to_dict(config_or_path)), *items])
    else:
        name = None if config_or_path is None else str(config_or_path)
        cfg = config.load(presets.find(name), items)
    _train(cfg, progress=progress, log=print if progress else (lambda *_: None))
    return load(cfg.run_dir, device=cfg.train.device)


def evaluate(
    samples: torch.Tensor,
    reference: torch.Tensor,
    *,
    extractor: str,
    device: str = "auto",
    **kwargs,
) -> dict:
    """Fréchet distance, KID, precision/recall (and classifier scores with a classifier
    extractor) of ``samples`` against ``reference``, images (N, C, H, W) in [0, 1].

    ``extractor`` is ``"classifier:PATH"`` (from ``ncsn classifier train``) or
    ``"inception:PATH"`` (FID Inception-V3 weights); ``kwargs`` go to
    :func:`ncsn.metrics.evaluate.evaluate` (``train_images``, ``k``, …).
    """
    features, classifier = load_extractor(extractor, resolve_device(device))
    return _score(samples, reference, extractor=features, classifier=classifier, **kwargs)


def _as_overrides(values: dict) -> list[str]:
    """``{"train": {"steps": 5}, "run_dir": "x"}`` as ``--set`` items (JSON is YAML)."""
    out = []
    for key, value in values.items():
        pairs = value.items() if isinstance(value, dict) else [(None, value)]
        out += [f"{key if f is None else f'{key}.{f}'}={json.dumps(v)}" for f, v in pairs]
    return out
