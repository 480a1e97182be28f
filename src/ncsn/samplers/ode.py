"""Probability-flow ODE sampling with Heun's method, and its stochastic "churn" variant
(Karras et al. 2022, "Elucidating the Design Space…", Algorithms 1 and 2).

For the variance-exploding process the ODE is dx/dσ = −σ ∇ₓ log p_σ(x) = (x − D(x, σ))/σ
(Karras et al. Eq. 3 with σ(t) = t), with D the Tweedie denoiser of the score model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ncsn.samplers.langevin import _sigma_list


def karras_sigmas(sigma_max: float, sigma_min: float, n: int, rho: float = 7.0) -> list[float]:
    """σ_i = (σ_max^{1/ρ} + i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i < n, then σ_n = 0
    (Karras et al. 2022, Eq. 5)."""
    if n == 1:
        return [float(sigma_max), 0.0]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)] + [0.0]


def _derivative(model, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """d = (x − D(x, σ)) / σ (Karras et al. 2022, Algorithm 1 lines 4 and 7)."""
    sigma_t = torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype)
    return (x - model.denoise(x, sigma_t)) / sigma


@torch.inference_mode()
def heun_sampler(
    model,
    shape: Sequence[int],
    sigmas: torch.Tensor | Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    s_churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = math.inf,
    s_noise: float = 1.0,
    x: torch.Tensor | None = None,
) -> torch.Tensor:
    """Heun's 2nd-order method over ``sigmas`` (descending, last one 0), Karras et al. 2022.

    With ``s_churn`` = 0 this is the deterministic probability-flow ODE (Algorithm 1); with
    ``s_churn`` > 0, noise is added before each step whose σ lies in [s_min, s_max]
    (Algorithm 2): γ_i = min(S_churn/N, √2 − 1), σ̂ = σ_i (1 + γ_i),
    x̂ = x + √(σ̂² − σ_i²) S_noise z — "a little noise, then go back".
    NFE = 2N − 1 for N steps ending at σ = 0.
    """
    t = _sigma_list(sigmas)
    steps = len(t) - 1
    if x is None:
        x = t[0] * torch.randn(tuple(shape), generator=generator, device=generator.device)
    nfe = 0
    for i in range(steps):
        gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_min <= t[i] <= s_max else 0.0
        t_hat = t[i] * (1 + gamma)
        if gamma > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + math.sqrt(t_hat**2 - t[i] ** 2) * s_noise * z
        d = _derivative(model, x, t_hat)
        nfe += 1
        x_next = x + (t[i + 1] - t_hat) * d
        if t[i + 1] != 0:
            d_next = _derivative(model, x_next, t[i + 1])
            nfe += 1
            x_next = x + (t[i + 1] - t_hat) * (0.5 * d + 0.5 * d_next)
        x = x_next
        if callback is not None:
            callback({"x": x, "i": i, "step": 0, "sigma": t[i + 1], "nfe": nfe})
    return x


def churn_sampler(
    model,
    shape,
    sigmas,
    *,
    generator,
    callback=None,
    s_churn: float = 40.0,
    s_min: float = 0.05,
    s_max: float = 50.0,
    s_noise: float = 1.003,
    x=None,
):
    """The stochastic sampler of Karras et al. 2022 (Algorithm 2): :func:`heun_sampler` with
    churn on by default (S_churn = 40, S_min = 0.05, S_max = 50, S_noise = 1.003, their
    ImageNet-64 values; tune for your data)."""
    return heun_sampler(
        model,
        shape,
        sigmas,
        generator=generator,
        callback=callback,
        s_churn=s_churn,
        s_min=s_min,
        s_max=s_max,
        s_noise=s_noise,
        x=x,
    )
