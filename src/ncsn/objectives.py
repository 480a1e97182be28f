"""Training objectives: weighted denoising score matching and sliced score matching.

Loss reduction (docs/conventions.md): ½ × sum over dimensions, mean over the batch; one noise
level drawn uniformly per example, so the batch mean estimates (1/L) Σᵢ λ(σᵢ) ℓ(θ; σᵢ).

The score is computed as ``model(x, σ)`` (``ScoreModel.forward`` is ``score``), so a model wrapped
in DistributedDataParallel synchronises its gradients. ``shard = (rank, world)`` draws the levels
and noise of the whole global batch (``world`` × the local one) and keeps this rank's slice, so a
run split over ranks draws exactly what one process with the global batch would.
"""

from __future__ import annotations

import torch

from ncsn.noise_levels import NoiseLevels
from ncsn.schedule import append_dims, sigma_batch


def dsm_loss(
    model,
    x: torch.Tensor,
    sigmas: torch.Tensor | NoiseLevels,
    *,
    generator: torch.Generator,
    power: float = 2.0,
    shard: tuple[int, int] = (0, 1),
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted denoising score matching (Song & Ermon 2019, Eq. 5–6; Vincent 2011).

    x̃ = x + σz; ℓ = ½ ‖s_θ(x̃, σ) + z/σ‖², weighted by λ(σ) = σ^p. ``sigmas`` is the ladder
    (one level drawn uniformly per example) or a :class:`NoiseLevels`, which then says how σ
    is drawn and weighted (``power`` is ignored). With ``labels`` (a class-conditional model)
    the score is s_θ(x̃, σ, y): the same loss per class.
    """
    levels = sigmas if isinstance(sigmas, NoiseLevels) else NoiseLevels(sigmas, power=power)
    sigma, z = _draw(x, levels, generator, shard)
    return (levels.weight(sigma) * dsm_per_example(model, x, z, sigma, labels)).mean()


def dsm_per_example(
    model, x: torch.Tensor, z: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """ℓ = ½ ‖s_θ(x + σz, σ[, y]) + z/σ‖² for each example (unweighted; σ of shape (N,))."""
    s = append_dims(sigma, x.dim())
    score = model(x + s * z, sigma) if labels is None else model(x + s * z, sigma, labels)
    return 0.5 * (score + z / s).pow(2).flatten(1).sum(1)


@torch.no_grad()
def dsm_per_level(
    model,
    x: torch.Tensor,
    sigmas: list[float],
    *,
    generator: torch.Generator,
    power: float = 2.0,
    levels: NoiseLevels | None = None,
    batch_size: int = 256,
) -> list[float]:
    """λ(σᵢ)·ℓ(θ; σᵢ) averaged over ``x`` at every level i, with the same noise z at each (the
    DSM loss of each level; NCSNv2's per-σ test loss, their ``log_all_sigmas``); λ is
    ``levels.weight`` when given, else σ^p. ``x`` is taken ``batch_size`` rows at a time."""
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    out = []
    for sigma in sigmas:
        total = 0.0
        for i in range(0, len(x), batch_size):
            xb, zb = x[i : i + batch_size], z[i : i + batch_size]
            sb = sigma_batch(sigma, xb)
            weight = levels.weight(sb) if levels is not None else sb.pow(power)
            total += float((weight * dsm_per_example(model, xb, zb, sb)).sum())
        out.append(total / len(x))
    return out


def ssm_loss(
    model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator,
    power: float = 2.0,
    projections: int = 1,
    shard: tuple[int, int] = (0, 1),
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sliced score matching, variance-reduced form (Song et al. 2019, Eq. 8 / SSM-VR).

    On perturbed data x̃ at a random level: E_v[vᵀ ∇ₓ(vᵀ s_θ)] + ½ ‖s_θ‖², v ~ N(0, I), averaged
    over ``projections`` directions and weighted by λ(σ) = σ^p. Its minimiser is the score of the
    perturbed density p_σ.
    """
    sigma, z = _draw(x, NoiseLevels(sigmas), generator, shard)
    s = append_dims(sigma, x.dim())
    x_noisy = (x + s * z).detach().requires_grad_(True)
    score = model(x_noisy, sigma) if labels is None else model(x_noisy, sigma, labels)
    trace = torch.zeros_like(sigma)
    rank, world = shard
    for _ in range(projections):
        v = torch.randn(
            (x.shape[0] * world, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype
        ).chunk(world)[rank]
        (grad_v,) = torch.autograd.grad((score * v).sum(), x_noisy, create_graph=True)
        trace = trace + (grad_v * v).flatten(1).sum(1)
    per_example = trace / projections + 0.5 * score.pow(2).flatten(1).sum(1)
    return (sigma.pow(power) * per_example).mean()


def _draw(
    x: torch.Tensor, levels: NoiseLevels, generator: torch.Generator, shard: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One drawn level per example, and the Gaussian noise z (this rank's slice of the global
    batch's draws)."""
    rank, world = shard
    n = x.shape[0] * world
    sigma = levels.draw(n, generator)
    z = torch.randn((n, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
    return sigma.chunk(world)[rank], z.chunk(world)[rank]
