"""Probability-flow ODE sampling with Heun's method and its stochastic "churn" variant
(Karras et al. 2022, "Elucidating the Design Space…", Algorithms 1 and 2); Restart sampling on
these steps is :mod:`ncsn.samplers.restart`.

For the variance-exploding process the ODE is dx/dσ = −σ ∇ₓ log p_σ(x) = (x − D(x, σ))/σ
(Karras et al. Eq. 3 with σ(t) = t), with D the Tweedie denoiser of the score model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ncsn.schedule import sigma_batch


def derivative(model, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """d = (x − D(x, σ)) / σ (Karras et al. 2022, Algorithm 1 lines 4 and 7)."""
    return (x - model.denoise(x, sigma_batch(sigma, x))) / sigma


def ode_start(
    shape: Sequence[int],
    sigma: float,
    generator: torch.Generator,
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """x₀ = μ + σ₀ z, z ~ N(0, I) (Karras et al. 2022, Algorithm 1 line 1, shifted by μ =
    ``mean``, one example's shape broadcast over the batch; 0 when None)."""
    x = sigma * torch.randn(tuple(shape), generator=generator, device=generator.device)
    if mean is not None:
        x = x + mean.to(x.device)
    return x


def heun_step(model, x: torch.Tensor, t_hat: float, t_next: float) -> tuple[torch.Tensor, int]:
    """One step of Karras et al. 2022, Algorithm 2 lines 7–11 from σ = ``t_hat`` to ``t_next``:
    Euler, then the trapezoidal 2nd-order correction unless ``t_next`` is 0. Returns (x, NFE)."""
    d = derivative(model, x, t_hat)
    x_next = x + (t_next - t_hat) * d
    if t_next == 0:
        return x_next, 1
    d_next = derivative(model, x_next, t_next)
    return x + (t_next - t_hat) * (0.5 * d + 0.5 * d_next), 2


@torch.inference_mode()
def heun_sampler(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    s_churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = math.inf,
    s_noise: float = 1.0,
    x: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Heun's 2nd-order method over ``sigmas`` (descending, last one 0), Karras et al. 2022.

    With ``s_churn`` = 0 this is the deterministic probability-flow ODE (Algorithm 1); with
    ``s_churn`` > 0, noise is added before each step whose σ lies in [s_min, s_max]
    (Algorithm 2): γ_i = min(S_churn/N, √2 − 1), σ̂ = σ_i (1 + γ_i),
    x̂ = x + √(σ̂² − σ_i²) S_noise z — "a little noise, then go back".
    NFE = 2N − 1 for N steps ending at σ = 0.

    The start is x₀ = μ + t₀ z, z ~ N(0, I) (``x`` overrides it): Algorithm 1 line 1 with
    μ = ``mean`` (one example's shape, broadcast over the batch) or 0 when None. A deterministic
    solver maps its start onto the data one to one, so x₀ must follow p_{t₀} ≈ N(μ_data, t₀² I)
    (docs/conventions.md, "Where samplers start").
    """
    t = sigmas
    steps = len(t) - 1
    if x is None:
        x = ode_start(shape, t[0], generator, mean)
    nfe = 0
    for i in range(steps):
        gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_min <= t[i] <= s_max else 0.0
        t_hat = t[i] * (1 + gamma)
        if gamma > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + math.sqrt(t_hat**2 - t[i] ** 2) * s_noise * z
        x, cost = heun_step(model, x, t_hat, t[i + 1])
        nfe += cost
        if callback is not None:
            callback({"x": x, "i": i, "step": 0, "sigma": t[i + 1], "nfe": nfe})
    return x
