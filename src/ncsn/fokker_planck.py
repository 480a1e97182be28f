"""Fokker–Planck consistency of a noise-conditional score, and the regulariser built on it.

The perturbed densities p_σ = p_data ∗ N(0, σ²I) of the variance-exploding process solve the
heat equation ∂p/∂σ = σ Δp, so log p_σ solves ∂ℓ/∂σ = σ(Δℓ + ‖∇ℓ‖²) and the score s = ∇ℓ the
score Fokker–Planck equation (Lai et al. 2023, "FP-Diffusion", §3, with drift f = 0 and
g² = dσ²/dt):

    ∂s/∂σ = σ ∇ₓ(∇·s + ‖s‖²).

Between neighbouring levels σ_a > σ_b we take the residual at σ_m = (σ_a + σ_b)/2 on x ~ p_σm:

    r = [s(x, σ_a) − s(x, σ_b)] / (σ_a − σ_b) − σ_m ∇ₓ(∇·s + ‖s‖²)(x, σ_m),

a central difference in σ (error O((σ_a − σ_b)²)), with the divergence from Hutchinson's
estimator vᵀ(∂s/∂x)v, v Rademacher (Hutchinson 1990; exact when ∂s/∂x is diagonal). The exact
score of any distribution has r → 0 as the levels get closer; a network's r measures how far its
levels disagree with one another. The regulariser is σ_m⁴ · ½‖r‖² (r scales as 1/σ², so every
level contributes O(1), as λ(σ) = σ² does for the DSM loss), averaged over examples with one
random neighbouring pair each. It needs second derivatives of the network (double backward):
about 3 forward and 3 backward passes per example, so ``train.fp_examples`` keeps it to part of
each batch.
"""

from __future__ import annotations

import torch


def residual(
    model,
    x0: torch.Tensor,
    sigma_a: torch.Tensor,
    sigma_b: torch.Tensor,
    *,
    generator: torch.Generator,
    probes: int = 1,
    create_graph: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual r (shape of ``x0``) and σ_m, per example, for levels σ_a > σ_b (shape (N,))."""
    view = (-1, *([1] * (x0.dim() - 1)))
    sigma_m = 0.5 * (sigma_a + sigma_b)
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x = (x0 + sigma_m.view(view) * z).detach().requires_grad_(True)
    ds = (model(x, sigma_a) - model(x, sigma_b)) / (sigma_a - sigma_b).view(view)
    score = model(x, sigma_m)
    phi = score.pow(2).flatten(1).sum(1)  # ‖s‖²
    for _ in range(probes):
        v = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
        (jv,) = torch.autograd.grad((score * v).sum(), x, create_graph=True)
        phi = phi + (jv * v).flatten(1).sum(1) / probes  # Hutchinson: E[vᵀJv] = ∇·s
    (grad_phi,) = torch.autograd.grad(phi.sum(), x, create_graph=create_graph)
    return ds - sigma_m.view(view) * grad_phi, sigma_m


def regulariser(
    model, x0: torch.Tensor, sigmas: torch.Tensor, *, generator: torch.Generator, probes: int = 1
) -> torch.Tensor:
    """Mean over ``x0`` of σ_m⁴ · ½‖r‖², one uniformly drawn neighbouring pair (σᵢ, σᵢ₊₁) each."""
    index = torch.randint(len(sigmas) - 1, (x0.shape[0],), generator=generator, device=x0.device)
    r, sigma_m = residual(
        model, x0, sigmas[index], sigmas[index + 1], generator=generator, probes=probes
    )
    return (sigma_m.pow(4) * 0.5 * r.pow(2).flatten(1).sum(1)).mean()
