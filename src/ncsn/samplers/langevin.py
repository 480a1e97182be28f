"""Langevin dynamics at one level, and annealed Langevin dynamics (Song & Ermon 2019, Alg. 1).

Step convention (design.md §1, docs/conventions.md): the official code's, α_i = ε σ_i²/σ_L² and
x ← x + α_i s_θ(x, σ_i) + √(2α_i) z. The paper writes (α_i/2) s + √α_i z, i.e. its ε is twice
ours; convert with :func:`ncsn.schedule.paper_to_official_step`.

Every sampler has the signature ``sampler(model, shape, sigmas, *, generator, callback=None,
**options) -> Tensor``, draws every random number from ``generator`` and reports the running
number of network evaluations (``nfe``) to ``callback``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ncsn.errors import NCSNError
from ncsn.schedule import sigma_batch


def initial_noise(
    shape: Sequence[int],
    sigma_max: float,
    *,
    generator: torch.Generator,
    init: str = "uniform",
) -> torch.Tensor:
    """The starting point: U[0, 1] noise (the paper) or N(0, σ₁² I) (``init='gaussian'``)."""
    device = generator.device
    if init == "uniform":
        return torch.rand(tuple(shape), generator=generator, device=device)
    if init == "gaussian":
        return sigma_max * torch.randn(tuple(shape), generator=generator, device=device)
    raise NCSNError(f"init = {init!r}: expected 'uniform' or 'gaussian'")


@torch.inference_mode()
def langevin(
    model,
    x: torch.Tensor,
    sigma: float,
    *,
    generator: torch.Generator,
    eps: float,
    n_steps: int,
    callback: Callable[[dict], None] | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    level: int = 0,
    nfe: int = 0,
) -> torch.Tensor:
    """Langevin dynamics at one level σ: x ← x + ε s_θ(x, σ) + √(2ε) z, ``n_steps`` times
    (Song & Ermon 2019, Eq. 4, in our step convention).

    ``project`` maps x after each step (inpainting puts the known pixels back); ``level`` and
    ``nfe`` (the evaluations before this call) are what the callback reports as ``i``/``nfe``.
    """
    sigma_t = sigma_batch(sigma, x)
    for t in range(n_steps):
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + eps * model.score(x, sigma_t) + math.sqrt(2 * eps) * z
        if project is not None:
            x = project(x)
        if callback is not None:
            callback({"x": x, "i": level, "step": t, "sigma": sigma, "nfe": nfe + t + 1})
    return x


@torch.inference_mode()
def annealed_langevin(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    eps: float,
    n_steps_each: int,
    init: str = "uniform",
    denoise_final: bool = True,
    x: torch.Tensor | None = None,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1; our step convention).

    for i = 1..L: α_i = ε σ_i²/σ_L²; repeat T times: x ← x + α_i s_θ(x, σ_i) + √(2α_i) z.
    Then, if ``denoise_final``, x ← x + σ_L² s_θ(x, σ_L) (NCSNv2, the Tweedie denoiser).
    Starts from ``x`` when given, else from :func:`initial_noise`. NFE = L·T (+1).
    """
    if x is None:
        x = initial_noise(shape, sigmas[0], generator=generator, init=init)
    for i, sigma in enumerate(sigmas):
        alpha = eps * (sigma / sigmas[-1]) ** 2
        x = langevin(
            model, x, sigma, generator=generator, eps=alpha, n_steps=n_steps_each,
            callback=callback, level=i, nfe=i * n_steps_each,
        )  # fmt: skip
    if denoise_final:
        x = x + sigmas[-1] ** 2 * model.score(x, sigma_batch(sigmas[-1], x))
        if callback is not None:
            nfe = len(sigmas) * n_steps_each + 1
            callback({"x": x, "i": len(sigmas) - 1, "step": n_steps_each, "sigma": 0.0, "nfe": nfe})
    return x
