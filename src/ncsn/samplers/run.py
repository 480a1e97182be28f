"""Any sampler by name on a trained run, in batches: the one sampling path of every command,
benchmark and the Python API.

``steps`` means T (Langevin steps per level) for ``ald`` and the number of noise levels N for
``pc``, ``ode`` and ``churn``. Each sampler's own settings travel in its options dataclass below,
whose field defaults are the library's defaults (the command line reads them from here). NFE is
counted by the samplers themselves: ald L·T (+1 final denoising), pc (N−1)(1+M) (+1), ode and
churn 2N − 1 (docs/conventions.md, "Samplers"). ``ode`` starts from N(μ, σ₁² I), μ the training
data's mean recorded in the run (:func:`ode_mean`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

import ncsn.schedule as schedule
from ncsn.errors import NCSNError
from ncsn.samplers.langevin import annealed_langevin
from ncsn.samplers.ode import heun_sampler
from ncsn.samplers.pc import pc_sampler


@dataclass(frozen=True)
class ALD:
    """Annealed Langevin (Song & Ermon 2019, Alg. 1). ``eps`` (official convention): None takes
    the run's ε for its own T and the NCSNv2 rule's for another T (:func:`ald_eps`). ``levels``:
    a geometric ladder of that many levels between the run's σ₁ and σ_L instead of the training
    ladder (networks conditioned on σ, not on the level index, only)."""

    eps: float | None = None
    init: str = "uniform"
    denoise_final: bool = True
    levels: int | None = None


@dataclass(frozen=True)
class PC:
    """Predictor–corrector (Song et al. 2021, Alg. 2): M corrector steps at signal-to-noise r."""

    correctors: int = 1
    snr: float = 0.16
    denoise_final: bool = True


@dataclass(frozen=True)
class ODE:
    """Probability-flow ODE, Heun steps on Karras et al.'s ρ ladder (their Alg. 1)."""

    rho: float = 7.0


@dataclass(frozen=True)
class Churn:
    """Heun with churn (Karras et al. 2022, Alg. 2); their ImageNet-64 values, tune for your
    data."""

    rho: float = 7.0
    s_churn: float = 40.0
    s_min: float = 0.05
    s_max: float = 50.0
    s_noise: float = 1.003


OPTIONS = {"ald": ALD, "pc": PC, "ode": ODE, "churn": Churn}
SAMPLERS = tuple(OPTIONS)
ODE_STEPS = 18  # Karras et al.'s N for CIFAR-10 (35 NFE): ode/churn without --steps


def options(name: str, **given) -> ALD | PC | ODE | Churn:
    """The options of sampler ``name`` with the ``given`` values that are its fields and not None
    (the others are the defaults); values meant for other samplers are ignored."""
    cls = _options_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in given.items() if k in fields and v is not None})


def ald_eps(sched: schedule.Schedule, steps: int, eps: float | None) -> float:
    """ε for T = ``steps``: the run's ε for its own T; the NCSNv2 rule (technique 4) for another T
    when the run's ε came from that rule; else the run's ε."""
    if eps is not None:
        return eps
    if steps == sched.steps_per_level or not sched.step_rule:
        return sched.step_size
    return schedule.step_size_for(sched.gamma, sched.sigma_min, steps)


def sample(
    model,
    sched: schedule.Schedule,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator,
    sampler: str = "ald",
    steps: int | None = None,
    opts: ALD | PC | ODE | Churn | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[torch.Tensor, int, str]:
    """One batch of ``shape`` from sampler ``sampler``; returns (samples, NFE per sample, what
    was run in words)."""
    opts = opts if opts is not None else _options_class(sampler)()
    nfe = 0

    def count(state: dict) -> None:
        nonlocal nfe
        nfe = state["nfe"]
        if callback is not None:
            callback(state)

    common = {"generator": generator, "callback": count}
    steps, sigmas, eps = resolve(sched, sampler, steps, opts)
    if sampler == "ald":
        x = annealed_langevin(
            model, shape, sigmas, eps=eps, n_steps_each=steps, init=opts.init,
            denoise_final=opts.denoise_final, **common,
        )  # fmt: skip
        text = f"ald (L = {len(sigmas)}, T = {steps}, ε = {eps:.4g})"
    elif sampler == "pc":
        x = pc_sampler(
            model, shape, sigmas, n_correctors=opts.correctors, snr=opts.snr,
            denoise_final=opts.denoise_final, **common,
        )  # fmt: skip
        text = f"pc (N = {steps}, correctors {opts.correctors}, snr {opts.snr})"
    elif sampler == "ode":
        x = heun_sampler(model, shape, sigmas, mean=ode_mean(sched, shape), **common)
        start = "N(μ, σ₁² I)" if sched.data_mean is not None else "N(0, σ₁² I), no μ recorded"
        text = f"ode (Heun, N = {steps}, ρ = {opts.rho}, start {start})"
    else:
        churn = dataclasses.asdict(opts)
        churn.pop("rho")
        x = heun_sampler(model, shape, sigmas, **churn, **common)
        settings = "".join(f", {k} {v}" for k, v in churn.items())
        text = f"churn (Heun, N = {steps}, ρ = {opts.rho}{settings})"
    return x, nfe, text


def ode_mean(sched: schedule.Schedule, shape: tuple[int, ...]) -> torch.Tensor | None:
    """μ, the training data's mean recorded in the run, as one example of ``shape`` (N, ...):
    where the deterministic ``ode`` starts, N(μ, σ₁² I). None for runs without a recorded mean
    (trained before issue 14): they start from N(0, σ₁² I), as before. ald, pc and churn keep
    their starts: their noise carries them to p_σ whatever the start's mean."""
    if sched.data_mean is None:
        return None
    return torch.tensor(sched.data_mean, dtype=torch.float32).reshape(shape[1:])


def resolve(
    sched: schedule.Schedule, sampler: str, steps: int | None, opts
) -> tuple[int, list[float], float | None]:
    """(steps, σ ladder, ε) that sampler ``sampler`` runs with on this schedule: the defaults
    filled in, ε only for ald (None otherwise)."""
    if sampler == "ald":
        steps = steps or sched.steps_per_level
        if opts.levels and opts.levels != sched.num_levels:  # coarser (or finer), same ends
            sigmas = schedule.geometric_sigmas(sched.sigma_max, sched.sigma_min, opts.levels)
            gamma = (sched.sigma_max / sched.sigma_min) ** (1 / max(opts.levels - 1, 1))
            eps = (
                opts.eps
                if opts.eps is not None
                else schedule.step_size_for(gamma, sched.sigma_min, steps)
            )
            return steps, sigmas, eps
        return steps, sched.sigmas, ald_eps(sched, steps, opts.eps)
    if sampler == "pc":
        steps = steps or sched.num_levels
        return steps, schedule.geometric_sigmas(sched.sigma_max, sched.sigma_min, steps), None
    steps = steps or ODE_STEPS
    return steps, schedule.karras_sigmas(sched.sigma_max, sched.sigma_min, steps, opts.rho), None


def batches(
    model,
    sched: schedule.Schedule,
    n: int,
    shape: tuple[int, ...],
    *,
    seed: int,
    batch_size: int,
    sampler: str = "ald",
    steps: int | None = None,
    opts: ALD | PC | ODE | Churn | None = None,
    callback: Callable[[dict], None] | None = None,
) -> Iterator[tuple[torch.Tensor, int, str]]:
    """``n`` samples in batches of at most ``batch_size``, one seeded generator for all of them
    (same seed, same bytes, whatever is done with each batch): yields (batch, NFE, text).
    ``callback`` sees the steps of the first batch (for animations)."""
    gen = torch.Generator(_device(model)).manual_seed(seed)
    for i in range(0, n, batch_size):
        yield sample(
            model, sched, (min(batch_size, n - i), *shape), generator=gen, sampler=sampler,
            steps=steps, opts=opts, callback=callback if i == 0 else None,
        )  # fmt: skip


def draw(
    model,
    sched: schedule.Schedule,
    n: int,
    shape: tuple[int, ...],
    *,
    seed: int = 0,
    batch_size: int = 500,
    sampler: str = "ald",
    steps: int | None = None,
    opts: ALD | PC | ODE | Churn | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[torch.Tensor, dict]:
    """``n`` samples (float32, on the CPU) from :func:`batches`, and how they were drawn."""
    opts = opts if opts is not None else _options_class(sampler)()
    start = time.perf_counter()
    chunks = []
    for batch in batches(
        model, sched, n, shape, seed=seed, batch_size=batch_size, sampler=sampler, steps=steps,
        opts=opts, callback=callback,
    ):  # fmt: skip
        chunks.append(batch[0].float().cpu())
    _, nfe, text = batch
    steps, sigmas, eps = resolve(sched, sampler, steps, opts)
    info = {
        "sampler": sampler,
        "steps": steps,
        "num_levels": len(sigmas),
        "options": dataclasses.asdict(opts) | ({"eps": eps} if eps is not None else {}),
        "description": text,
        "nfe": nfe,
        "n": n,
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return torch.cat(chunks), info


def _options_class(name: str) -> type:
    if name not in OPTIONS:
        raise NCSNError(f"sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
    return OPTIONS[name]


def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):  # a parameter-free model, e.g. an exact score
        return torch.device("cpu")
