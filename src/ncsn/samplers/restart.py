"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes",
Algorithm 1): an ODE solver down the ladder with restart intervals that add noise forward and
solve back, so the forward noise contracts the error the ODE has gathered so far.

Algorithm 1 leaves the ODE solver open: the paper's benchmarks use Heun's method (Karras et al.
2022, Alg. 1; ``solver="heun"``, the default), its authors' Stable Diffusion code also runs it on
DDIM. ``solver="dpmpp_2m"`` uses DPM-Solver++(2M) (:mod:`ncsn.samplers.multistep`, one
evaluation per step), whose first step after each restart is first order (DDIM in data
prediction), as a restart leaves the earlier evaluations on another path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ncsn.errors import NCSNError
from ncsn.samplers.multistep import dpmpp_2m_sampler
from ncsn.samplers.ode import heun_sampler, ode_start
from ncsn.schedule import karras_sigmas

SOLVERS = {"heun": heun_sampler, "dpmpp_2m": dpmpp_2m_sampler}
SOLVER_NAMES = {"heun": "Heun", "dpmpp_2m": "DPM-Solver++(2M)"}  # as samplers describe them


def restart_level(sigmas: Sequence[float], t_min: float, t_max: float, restarts: int) -> int | None:
    """The index j ≥ 1 of the first level with 0 < σ_j ≤ ``t_min``, where the ODE reaches
    t_min and restarts; None when it does not: no level in (0, t_min], t_max ≤ σ_j, or
    ``restarts`` = 0."""
    j = next((j for j in range(1, len(sigmas)) if 0 < sigmas[j] <= t_min), None)
    return j if restarts > 0 and j is not None and t_max > sigmas[j] else None


@torch.inference_mode()
def restart_sampler(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    t_min: float = 0.1,
    t_max: float = 1.0,
    restarts: int = 2,
    restart_steps: int = 4,
    rho: float = 7.0,
    solver: str = "heun",
    x: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Restart sampling (Xu et al. 2023, Algorithm 1) with the ODE ``solver`` over ``sigmas``.

    The ODE runs down the ladder to σ_j, the first level ≤ ``t_min`` (:func:`restart_level`);
    there it restarts ``restarts`` = K times (Algorithm 1's restart loop): forward noise
    x ← x + √(t_max² − σ_j²) z, the VE forward process from σ_j to t_max, then ``restart_steps``
    = M solver steps back over Karras et al.'s ρ ladder (their Eq. 5) from t_max to σ_j; then
    the ODE continues down the ladder to 0. Without a restart (K = 0, no level in (0, t_min],
    or t_max ≤ σ_j) this is the solver alone: :func:`heun_sampler` to the byte for "heun".
    NFE for N levels ending at σ = 0: 2N − 1 + 2·K·M with "heun", N + K·M with "dpmpp_2m".
    """
    if solver not in SOLVERS:
        raise NCSNError(f"restart solver {solver!r}: expected one of {', '.join(SOLVERS)}")
    solve, t = SOLVERS[solver], sigmas
    if x is None:
        x = ode_start(shape, t[0], generator, mean)
    j = restart_level(t, t_min, t_max, restarts)
    if j is None:
        return solve(model, shape, t, generator=generator, callback=callback, x=x)
    # the ρ ladder from t_max to σ_j, its ends exactly t_max and σ_j
    inner = [t_max, *karras_sigmas(t_max, t[j], restart_steps + 1, rho)[1:-2], t[j]]
    nfe = 0

    def leg(x: torch.Tensor, ladder: Sequence[float], where: Callable[[int], tuple[int, int]]):
        """One solve over ``ladder``; its steps reported as (i, step) = where(its own i), with
        the NFE counted from the start of the whole sampler."""
        nonlocal nfe
        before = nfe

        def relay(info: dict) -> None:
            nonlocal nfe
            nfe = before + info["nfe"]
            if callback is not None:
                i, step = where(info["i"])
                callback({**info, "i": i, "step": step, "nfe": nfe})

        return solve(model, shape, ladder, generator=generator, callback=relay, x=x)

    x = leg(x, t[: j + 1], lambda i: (i, 0))
    for k in range(restarts):
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + math.sqrt(t_max**2 - t[j] ** 2) * z
        x = leg(x, inner, lambda m, k=k: (j - 1, k * restart_steps + m + 1))
    return leg(x, t[j:], lambda i: (j + i, 0))
