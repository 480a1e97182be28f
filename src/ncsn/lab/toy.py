"""``ncsn toy``: an NCSN trained on a 2-D toy, checked against the exact score (issue 3).

For the Gaussian-mixture presets the σ-perturbed density p_σ and its score s*(x, σ) = ∇ₓ log p_σ(x)
are known in closed form (:mod:`ncsn.data.toy`), so the learned score s_θ can be compared with the
truth level by level, and the samples of annealed Langevin dynamics (Song & Ermon 2019,
Algorithm 1) can be checked for the mixture weights, which plain Langevin gets wrong (§3.2).

The toy ladder (:func:`toy_config`): σ₁ by NCSNv2 technique 1 (the largest distance between two
training points), σ_L = 0.1 (a tenth of the ``mixture`` preset's component std), L = 30 geometric
levels (γ ≈ 1.2), T = 100 Langevin steps per level. The automatic L of NCSNv2 technique 2 does not
apply in D = 2: there C(γ) never falls to 0.5, so L is fixed. ε = 1e-3 rather than technique 4's
2.5e-4: with the exact score and technique 4's ε, particles cross too rarely between the modes
and the minor weight comes out near 0.22 instead of 0.20 (benchmarks/toy.py, row "exact score,
technique-4 ε"); ε = 1e-3 still gives an NCSNv2 Eq. 7 variance ratio of 1.05.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

import ncsn.config as config
import ncsn.limits as limits
from ncsn.data.toy import GaussianMixture, SampledToy, load_toy, make_toy
from ncsn.errors import NCSNError
from ncsn.lab import plots
from ncsn.samplers.langevin import annealed_langevin, initial_noise
from ncsn.training.loop import train
from ncsn.training.state import load_run

TOY_N = 10000
SIGMA_MIN = 0.1
NUM_LEVELS = 30
STEPS_PER_LEVEL = 100
STEP_SIZE = 1e-3
# Training steps by preset: the sample-only presets' thin arms and sharp edges take longer (with
# 4,000 steps the spiral's inner turns come out as a blur).
DEFAULT_STEPS = {"mixture": 4000, "ring8": 4000, "checkerboard": 12000, "spiral": 12000}
BATCH_SIZE = 512
FIELD_LEVELS = 4
GIF_FRAMES = 40
GIF_POINTS = 1000
ERROR_POINTS = 10000


def toy_config(
    preset: str,
    *,
    run_dir: str | Path,
    steps: int | None = None,
    objective: str = "dsm",
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    sigma_max: float | str = "auto",
) -> config.Config:
    """The training config of a toy run: an MLP score model on ``preset`` with the toy ladder.

    The network sees x/√(σ² + σ_data²) (Karras et al. 2022, Eq. 7) with σ_data the data's RMS
    per-coordinate std, measured on the training points, so its input has unit scale at every σ.
    """
    make_toy(preset)  # an unknown preset fails here, with the list of known ones
    steps = DEFAULT_STEPS[preset] if steps is None else steps
    if steps < 1:
        raise NCSNError(f"--steps {steps}: expected a positive integer")
    x = load_toy(preset, TOY_N, seed).x
    sigma_data = float(x.var(dim=0).mean().sqrt())
    cfg = config.Config(
        data=config.DataConfig(name="toy", toy=preset, toy_n=TOY_N),
        schedule=config.ScheduleConfig(
            sigma_max=sigma_max,
            sigma_min=SIGMA_MIN,
            num_levels=NUM_LEVELS,
            step_size=STEP_SIZE,
            steps_per_level=STEPS_PER_LEVEL,
        ),
        model=config.ModelConfig(
            net="mlp", hidden=128, layers=3, embedding_dim=32, sigma_data=round(sigma_data, 4)
        ),
        train=config.TrainConfig(
            objective=objective,
            steps=steps,
            batch_size=batch_size,
            lr=1e-3,
            warmup=100,
            checkpoint_every=1000,
            keep_last=1,
            preview_every=0,
            log_every=100,
            seed=seed,
            device="cpu",
        ),
        run_dir=str(run_dir),
    )
    limits.check_config(cfg, lambda name: "toy config")
    return cfg


@torch.no_grad()
def relative_score_error(
    model,
    mixture: GaussianMixture,
    sigmas: Sequence[float],
    *,
    n: int,
    generator: torch.Generator,
) -> list[float]:
    """E‖s_θ(x, σ) − s*(x, σ)‖² / E‖s*(x, σ)‖² with x ~ p_σ (n exact samples), for each σ.

    s* = ∇ₓ log p_σ is the exact score of the perturbed mixture; 0 is a perfect score model and
    1 is as far off as the zero vector field.
    """
    errors = []
    for sigma in sigmas:
        x = mixture.sample(n, generator, sigma=float(sigma))
        exact = mixture.score(x.double(), float(sigma))
        learned = model.score(x, float(sigma)).double()
        errors.append(float((learned - exact).square().sum() / exact.square().sum()))
    return errors


def recovered_weights(mixture: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """The share of points assigned to each component, k(x) = argmax_k p(k | x) at σ = 0."""
    k = mixture.responsibilities(x).argmax(dim=1)
    return torch.bincount(k, minlength=len(mixture.weights)).double() / x.shape[0]


def sample_particles(
    model,
    sigmas: Sequence[float],
    *,
    n: int,
    eps: float,
    n_steps_each: int,
    generator: torch.Generator,
    denoise_final: bool = True,
    frames: int = 0,
    frame_points: int = GIF_POINTS,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, float]]]:
    """n particles of annealed Langevin dynamics (Algorithm 1) from x₀ ~ N(0, σ₁² I).

    Returns the particles and, when ``frames`` > 0, about that many snapshots (the first
    ``frame_points`` particles, and the σ they were at), starting with the initial noise.
    """
    x = initial_noise((n, 2), float(sigmas[0]), generator=generator, init="gaussian")
    snapshots: list[tuple[torch.Tensor, float]] = []
    callback = None
    if frames > 0:
        snapshots.append((x[:frame_points].clone(), float(sigmas[0])))
        every = max(1, len(sigmas) * n_steps_each // frames)

        def callback(state: dict) -> None:
            if state["nfe"] % every == 0 or state["sigma"] == 0.0:
                snapshots.append((state["x"][:frame_points].clone(), state["sigma"]))

    x = annealed_langevin(
        model,
        (n, 2),
        sigmas,
        generator=generator,
        callback=callback,
        eps=eps,
        n_steps_each=n_steps_each,
        denoise_final=denoise_final,
        x=x,
    )
    return x, snapshots


def plot_limit(toy: GaussianMixture | SampledToy, generator: torch.Generator) -> float:
    """Half-width of a square view centred on 0 that holds 99.9 % of the data, plus 10 %."""
    x = toy.sample(20000, generator)
    return 1.1 * float(x.abs().max(dim=1).values.quantile(0.999))


def run_toy(
    preset: str,
    out: str | Path,
    *,
    steps: int | None = None,
    objective: str = "dsm",
    seed: int = 0,
    particles: int = 2000,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Train (or reuse) the toy run in ``out/run`` and render its pictures into ``out``.

    Returns the path of every file written, by name. The pictures that need the exact score (the
    error per σ, the exact field, the weights) are skipped, with a message, for sample-only presets.
    """
    if particles < 1:
        raise NCSNError(f"--particles {particles}: expected a positive integer")
    out = Path(out)
    cfg = toy_config(preset, run_dir=out / "run", steps=steps, objective=objective, seed=seed)
    _check_reusable(cfg)
    train(cfg, progress=progress, log=log)
    model, sched, cfg, _ = load_run(cfg.run_dir, log=log)
    toy = make_toy(preset)
    exact = toy if isinstance(toy, GaussianMixture) else None
    generator = torch.Generator().manual_seed(seed + 10)
    lim = plot_limit(toy, generator)
    field_sigmas = _spread(sched.sigmas, FIELD_LEVELS)
    paths: dict[str, Path] = {}

    def put(name: str) -> Path:
        paths[name] = out / name
        return paths[name]

    plots.save_density(toy, lim, put("density.png"), generator=generator)
    plots.save_score_field(
        model,
        exact,
        field_sigmas,
        lim,
        put("score_field.png"),
        samples=None if exact is not None else toy.sample(3000, generator),
    )
    if exact is None:
        log(
            f"{preset} is sample-only (no exact score): score_field.png shows the learned field "
            "only; score_error.png/.json and weights.png/.json are skipped"
        )
    else:
        errors = relative_score_error(
            model, exact, sched.sigmas, n=ERROR_POINTS, generator=generator
        )
        plots.save_score_error(sched.sigmas, {objective: errors}, put("score_error.png"))
        plots.save_json(
            {
                "preset": preset,
                "objective": objective,
                "steps": cfg.train.steps,
                "definition": "E|s_theta - s*|^2 / E|s*|^2, x ~ p_sigma, exact samples",
                "n": ERROR_POINTS,
                "sigmas": sched.sigmas,
                "relative_error": errors,
            },
            put("score_error.json"),
        )
    x, frames = sample_particles(
        model,
        sched.sigmas,
        n=particles,
        eps=sched.step_size,
        n_steps_each=sched.steps_per_level,
        generator=generator,
        frames=GIF_FRAMES,
    )
    plots.save_langevin_gif(frames, lim, put("langevin.gif"))
    plots.save_samples(x, toy.sample(particles, generator), lim, put("samples.png"))
    if exact is not None:
        weights = recovered_weights(exact, x)
        plots.save_weights(exact.weights, weights, put("weights.png"))
        plots.save_json(
            {
                "preset": preset,
                "assignment": "argmax_k p(k | x) at sigma = 0",
                "particles": particles,
                "true": exact.weights.tolist(),
                "recovered": weights.tolist(),
                "max_abs_error": float((weights - exact.weights).abs().max()),
            },
            put("weights.json"),
        )
    return paths


def _spread(sigmas: Sequence[float], k: int) -> list[float]:
    """k levels of the ladder evenly spread over its indices, σ₁ and σ_L included."""
    last = len(sigmas) - 1
    return [sigmas[round(i * last / max(k - 1, 1))] for i in range(min(k, len(sigmas)))]


def _check_reusable(cfg: config.Config) -> None:
    """A run directory is reused (and resumed) only for the same settings, up to train.steps."""
    saved_path = Path(cfg.run_dir) / "config.yaml"
    if not saved_path.exists():
        return
    saved = config.to_dict(config.load(saved_path))
    now = config.to_dict(cfg)
    del saved["train"]["steps"]
    del now["train"]["steps"]
    if saved != now:
        raise NCSNError(
            f"{cfg.run_dir} holds a toy run with other settings (preset, objective or seed); "
            "choose another --out or delete that folder"
        )
