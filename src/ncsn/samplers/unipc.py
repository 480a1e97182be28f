"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models"), in data-prediction form for the variance-exploding probability-flow ODE
(α = 1, λ = −ln σ, as :mod:`ncsn.samplers.multistep`), with B(h) = e^h − 1 ("bh2", the paper's
choice for few steps; Zhao et al. 2023, §3.3 and App. C).

Each step i (σ_i → σ_{i+1}, h = λ_{i+1} − λ_i) evaluates D_i = D(x_i, σ_i) once, then
1. UniC corrects x_i with D_i (Alg. 2's corrector; for i > 0): the same update that predicted
   x_i from x_{i−1}, with D_i as one more node, raises its order by one at no extra evaluation;
2. UniP predicts x_{i+1} from the corrected x_i with D_i, D_{i−1}, … (Alg. 1/2's predictor, of
   order min(i + 1, ``order``): lower orders while the history fills).

The stored D_i is the one at the uncorrected x_i, as in the paper's implementation (diffusers'
``UniPCMultistepScheduler``, k-diffusion's ``sample_unipc``), so N levels still cost N
evaluations; the step to σ = 0 is x = D (λ = ∞ leaves no finite step), which no correction of
x would change, so that one is skipped. UniP of order 2 with bh2 is DPM-Solver++(2M) (Zhao et
al. 2023, App. C): the difference from :func:`ncsn.samplers.multistep.dpmpp_2m_sampler` is the
corrector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ncsn.errors import NCSNError
from ncsn.samplers.multistep import denoise
from ncsn.samplers.ode import ode_start

MAX_ORDER = 3  # predictor order; UniPC-3 is the order diff-sampler's table reports at 10 NFE
ORDER = 2  # the default (diffusers' UniPCMultistepScheduler's); options.UniPC.order reads it


def unipc_coefficients(rs: Sequence[float], h: float) -> list[float]:
    """ρ of the update x_{i+1} = (σ_{i+1}/σ_i) x_i − (e^{−h} − 1) D_i − B(h) Σ_k ρ_k D1_k,
    D1_k = (D_{(k)} − D_i)/r_k, r_k = (λ_{(k)} − λ_i)/h the relative positions ``rs`` of the
    other nodes (earlier evaluations: r_k < 0; the corrector's new one: r = 1, last).
    ρ solves R ρ = g (Zhao et al. 2023, Alg. 2 with B(h) = e^h − 1), R_{jk} = r_k^{j−1},
    g_j = j! φ_j / B(h) for j = 1…p, in data prediction (hh = −h) with φ_1 = (e^{hh} − 1)/hh − 1,
    φ_{j+1} = φ_j/hh − 1/(j + 1)!, B(h) = e^{hh} − 1. One node takes ρ = ½ instead of the solve
    (the paper's UniP-2, which is DPM-Solver++(2M), and UniC-1)."""
    p = len(rs)
    if p == 1:
        return [0.5]
    hh = -h
    b_h = math.expm1(hh)
    phi = math.expm1(hh) / hh - 1
    g, factorial = [], 1
    for j in range(1, p + 1):
        g.append(phi * factorial / b_h)
        factorial *= j + 1
        phi = phi / hh - 1 / factorial
    r = np.array(rs, dtype=np.float64)
    matrix = np.stack([r**j for j in range(p)])
    return [float(v) for v in np.linalg.solve(matrix, np.array(g))]


def _update(x, sigma, sigma_next, h, denoised, others, rs, rhos):
    """(σ_{i+1}/σ_i) x − (e^{−h} − 1) D_i − B(h) Σ_k ρ_k (D_{(k)} − D_i)/r_k, α = 1."""
    b_h = math.expm1(-h)
    x = (sigma_next / sigma) * x - b_h * denoised
    for rho, d, r in zip(rhos, others, rs, strict=True):
        x = x - (b_h * rho / r) * (d - denoised)
    return x


@torch.inference_mode()
def unipc_sampler(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    order: int = ORDER,
    x: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """UniPC-``order`` with B(h) = e^h − 1 on ``sigmas`` (descending; a last level of 0 is
    reached by x = D). Starts, like the other ODE samplers, from x₀ = μ + σ₀ z. NFE =
    len(sigmas) − 1. ``order`` 1 is DDIM with UniC-1 corrections."""
    if not 1 <= order <= MAX_ORDER:
        raise NCSNError(f"unipc order {order!r}: expected an integer from 1 to {MAX_ORDER}")
    t = sigmas
    lam = [-math.log(s) if s > 0 else math.inf for s in t]
    if x is None:
        x = ode_start(shape, t[0], generator, mean)
    ds: list[torch.Tensor] = []  # D_i, D_{i−1}, … at the uncorrected x's
    x_prev, p_prev = None, 0
    for i in range(len(t) - 1):
        d = denoise(model, x, t[i])
        if p_prev and t[i + 1] > 0:  # UniC: redo the step that gave x, D_i the node at r = 1
            h = lam[i] - lam[i - 1]
            rs = [(lam[i - 1 - k] - lam[i - 1]) / h for k in range(1, p_prev)]
            rhos = unipc_coefficients([*rs, 1.0], h)
            x = _update(x_prev, t[i - 1], t[i], h, ds[0], [*ds[1:p_prev], d], [*rs, 1.0], rhos)
        ds = [d, *ds][:order]
        if t[i + 1] == 0:
            x = d
        else:
            p = min(i + 1, order)
            h = lam[i + 1] - lam[i]
            rs = [(lam[i - k] - lam[i]) / h for k in range(1, p)]
            rhos = unipc_coefficients(rs, h) if rs else []
            x_prev, p_prev = x, p
            x = _update(x, t[i], t[i + 1], h, d, ds[1:p], rs, rhos)
        if callback is not None:
            callback({"x": x, "i": i, "step": 0, "sigma": t[i + 1], "nfe": i + 1})
    return x
