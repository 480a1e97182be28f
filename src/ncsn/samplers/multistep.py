"""Multistep solvers of the variance-exploding probability-flow ODE dx/dσ = (x − D(x, σ))/σ
(Karras et al. 2022, Eq. 3 with σ(t) = t): one denoiser evaluation per step, the earlier ones
reused, so N noise levels cost N evaluations where Heun's method costs 2N − 1.

- :func:`ipndm_sampler`: iPNDM (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with
  Exponential Integrator": PNDM with its Runge–Kutta warm-up replaced by lower-order
  Adams–Bashforth steps) on d = (x − D)/σ, in the variable-step form for non-uniform ladders
  (coefficients from the actual steps, cf. "iPNDM_v" in Zhou et al. 2024's diff-sampler).
- :func:`dpmpp_2m_sampler`: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2),
  in data-prediction form with α = 1 and λ = −ln σ.
- :func:`dpmpp_2m_sde_sampler`: its stochastic variant (Lu et al. 2022, "SDE-DPM-Solver++(2M)";
  k-diffusion's ``sample_dpmpp_2m_sde``, midpoint form).

All take ``sigmas`` descending; a last level of 0 is reached with the stored evaluations (no
evaluation at σ = 0). They start, like :func:`ncsn.samplers.ode.heun_sampler`, from
x₀ = μ + σ₀ z (``mean`` = μ; ``x`` overrides the start).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ncsn.samplers.ode import derivative, ode_start
from ncsn.schedule import sigma_batch

MAX_ORDER = 4  # iPNDM's highest order (Zhang & Chen 2023 use 4)

# Gauss–Legendre nodes and weights on [0, 1]: exact for the cubic Lagrange basis below.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(MAX_ORDER)
_GL_NODES, _GL_WEIGHTS = 0.5 * (_GL_NODES + 1), 0.5 * _GL_WEIGHTS


def adams_bashforth_coefficients(ts: Sequence[float], t_next: float) -> list[float]:
    """b_j with x(t_next) ≈ x(t₀) + h Σⱼ b_j f(t_j), h = t_next − t₀, for past nodes
    ``ts`` = (t₀, t₋₁, …): b_j = (1/h) ∫_{t₀}^{t_next} ℓ_j(t) dt, ℓ_j the Lagrange basis on
    ``ts`` (variable-step Adams–Bashforth; Hairer, Nørsett & Wanner, "Solving ODEs I", §III.5).
    In u = (t − t₀)/h the integral runs over [0, 1], computed exactly by Gauss–Legendre."""
    h = t_next - ts[0]
    u = [(t - ts[0]) / h for t in ts]
    coefficients = []
    for j, u_j in enumerate(u):
        basis = np.ones_like(_GL_NODES)
        for m, u_m in enumerate(u):
            if m != j:
                basis = basis * (_GL_NODES - u_m) / (u_j - u_m)
        coefficients.append(float((_GL_WEIGHTS * basis).sum()))
    return coefficients


@torch.inference_mode()
def ipndm_sampler(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    max_order: int = MAX_ORDER,
    x: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """iPNDM (Zhang & Chen 2023): x_{i+1} = x_i + (σ_{i+1} − σ_i) Σⱼ b_j d_{i−j}, with
    d_i = (x_i − D(x_i, σ_i))/σ_i and the variable-step Adams–Bashforth coefficients b of the
    actual σ steps (:func:`adams_bashforth_coefficients`), of order min(i + 1, ``max_order``):
    the first steps warm up at lower order instead of PNDM's Runge–Kutta steps. With equal steps
    b is the classic (3, −1)/2, (23, −16, 5)/12, (55, −59, 37, −9)/24. The step to σ = 0 uses
    the stored d's. NFE = len(sigmas) − 1: N for N levels ending at σ = 0."""
    t = sigmas
    if x is None:
        x = ode_start(shape, t[0], generator, mean)
    ds: list[torch.Tensor] = []
    for i in range(len(t) - 1):
        ds = [derivative(model, x, t[i]), *ds][:max_order]  # d_i, d_{i−1}, …
        b = adams_bashforth_coefficients([t[i - j] for j in range(len(ds))], t[i + 1])
        x = x + (t[i + 1] - t[i]) * sum(b_j * d_j for b_j, d_j in zip(b, ds, strict=True))
        if callback is not None:
            callback({"x": x, "i": i, "step": 0, "sigma": t[i + 1], "nfe": i + 1})
    return x


def denoise(model, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """D(x, σ) with one σ per example (the data prediction of DPM-Solver++ and UniPC)."""
    return model.denoise(x, sigma_batch(sigma, x))


@torch.inference_mode()
def dpmpp_2m_sampler(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    x: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) for α = 1, λ = −ln σ, h_i = λ_{i+1} − λ_i:
    x_{i+1} = (σ_{i+1}/σ_i) x_i − (e^{−h_i} − 1) D̃_i with D̃_i = (1 + 1/(2r)) D_i − D_{i−1}/(2r),
    r = h_{i−1}/h_i; the first step is first order (D̃ = D_0, DDIM) and the step to σ = 0 is
    x = D (the data prediction at σ = 0). NFE = len(sigmas) − 1."""
    return _dpmpp_2m(model, shape, sigmas, generator, callback, 0.0, x, mean)


@torch.inference_mode()
def dpmpp_2m_sde_sampler(
    model,
    shape: Sequence[int],
    sigmas: Sequence[float],
    *,
    generator: torch.Generator,
    callback: Callable[[dict], None] | None = None,
    eta: float = 1.0,
    x: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022; k-diffusion's ``sample_dpmpp_2m_sde``,
    midpoint form) with noise share η = ``eta``:
    x_{i+1} = (σ_{i+1}/σ_i) e^{−ηh} x_i + (1 − e^{−(1+η)h}) D_i
    + ½ (1 − e^{−(1+η)h}) (D_i − D_{i−1})/r + σ_{i+1} √(1 − e^{−2ηh}) z,
    z ~ N(0, I) from ``generator`` (k-diffusion draws from a Brownian tree; its increments over
    disjoint steps are the same independent normals); the correction is left out on the first
    step, and the step to σ = 0 is x = D. η = 0 is :func:`dpmpp_2m_sampler`'s update written
    in midpoint form. NFE = len(sigmas) − 1."""
    return _dpmpp_2m(model, shape, sigmas, generator, callback, eta, x, mean)


def _dpmpp_2m(model, shape, sigmas, generator, callback, eta, x, mean) -> torch.Tensor:
    t = sigmas
    if x is None:
        x = ode_start(shape, t[0], generator, mean)
    denoised_prev, h_prev = None, None
    for i in range(len(t) - 1):
        denoised = denoise(model, x, t[i])
        if t[i + 1] == 0:
            x = denoised
        else:
            h = math.log(t[i]) - math.log(t[i + 1])  # λ_{i+1} − λ_i with λ = −ln σ
            if eta == 0:
                x = _dpmpp_2m_step(x, denoised, denoised_prev, t[i], t[i + 1], h, h_prev)
            else:
                x = _dpmpp_2m_sde_step(x, denoised, denoised_prev, t[i], t[i + 1], h, h_prev, eta)
                z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = x + t[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)) * z
            h_prev = h
        denoised_prev = denoised
        if callback is not None:
            callback({"x": x, "i": i, "step": 0, "sigma": t[i + 1], "nfe": i + 1})
    return x


def _dpmpp_2m_step(x, denoised, denoised_prev, sigma, sigma_next, h, h_prev):
    """Lu et al. 2022, Algorithm 2's update with α = 1 (−(e^{−h} − 1) = −expm1(−h))."""
    if denoised_prev is not None:
        r = h_prev / h
        denoised = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * denoised_prev
    return (sigma_next / sigma) * x - math.expm1(-h) * denoised


def _dpmpp_2m_sde_step(x, denoised, denoised_prev, sigma, sigma_next, h, h_prev, eta):
    """The deterministic part of k-diffusion's ``sample_dpmpp_2m_sde`` (midpoint), α = 1."""
    decay = -math.expm1(-h - eta * h)  # 1 − e^{−(1+η)h}
    x = (sigma_next / sigma) * math.exp(-eta * h) * x + decay * denoised
    if denoised_prev is not None:
        x = x + 0.5 * decay * (h / h_prev) * (denoised - denoised_prev)  # 1/r = h_i/h_{i−1}
    return x
