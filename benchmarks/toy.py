"""Toy benchmark (issue 3): learned scores against exact ones on the ``mixture`` preset.

p = 1/5 N((−5, −5), I) + 4/5 N((5, 5), I) (Song & Ermon 2019, §3.2), whose σ-perturbed score
s*(x, σ) = ∇ₓ log p_σ(x) is exact (:mod:`ncsn.data.toy`). Everything uses the toy ladder of
:func:`ncsn.lab.toy.toy_config` (σ₁ by NCSNv2 technique 1, σ_L = 0.1, L = 30, T = 100,
ε = 1e-3) and the library's ``ncsn.training.loop.train``.

a. The relative score error E‖s_θ − s*‖²/E‖s*‖² (x ~ p_σ, exact samples) at every level, for an
   MLP trained with DSM and one trained with sliced score matching for as many steps; target < 0.05.
b. Ablations, each measured by annealed Langevin samples (Algorithm 1) against exact samples: the
   energy distance (V-statistic) over its noise floor (the distance between two exact sample sets
   of the same size), and the largest error of the mixture weights the particles recover. Rows:
   σ₁ by the max-distance rule vs ten times smaller; geometric vs linearly spaced levels (trained
   and sampled on the linear ladder); λ = σ² vs λ = 1; with vs without the final denoising step;
   SSM; and the exact score in the same sampler (what the sampler alone leaves), also with the
   step size of NCSNv2 technique 4 instead of the toy's ε = 1e-3.

    nice python benchmarks/toy.py [--smoke] [--out benchmarks/results]

writes toy.json and toy.png (toy_smoke.* with ``--smoke``, the same code with tiny settings).
"""

from __future__ import annotations

import argparse
import functools
import io
import math
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ncsn import schedule
from ncsn.data.toy import GaussianMixture, OracleModel, make_toy
from ncsn.files import atomic_write_bytes
from ncsn.lab.plots import TARGET, save_json
from ncsn.lab.toy import (
    recovered_weights,
    relative_score_error,
    sample_particles,
    toy_config,
)
from ncsn.metrics.distances import energy_distance, noise_floor
from ncsn.training.loop import train
from ncsn.training.state import load_run

PRESET = "mixture"
SEED = 0
# A particle farther than this from every mode mean is off the modes: for a unit-variance 2-D
# Gaussian component, P(‖x − μ‖ > 4) = exp(−8) ≈ 3e-4.
OFF_MODE = 4.0
_BAR_CAP = 1e4  # longer bars (a diverged sampler) are cut here and labelled


@dataclass(frozen=True)
class Settings:
    """The sizes that differ between the full benchmark and ``--smoke``."""

    steps: int
    batch_size: int
    steps_per_level: int
    particles: int
    error_points: int
    floor_repeats: int


FULL = Settings(
    steps=4000,
    batch_size=512,
    steps_per_level=100,
    particles=4000,
    error_points=10000,
    floor_repeats=5,
)
SMOKE = Settings(
    steps=20, batch_size=64, steps_per_level=3, particles=200, error_points=300, floor_repeats=2
)


@dataclass
class _Run:
    model: torch.nn.Module
    sched: schedule.Schedule
    train_s: float


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, write its JSON and PNG, return the JSON's contents."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings, same code (< 20 s)")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    args = parser.parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ncsn-toy-bench-") as workdir:
        result = run_benchmark(settings, Path(workdir))
    result = {
        "benchmark": "toy mixtures: exact scores (issue 3)",
        "command": shlex.join(["python", "benchmarks/toy.py", *argv]),
        "smoke": args.smoke,
        "preset": PRESET,
        "settings": asdict(settings) | {"seed": SEED},
        "target": TARGET,
        **result,
        "total_s": round(time.perf_counter() - start, 1),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
    }
    stem = "toy_smoke" if args.smoke else "toy"
    save_json(result, out / f"{stem}.json")
    _save_figure(result, out / f"{stem}.png")
    print(f"wrote {out / f'{stem}.json'} and {out / f'{stem}.png'}")
    return result


def run_benchmark(settings: Settings, workdir: Path) -> dict:
    """Train the five models, then measure the score tables and the ablation rows."""
    mixture = make_toy(PRESET)
    runs = {"dsm": _train(settings, workdir / "dsm")}
    sigma_max = runs["dsm"].sched.sigma_max
    runs["ssm"] = _train(settings, workdir / "ssm", objective="ssm")
    runs["sigma_max_small"] = _train(settings, workdir / "small", sigma_max=sigma_max / 10)
    runs["linear"] = _train(settings, workdir / "linear", linear=True)
    runs["lambda_1"] = _train(settings, workdir / "lambda1", loss_power=0.0)

    generator = torch.Generator().manual_seed(SEED + 100)
    errors = {
        name: relative_score_error(
            run.model, mixture, run.sched.sigmas, n=settings.error_points, generator=generator
        )
        for name, run in runs.items()
    }
    base = runs["dsm"].sched
    runs["oracle"] = _Run(OracleModel(mixture), base, 0.0)
    eps_rule = schedule.step_size_for(base.gamma, base.sigma_min, base.steps_per_level)
    rule = schedule.Schedule(base.sigmas, eps_rule, base.steps_per_level)
    runs["oracle_eps_rule"] = _Run(runs["oracle"].model, rule, 0.0)
    for key in ("oracle", "oracle_eps_rule"):
        errors[key] = relative_score_error(
            runs[key].model, mixture, base.sigmas, n=settings.error_points, generator=generator
        )

    distance = functools.partial(energy_distance, unbiased=False)
    floor = noise_floor(
        mixture.sample,
        settings.particles,
        distance,
        repeats=settings.floor_repeats,
        generator=generator,
    ).mean
    reference = mixture.sample(settings.particles, generator)
    rows = []
    for name, key, denoise_final, description in [
        ("baseline", "dsm", True, "DSM, σ₁ = max distance, geometric, λ = σ², final denoising"),
        ("sigma_max/10", "sigma_max_small", True, "σ₁ ten times below the max-distance rule"),
        ("linear levels", "linear", True, "L levels linearly spaced from σ₁ to σ_L"),
        ("lambda=1", "lambda_1", True, "λ(σ) = 1 (train.loss_power = 0) instead of σ²"),
        ("no final denoising", "dsm", False, "baseline model, last step x + σ_L² s left out"),
        ("ssm", "ssm", True, "sliced score matching, otherwise as the baseline"),
        ("exact score", "oracle", True, "the exact score in the baseline's sampler"),
        (
            "exact score, technique-4 ε",
            "oracle_eps_rule",
            True,
            f"the exact score, ε = {eps_rule:.3g} by NCSNv2 technique 4 instead of the toy's",
        ),
    ]:
        run = runs[key]
        rows.append(
            _ablation_row(
                name,
                description,
                run,
                errors[key],
                denoise_final,
                mixture,
                settings,
                floor,
                reference,
            )
        )
    return {
        "score_error": {
            "definition": "E|s_theta - s*|^2 / E|s*|^2, x ~ p_sigma (exact samples)",
            "points": settings.error_points,
            "sigmas": runs["dsm"].sched.sigmas,
            "dsm": errors["dsm"],
            "ssm": errors["ssm"],
            "dsm_max": max(errors["dsm"]),
            "ssm_max": max(errors["ssm"]),
            "dsm_meets_target": max(errors["dsm"]) < TARGET,
            "ssm_meets_target": max(errors["ssm"]) < TARGET,
        },
        "ladder": {
            "sigma_max": sigma_max,
            "sigma_min": runs["dsm"].sched.sigma_min,
            "num_levels": runs["dsm"].sched.num_levels,
            "step_size": runs["dsm"].sched.step_size,
            "steps_per_level": runs["dsm"].sched.steps_per_level,
        },
        "noise_floor": floor,
        "ablation": rows,
        "train_s": {name: round(run.train_s, 1) for name, run in runs.items() if run.train_s},
    }


def _train(
    settings: Settings,
    run_dir: Path,
    *,
    objective: str = "dsm",
    sigma_max: float | str = "auto",
    loss_power: float = 2.0,
    linear: bool = False,
) -> _Run:
    cfg = toy_config(
        PRESET,
        run_dir=run_dir,
        steps=settings.steps,
        objective=objective,
        seed=SEED,
        batch_size=settings.batch_size,
        sigma_max=sigma_max,
    )
    cfg.schedule.steps_per_level = settings.steps_per_level
    cfg.train.loss_power = loss_power
    start = time.perf_counter()
    if linear:
        # ncsn.training builds geometric ladders only; for this row it trains (and the run records)
        # the linear ladder with the same σ₁, σ_L, L and ε.
        with mock.patch.object(schedule, "resolve", _linear_resolve):
            train(cfg, progress=False, log=_quiet)
    else:
        train(cfg, progress=False, log=_quiet)
    seconds = time.perf_counter() - start
    model, sched, _, _ = load_run(run_dir, log=_quiet)
    print(f"trained {run_dir.name}: {settings.steps} steps in {seconds:.1f} s", flush=True)
    return _Run(model, sched, seconds)


_geometric_resolve = schedule.resolve


def _linear_resolve(cfg, data: torch.Tensor | None) -> schedule.Schedule:
    """The geometric schedule respaced linearly: σ_i = σ₁ − (i−1)(σ₁ − σ_L)/(L−1)."""
    sched = _geometric_resolve(cfg, data)
    sched.sigmas = torch.linspace(sched.sigma_max, sched.sigma_min, sched.num_levels).tolist()
    sched.how["gamma"] = "linear spacing (ablation), ε of the geometric ladder"
    return sched


def _ablation_row(
    name: str,
    description: str,
    run: _Run,
    errors: list[float],
    denoise_final: bool,
    mixture: GaussianMixture,
    settings: Settings,
    floor: float,
    reference: torch.Tensor,
) -> dict:
    """One measured row: sample with the run's own ladder, compare with exact samples."""
    generator = torch.Generator().manual_seed(SEED + 200)
    start = time.perf_counter()
    x, _ = sample_particles(
        run.model,
        run.sched.sigmas,
        n=settings.particles,
        eps=run.sched.step_size,
        n_steps_each=run.sched.steps_per_level,
        generator=generator,
        denoise_final=denoise_final,
    )
    sample_s = time.perf_counter() - start
    ed = energy_distance(x, reference, unbiased=False)
    weights = recovered_weights(mixture, x)
    nearest_mode = torch.cdist(x.double(), mixture.means).min(dim=1).values
    return {
        "name": name,
        "description": description,
        "energy_distance": ed,
        "ed_over_floor": ed / floor,
        "weights": weights.tolist(),
        "weight_error": float((weights - mixture.weights).abs().max()),
        "off_mode_share": float((nearest_mode > OFF_MODE).double().mean()),
        "max_score_error": max(errors),
        "mean_score_error": sum(errors) / len(errors),
        "step_size": run.sched.step_size,
        "sample_s": round(sample_s, 2),
        "sigmas": run.sched.sigmas,
        "score_errors": errors,
    }


def _quiet(*_: object) -> None:
    """Swallow the training loop's log lines."""


def _save_figure(result: dict, path: Path) -> None:
    """Left: relative score error per σ (DSM, SSM; dotted: ablated models on their own ladders).
    Right: energy distance / noise floor of each ablation row, with its weight error."""
    fig = Figure(figsize=(11.5, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    table = result["score_error"]
    for key in ("dsm", "ssm"):
        left.plot(table["sigmas"], table[key], marker="o", markersize=3, label=key.upper())
    for row in result["ablation"]:
        if row["name"] in ("sigma_max/10", "linear levels", "lambda=1"):
            left.plot(row["sigmas"], row["score_errors"], linestyle=":", label=row["name"])
    left.axhline(result["target"], color="grey", linestyle="--", label=f"target {TARGET}")
    left.set(xscale="log", yscale="log", xlabel="σ", ylabel="E‖s_θ − s*‖² / E‖s*‖²")
    left.set_title("relative score error, x ~ p_σ", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    rows = result["ablation"]
    ratios = [r["ed_over_floor"] for r in rows]
    shown = [min(max(q, 1e-2), _BAR_CAP) if math.isfinite(q) else _BAR_CAP for q in ratios]
    bars = right.barh([r["name"] for r in rows], shown, color="tab:blue")
    labels = [
        (f"{q:.3g}" if q < _BAR_CAP else f"{q:.1e} (diverged)") + f", Δw {r['weight_error']:.3f}"
        for q, r in zip(ratios, rows, strict=True)
    ]
    right.bar_label(bars, labels=labels, fontsize=8, padding=3)
    right.axvline(1.0, color="grey", linestyle="--")
    right.set_xscale("log")
    right.set_xlim(0.1, _BAR_CAP * 1e3)
    right.invert_yaxis()
    right.set_xlabel("energy distance / noise floor (1 = exact samples)")
    right.set_title("ablations: samples vs exact samples; Δw = max weight error", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


if __name__ == "__main__":
    # One intra-op thread: the MLP gains nothing from more, and shared cores make them spin.
    torch.set_num_threads(1)
    main()
