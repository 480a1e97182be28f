"""Any sampler by name on a trained run, in batches: the one sampling path of every command,
benchmark and the Python API.

``steps`` means T (Langevin steps per level) for ``ald`` and the number of noise levels N for
the others (N levels from σ₁ to σ_L, then σ = 0: Karras et al.'s ρ ladder, or uniform in log σ
with ``schedule="loguniform"`` for the five fast samplers). Each sampler's own settings travel in
its options dataclass below, whose field defaults are the library's defaults (the command line
reads them from here). NFE is counted by the samplers themselves (docs/conventions.md,
"Samplers"): ald L·T (+1 final denoising), pc (N−1)(1+M) (+1), ode and churn 2N − 1, ipndm,
dpmpp_2m, dpmpp_2m_sde and unipc N (one denoiser evaluation per step, none at σ = 0), restart
2N − 1 + 2·K·M on Heun and N + K·M on DPM-Solver++(2M) (K restarts of M steps; no restart
when no level of the ladder lies in (0, t_min] or t_max is not above it), consistency N (one
jump per level; ``steps`` counts the jumps, on a consistency model only). ``ode``, ``ipndm``,
``dpmpp_2m``, ``dpmpp_2m_sde``, ``unipc`` and ``restart`` start from N(μ, σ₁² I), μ the training
data's mean recorded in the run (:func:`ode_mean`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import torch

import ncsn.samplers.conditioning as conditioning
import ncsn.schedule as schedule
from ncsn.devices import model_device
from ncsn.errors import NCSNError
from ncsn.noise_levels import EDM_SIGMA_DATA
from ncsn.samplers.consistency import consistency_sampler
from ncsn.samplers.langevin import annealed_langevin
from ncsn.samplers.multistep import dpmpp_2m_sampler, dpmpp_2m_sde_sampler, ipndm_sampler
from ncsn.samplers.ode import heun_sampler
from ncsn.samplers.options import (  # noqa: F401 (re-exported: the options live with the path)
    ALD,
    ECT_MID,
    IPNDM,
    ODE,
    ODE_STEPS,
    OPTIONS,
    PC,
    SAMPLERS,
    Churn,
    Consistency,
    DPMpp2M,
    DPMpp2MSDE,
    Options,
    Restart,
    UniPC,
    options,
    options_class,
)
from ncsn.samplers.pc import pc_sampler
from ncsn.samplers.restart import SOLVER_NAMES, restart_level, restart_sampler
from ncsn.samplers.unipc import unipc_sampler


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
    opts: Options | None = None,
    callback: Callable[[dict], None] | None = None,
    labels: torch.Tensor | None = None,
    guidance: float | None = None,
) -> tuple[torch.Tensor, int, str]:
    """One batch of ``shape`` from sampler ``sampler``; returns (samples, NFE per sample, what
    was run in words). ``labels`` (N,) and ``guidance`` w: a class-conditional model's samples
    of those classes, with classifier-free guidance (:mod:`ncsn.samplers.conditioning`); the NFE
    then counts both network evaluations of each guided score."""
    opts = opts if opts is not None else options_class(sampler)()
    nfe = 0

    def count(state: dict) -> None:
        nonlocal nfe
        nfe = state["nfe"]
        if callback is not None:
            callback(state)

    common = {"generator": generator, "callback": count}
    sigma_data = getattr(model, "sigma_data", 0.5)
    if sampler == "consistency" and getattr(model, "parameterization", None) != "consistency":
        raise NCSNError(
            "--sampler consistency: the run is not a consistency model (model.parameterization "
            f"= {getattr(model, 'parameterization', None)!r}); make one with `ncsn distill "
            "RUN_DIR --out NEW_DIR`, or choose another sampler"
        )
    model = conditioning.conditioned(model, labels, guidance)
    steps, sigmas, eps = resolve(sched, sampler, steps, opts, sigma_data)
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
        text = f"ode (Heun, N = {steps}, ρ = {opts.rho}, start {_start(sched)})"
    elif sampler == "consistency":
        x = consistency_sampler(model, shape, sigmas, sigma_min=model.sigma_min, gamma=opts.gamma,
                                mean=ode_mean(sched, shape), **common)  # fmt: skip
        jumps = ", ".join(f"{s:.4g}" for s in sigmas)
        renoise = f", γ {opts.gamma:g}" if opts.gamma != 1 and steps > 1 else ""
        text = f"consistency (N = {steps} jumps at σ = {jumps}{renoise}, start {_start(sched)})"
    elif sampler == "churn":
        churn = dataclasses.asdict(opts)
        churn.pop("rho")
        x = heun_sampler(model, shape, sigmas, **churn, **common)
        settings = "".join(f", {k} {v}" for k, v in churn.items())
        text = f"churn (Heun, N = {steps}, ρ = {opts.rho}{settings})"
    else:
        x, what = _fast(sampler, model, shape, sigmas, opts, mean=ode_mean(sched, shape), **common)
        ladder = {"karras": f"ρ = {opts.rho}", "loguniform": "log-uniform σ"}.get(
            opts.schedule, "the run's GITS levels"
        )
        parts = [*what, f"N = {steps}", ladder, f"start {_start(sched)}"]
        text = f"{sampler} ({', '.join(parts)})"
    if labels is not None:
        pair = ", each a batched conditional + unconditional pair" if model.evaluations > 1 else ""
        text += f"; class-conditional, guidance w = {model.guidance:g}{pair}"
        nfe *= model.evaluations
    return x, nfe, text


def _start(sched: schedule.Schedule) -> str:
    return "N(μ, σ₁² I)" if sched.data_mean is not None else "N(0, σ₁² I), no μ recorded"


def _fast(sampler, model, shape, sigmas, opts, **common) -> tuple[torch.Tensor, list[str]]:
    """ipndm, dpmpp_2m, dpmpp_2m_sde, unipc or restart: (samples, their own settings in words)."""
    if sampler == "ipndm":
        x = ipndm_sampler(model, shape, sigmas, max_order=opts.max_order, **common)
        return x, [f"order ≤ {opts.max_order}"]
    if sampler == "dpmpp_2m":
        return dpmpp_2m_sampler(model, shape, sigmas, **common), []
    if sampler == "dpmpp_2m_sde":
        x = dpmpp_2m_sde_sampler(model, shape, sigmas, eta=opts.eta, **common)
        return x, [f"η = {opts.eta}"]
    if sampler == "unipc":
        x = unipc_sampler(model, shape, sigmas, order=opts.order, **common)
        return x, [f"UniP order {opts.order}, B(h) = e^h − 1"]
    x = restart_sampler(
        model, shape, sigmas, t_min=opts.restart_min, t_max=opts.restart_max,
        restarts=opts.restarts, restart_steps=opts.restart_steps, rho=opts.rho,
        solver=opts.solver, **common,
    )  # fmt: skip
    solver = SOLVER_NAMES[opts.solver]
    j = restart_level(sigmas, opts.restart_min, opts.restart_max, opts.restarts)
    if j is None:
        return x, [solver, "no restart"]
    restarts = f"K = {opts.restarts} restarts from σ = {sigmas[j]:.4g} to {opts.restart_max:.4g}"
    return x, [solver, restarts, f"M = {opts.restart_steps} steps each"]


def ode_mean(sched: schedule.Schedule, shape: tuple[int, ...]) -> torch.Tensor | None:
    """μ, the training data's mean recorded in the run, as one example of ``shape`` (N, ...):
    where the deterministic ``ode`` (and ipndm, dpmpp_2m, dpmpp_2m_sde, unipc, restart) starts,
    N(μ, σ₁² I). None for runs without a recorded mean (trained before issue 14): they start from
    N(0, σ₁² I), as before. ald, pc and churn keep their starts: their noise carries them to p_σ
    whatever the start's mean."""
    if sched.data_mean is None:
        return None
    return torch.tensor(sched.data_mean, dtype=torch.float32).reshape(shape[1:])


def resolve(
    sched: schedule.Schedule, sampler: str, steps: int | None, opts, sigma_data: float = 0.5
) -> tuple[int, list[float], float | None]:
    """(steps, σ ladder, ε) that sampler ``sampler`` runs with on this schedule: the defaults
    filled in, ε only for ald (None otherwise); ``sigma_data``: the model's (consistency's
    default middle σ)."""
    if sampler == "consistency":
        steps = steps or 1
        mid = (
            opts.sigma_mid if opts.sigma_mid is not None else ECT_MID * sigma_data / EDM_SIGMA_DATA
        )
        if steps > 1 and not sched.sigma_min <= mid < sched.sigma_max:
            raise NCSNError(
                f"--sigma-mid {mid:g}: expected a σ in [σ_L, σ₁) = [{sched.sigma_min:.4g}, "
                f"{sched.sigma_max:.4g})"
            )
        if not 0 <= opts.gamma <= 1:
            raise NCSNError(f"--gamma {opts.gamma}: expected a share of fresh noise from 0 to 1")
        rest = schedule.karras_sigmas(mid, sched.sigma_min, steps - 1, opts.rho)[:-1]
        return steps, [sched.sigma_max, *rest][:steps], None
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
    name = getattr(opts, "schedule", "karras")  # ode and churn: Karras et al.'s ρ ladder
    if name == "gits":  # optimised for this run (samplers/gits.py), one ladder per N
        stored = sched.step_schedules.get("gits", {})
        if str(steps) not in stored:
            have = ", ".join(sorted(stored, key=int)) or "none"
            raise NCSNError(
                f"--step-schedule gits: the run has no GITS schedule of N = {steps} levels "
                f"(stored: {have}); make it with `ncsn steps RUN_DIR --steps {steps}`"
            )
        return steps, list(stored[str(steps)]), None
    return (
        steps,
        schedule.step_sigmas(name, sched.sigma_max, sched.sigma_min, steps, opts.rho),
        None,
    )


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
    opts: Options | None = None,
    callback: Callable[[dict], None] | None = None,
    labels: torch.Tensor | None = None,
    guidance: float | None = None,
) -> Iterator[tuple[torch.Tensor, int, str]]:
    """``n`` samples in batches of at most ``batch_size``, one seeded generator for all of them
    (same seed, same bytes, whatever is done with each batch): yields (batch, NFE, text).
    ``callback`` sees the steps of the first batch (for animations); ``labels`` (n,), sliced
    with the batches, and ``guidance`` as in :func:`sample`."""
    gen = torch.Generator(model_device(model)).manual_seed(seed)
    for i in range(0, n, batch_size):
        size = min(batch_size, n - i)
        yield sample(
            model, sched, (size, *shape), generator=gen, sampler=sampler, steps=steps, opts=opts,
            callback=callback if i == 0 else None,
            labels=None if labels is None else labels[i : i + size], guidance=guidance,
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
    opts: Options | None = None,
    callback: Callable[[dict], None] | None = None,
    labels: torch.Tensor | None = None,
    guidance: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """``n`` samples (float32, on the CPU) from :func:`batches`, and how they were drawn."""
    opts = opts if opts is not None else options_class(sampler)()
    start = time.perf_counter()
    chunks = []
    for batch in batches(
        model, sched, n, shape, seed=seed, batch_size=batch_size, sampler=sampler, steps=steps,
        opts=opts, callback=callback, labels=labels, guidance=guidance,
    ):  # fmt: skip
        chunks.append(batch[0].float().cpu())
    _, nfe, text = batch
    steps, sigmas, eps = resolve(sched, sampler, steps, opts, getattr(model, "sigma_data", 0.5))
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
    if labels is not None:
        info |= {"guidance": 1.0 if guidance is None else guidance,
                 "class_counts": torch.bincount(labels.cpu()).tolist()}  # fmt: skip
    return torch.cat(chunks), info
