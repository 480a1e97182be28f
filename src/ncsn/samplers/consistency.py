"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1) for a
consistency model f(x, σ) (``model.parameterization = consistency``, trained by ``ncsn distill``).

One jump from σ₁ to the data, then, for each further level σ, noise back up to σ and jump again:
x = μ + σ₁ z, x₀ = f(x, σ₁); for σ in the rest: x = x₀ + √(σ² − σ_min²) z, x₀ = f(x, σ).
NFE = the number of levels. The start is the ODE samplers' N(μ, σ₁² I) (docs/conventions.md,
"Where samplers start"): f maps points of the probability-flow ODE's trajectories, which start
there.

``gamma`` γ < 1 re-noises as the γ-sampling of Kim et al. 2024 ("Consistency Trajectory Models",
ICLR): part of the way back up follows the last jump's own trajectory, the rest is fresh noise,
x = G(x_prev, σ_prev, √(1 − γ²)σ) + γ√(σ² − σ_min²) z with CTM's G(x, t, s) = (s/t)x +
(1 − s/t)g. A consistency model has no g for s > 0, so its jump to the data stands in for g:
G = x₀ + s·(x_prev − x₀)/σ_prev, the DDIM (Euler) step from σ_prev to s with x₀ as the denoised
image. γ = 1 is Algorithm 1 above (the same bytes), γ = 0 is deterministic after the start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ncsn.samplers.ode import ode_start
from ncsn.schedule import sigma_batch


@torch.inference_mode()
def consistency_sampler(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    sigma_min: float = 0.0,
    mean: torch.Tensor | None = None,
    x: torch.Tensor | None = None,
    gamma: float = 1.0,
) -> torch.Tensor:
    """Algorithm 1 of Song et al. 2023 over the jump levels ``sigmas`` (descending, σ₁ first,
    no trailing 0); ``sigma_min`` is the model's boundary σ (re-noising adds √(σ² − σ_min²));
    ``mean`` μ and ``x`` as in :func:`ncsn.samplers.ode.heun_sampler`; ``gamma`` the share of
    fresh noise in each re-noising (CTM's γ-sampling, above; 1: Algorithm 1)."""
    if x is None:
        x = ode_start(shape, sigmas[0], generator, mean)
    x0 = x
    for i, sigma in enumerate(sigmas):
        if i > 0:
            z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            noise = math.sqrt(max(sigma**2 - sigma_min**2, 0.0)) * z
            if gamma < 1:  # CTM's G to s = √(1 − γ²)σ along the last jump, then γ of the noise
                s = math.sqrt(1 - gamma**2) * sigma
                x = x0 + (s / sigmas[i - 1]) * (x - x0) + gamma * noise
            else:
                x = x0 + noise
        x0 = model.denoise(x, sigma_batch(sigma, x))
        if callback is not None:
            callback({"x": x0, "i": i, "step": 0, "sigma": sigma, "nfe": i + 1})
    return x0
