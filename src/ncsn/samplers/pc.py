"""Predictor–corrector sampling for the variance-exploding SDE (Song et al. 2021, Algorithm 2).

The predictor comes first at each step, then the correctors, as in the paper's algorithm
(the official code does the same for VE). Predictor: reverse diffusion from σ_{k} to σ_{k+1}.
Corrector: Langevin dynamics at σ_{k+1} with the step from the signal-to-noise ratio r
(Algorithm 4 with α = 1): ε = 2 (r ‖z‖ / ‖s‖)², with ‖·‖ the batch mean of the per-example norms
as in the official code (per-example norms make ε explode wherever one example's score is near
zero, e.g. at a mode in low dimension).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ncsn.schedule import sigma_batch


def _mean_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).mean()


@torch.inference_mode()
def pc_sampler(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    n_correctors: int = 1,
    snr: float = 0.16,
    denoise_final: bool = True,
    x: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reverse-diffusion predictor + Langevin corrector over descending ``sigmas``.

    x ~ N(0, σ₀² I); for k = 0..K−2:
      predictor  x ← x + (σ_k² − σ_{k+1}²) s_θ(x, σ_k) + √(σ_k² − σ_{k+1}²) z
      corrector  M times: ε = 2 (r‖z‖/‖s_θ(x, σ_{k+1})‖)², x ← x + ε s + √(2ε) z
      (norms averaged over the batch)
    and finally, if ``denoise_final``, the Tweedie step x ← x + σ_{K−1}² s_θ(x, σ_{K−1}).
    NFE = (K − 1)(1 + M) + 1.
    """
    device = generator.device
    if x is None:
        x = sigmas[0] * torch.randn(tuple(shape), generator=generator, device=device)
    nfe = 0

    def score(x: torch.Tensor, sigma: float) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        return model.score(x, sigma_batch(sigma, x))

    def noise() -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    for k in range(len(sigmas) - 1):
        var = sigmas[k] ** 2 - sigmas[k + 1] ** 2
        x = x + var * score(x, sigmas[k]) + math.sqrt(var) * noise()
        for _ in range(n_correctors):
            s = score(x, sigmas[k + 1])
            z = noise()
            eps = 2 * (snr * _mean_norm(z) / _mean_norm(s).clamp_min(1e-12)) ** 2
            x = x + eps * s + torch.sqrt(2 * eps) * z
        if callback is not None:
            callback({"x": x, "i": k + 1, "step": 0, "sigma": sigmas[k + 1], "nfe": nfe})
    if denoise_final:
        x = x + sigmas[-1] ** 2 * score(x, sigmas[-1])
        if callback is not None:
            callback({"x": x, "i": len(sigmas) - 1, "step": 1, "sigma": 0.0, "nfe": nfe})
    return x
