"""Conditional uses of one trained score model: inpainting, denoising, refinement.

- Inpainting (Song & Ermon 2019, Appendix B.3, Algorithm 2): annealed Langevin on the unknown
  pixels while the known ones are held at y + σ_i z̃ (the data perturbed to the current level);
  the result keeps the known pixels exactly.
- Denoising: the Tweedie posterior mean D(y, σ) = y + σ² s_θ(y, σ) (Efron 2011), at a given σ or
  at the maximum-likelihood σ estimated with the model itself (:func:`estimate_sigma`).
- Refinement ("go to data, add a little noise, go back", SDEdit-style, Meng et al. 2022): perturb
  x to σ_start and run annealed Langevin over the part of the ladder at or below σ_start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ncsn.samplers.langevin import annealed_langevin, langevin
from ncsn.schedule import sigma_batch


@torch.inference_mode()
def inpaint(
    model,
    y: torch.Tensor,
    mask: torch.Tensor,
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    eps: float,
    n_steps_each: int,
    callback: Callable[[dict], None] | None = None,
    denoise_final: bool = True,
) -> torch.Tensor:
    """Fill the pixels where ``mask`` is 0, keeping ``y`` where ``mask`` is 1.

    for i = 1..L: ỹ = y + σ_i z̃; α_i = ε σ_i²/σ_L²; repeat T times:
      x ← x + α_i s_θ(x, σ_i) + √(2α_i) z;  x ← ỹ ⊙ m + x ⊙ (1 − m).
    Starts from U[0, 1] on the unknown pixels. Returns y ⊙ m + x ⊙ (1 − m).
    """
    mask = mask.to(y.dtype).expand_as(y)
    x = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    x = y * mask + x * (1 - mask)
    for i, sigma in enumerate(sigmas):
        alpha = eps * (sigma / sigmas[-1]) ** 2
        y_noisy = y + sigma * torch.randn(y.shape, generator=generator, device=y.device)

        def keep_known(x: torch.Tensor, y_noisy=y_noisy) -> torch.Tensor:
            return y_noisy * mask + x * (1 - mask)

        x = langevin(
            model, x, sigma, generator=generator, eps=alpha, n_steps=n_steps_each,
            callback=callback, project=keep_known, level=i, nfe=i * n_steps_each,
        )  # fmt: skip
    if denoise_final:
        x = x + sigmas[-1] ** 2 * model.score(x, sigma_batch(sigmas[-1], x))
    return y * mask + x * (1 - mask)


@torch.inference_mode()
def estimate_sigma(
    model,
    y: torch.Tensor,
    sigmas: Sequence[float],
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per image, the maximum-likelihood noise level σ̂ = argmax_σ log p_σ(y).

    The heat equation gives ∂ log p_σ(y)/∂σ = σ (∇·s + ‖s‖²) with s = ∇ log p_σ. We evaluate
    g(σ) = ∇·s_θ + ‖s_θ‖² on the ladder (divergence by a central finite difference along one
    Rademacher direction, Hutchinson 1989), find where it turns from negative (large σ) to
    non-negative, and interpolate linearly in log σ. 1 + 2 network evaluations per level.
    """
    n = y.shape[0]
    v = torch.randint(0, 2, y.shape, generator=generator, device=y.device).to(y.dtype) * 2 - 1
    g = []
    for sigma in sigmas:
        delta = 1e-3 * sigma
        sigma_t = sigma_batch(sigma, y)
        s = model.score(y, sigma_t)
        ds = model.score(y + delta * v, sigma_t) - model.score(y - delta * v, sigma_t)
        div = (v * ds).flatten(1).sum(1) / (2 * delta)
        g.append(div + s.flatten(1).pow(2).sum(1))
    g = torch.stack(g, 1)  # (N, L), σ descending along dim 1
    log_sigma = torch.log(torch.tensor(sigmas, device=y.device, dtype=y.dtype))
    out = torch.empty(n, device=y.device, dtype=y.dtype)
    for i in range(n):
        up = torch.nonzero(g[i] >= 0)
        k = int(up[0]) if len(up) else len(sigmas)
        if k == 0:
            out[i] = sigmas[0]
        elif k == len(sigmas):
            out[i] = sigmas[-1]
        else:  # root of g between levels k−1 (g < 0) and k (g ≥ 0), linear in log σ
            w = g[i, k - 1] / (g[i, k - 1] - g[i, k])
            out[i] = torch.exp(log_sigma[k - 1] + w * (log_sigma[k] - log_sigma[k - 1]))
    return out


@torch.inference_mode()
def denoise(model, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Tweedie's posterior mean E[x | y] = y + σ² s_θ(y, σ)."""
    return model.denoise(y, sigma)


def refine(
    model,
    x: torch.Tensor,
    sigmas: Sequence[float],
    sigma_start: float,
    *,
    generator: torch.Generator,
    eps: float,
    n_steps_each: int,
    callback: Callable[[dict], None] | None = None,
    denoise_final: bool = True,
) -> torch.Tensor:
    """Perturb ``x`` to σ_start and run annealed Langevin over the ladder levels ≤ σ_start.

    The step keeps the full ladder's convention (α_i = ε σ_i²/σ_L²)."""
    ladder = [s for s in sigmas if s <= sigma_start * (1 + 1e-6)] or [sigmas[-1]]
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return annealed_langevin(
        model,
        x.shape,
        ladder,
        generator=generator,
        callback=callback,
        eps=eps,
        n_steps_each=n_steps_each,
        denoise_final=denoise_final,
        x=x + sigma_start * z,
    )
