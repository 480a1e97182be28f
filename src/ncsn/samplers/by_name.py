"""Any sampler by name on a trained run: the one entry point of ``ncsn sample`` and the benchmarks.

``steps`` means T (Langevin steps per level) for ``ald`` and the number of noise levels N for
``pc``, ``ode`` and ``churn``. NFE per sample: ald L·T (+1 final denoising), pc (N−1)(1+M) (+1),
ode/churn 2N − 1 (docs/conventions.md, "Samplers").
"""

from __future__ import annotations

import torch

from ncsn import schedule
from ncsn.errors import NCSNError
from ncsn.samplers.langevin import annealed_langevin
from ncsn.samplers.ode import heun_sampler, karras_sigmas
from ncsn.samplers.pc import pc_sampler

SAMPLERS = ("ald", "pc", "ode", "churn")


def ald_eps(sched: schedule.Schedule, steps: int, eps: float | None) -> float:
    """ε for T = ``steps``: the run's ε for its own T; the NCSNv2 rule (technique 4) for another T
    when the run's ε came from that rule; else the run's ε."""
    if eps is not None:
        return eps
    if steps == sched.steps_per_level or not sched.step_rule:
        return sched.step_size
    return schedule.step_size_for(sched.gamma, sched.sigma_min, steps)


def run_sampler(
    name: str,
    model,
    shape: tuple[int, ...],
    sched: schedule.Schedule,
    *,
    generator: torch.Generator,
    steps: int | None = None,
    eps: float | None = None,
    init: str = "uniform",
    denoise_final: bool = True,
    callback=None,
    n_correctors: int = 1,
    snr: float = 0.16,
    rho: float = 7.0,
    churn: tuple[float, float, float, float] = (40.0, 0.05, 50.0, 1.003),
    levels: int | None = None,
) -> tuple[torch.Tensor, int, str]:
    """Run sampler ``name`` on a trained model; returns (samples, NFE per sample, description).

    ``levels`` (ald only): sample on a geometric ladder of that many levels between the run's σ₁
    and σ_L instead of the training ladder, with ε by the NCSNv2 rule for its γ and T (networks
    conditioned on σ, not on the level index, only).
    """
    state = {"nfe": 0}

    def count(s: dict) -> None:
        state["nfe"] = s["nfe"]
        if callback is not None:
            callback(s)

    if name == "ald":
        steps = steps or sched.steps_per_level
        sigmas = sched.sigmas
        if levels and levels != sched.num_levels:  # a coarser (or finer) ladder, same ends
            sigmas = schedule.geometric_sigmas(sched.sigma_max, sched.sigma_min, levels).tolist()
            gamma = (sched.sigma_max / sched.sigma_min) ** (1 / max(levels - 1, 1))
            eps = eps if eps is not None else schedule.step_size_for(gamma, sched.sigma_min, steps)
        eps = ald_eps(sched, steps, eps)
        x = annealed_langevin(
            model,
            shape,
            sigmas,
            generator=generator,
            callback=count,
            eps=eps,
            n_steps_each=steps,
            init=init,
            denoise_final=denoise_final,
        )
        text = f"ald (L = {len(sigmas)}, T = {steps}, ε = {eps:.4g})"
    elif name == "pc":
        steps = steps or sched.num_levels
        sigmas = schedule.geometric_sigmas(sched.sigma_max, sched.sigma_min, steps).tolist()
        x = pc_sampler(
            model,
            shape,
            sigmas,
            generator=generator,
            callback=count,
            n_correctors=n_correctors,
            snr=snr,
            denoise_final=denoise_final,
        )
        text = f"pc (N = {steps}, correctors {n_correctors}, snr {snr})"
    elif name in ("ode", "churn"):
        steps = steps or 18
        sigmas = karras_sigmas(sched.sigma_max, sched.sigma_min, steps, rho)
        s_churn, s_min, s_max, s_noise = churn if name == "churn" else (0.0, 0.0, 0.0, 1.0)
        x = heun_sampler(
            model,
            shape,
            sigmas,
            generator=generator,
            callback=count,
            s_churn=s_churn,
            s_min=s_min,
            s_max=s_max,
            s_noise=s_noise,
        )
        text = f"{name} (Heun, N = {steps}, ρ = {rho}" + (
            f", S_churn {s_churn}, S_min {s_min}, S_max {s_max}, S_noise {s_noise})"
            if name == "churn"
            else ")"
        )
    else:
        raise NCSNError(f"sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
    return x, state["nfe"], text
