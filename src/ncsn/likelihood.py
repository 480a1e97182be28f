"""Log-likelihood through the variance-exploding probability-flow ODE (Song et al. 2021,
"Score-Based Generative Modeling through SDEs", §4.3 and App. D.2).

With σ as time, the probability-flow ODE is dx/dσ = −σ s_θ(x, σ) (Karras et al. 2022, Eq. 3
with σ(t) = t), and the instantaneous change of variables (Chen et al. 2018, Thm. 1; Song et
al. 2021, Eq. 39) gives d log p_σ(x(σ))/dσ = −∇ₓ·(−σ s_θ) = σ ∇ₓ·s_θ(x(σ), σ). Integrated
from the data at σ_min up to σ₁:

    log p_σmin(x) = log π(x(σ₁)) − ∫_{σmin}^{σ₁} σ ∇ₓ·s_θ(x(σ), σ) dσ,    π = N(μ, σ₁² I),

μ the training data's mean recorded in the run. The integration always runs from σ_min up to
σ₁: there is no direction to choose, so it cannot be run the wrong way (score_sde users who did
got ≈ 31 bits/dim). π stands in for p_σ₁ = p_data ∗ N(0, σ₁² I); what that costs is reported
as ``prior_gap`` (see :func:`prior_gap`), not hidden. Conventions (bits/dim, dequantization,
the σ_min term): docs/conventions.md, "Likelihood".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.integrate
import torch

from ncsn.devices import model_device
from ncsn.errors import NCSNError
from ncsn.nets.refinenet import RefineNet
from ncsn.schedule import geometric_sigmas, karras_sigmas, sigma_batch

SOLVERS = ("heun", "rk45")
LADDERS = ("karras", "loguniform")
PROBES = ("rademacher", "gaussian")
EXACT_MAX_DIM = 256  # --divergence exact costs D backward passes per evaluation: the toy lab


@dataclass
class Likelihood:
    """log p_σmin(x) per example (nats, float64) and its parts: ``prior`` = log π(x(σ₁)),
    ``integral`` = ∫ σ ∇·s dσ (so ``log_p = prior − integral``); ``nfe`` network evaluations
    (each with its divergence), ``dims`` = D, ``prior_gap`` (nats per example) and what ran."""

    log_p: torch.Tensor
    prior: torch.Tensor
    integral: torch.Tensor
    nfe: int
    dims: int
    prior_gap: float
    settings: dict = field(default_factory=dict)


def log_likelihood(
    model,
    x: torch.Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    mean: torch.Tensor | None = None,
    generator: torch.Generator,
    divergence: str = "hutchinson",
    probes: int = 1,
    probe: str = "rademacher",
    solver: str = "rk45",
    steps: int = 160,
    ladder: str = "karras",
    rho: float = 7.0,
    rtol: float = 1e-4,
    atol: float = 1e-4,
) -> Likelihood:
    """log p_σmin(x) of the batch ``x`` under ``model`` (anything with ``score(x, σ)``).

    ``divergence``: ``hutchinson`` (Hutchinson 1989: ∇·s ≈ (1/K) Σ_k ε_kᵀ ∂s/∂x ε_k, the K =
    ``probes`` probes ε_k drawn once per example from ``generator`` and kept for the whole
    path, as score_sde does) or ``exact`` (one backward pass per dimension, D ≤ 256).
    ``solver``: ``heun`` (``steps`` Heun steps over a ``ladder`` of σ_min → σ₁, 2·steps NFE on
    every example and every rank, whatever the data) or ``rk45`` (scipy's adaptive
    Runge–Kutta 4(5), Dormand & Prince 1980, in t = ln σ with ``rtol``/``atol``; its steps depend
    on the batch, so under several processes use ``heun``). The defaults are where MNIST
    bits/dim stopped moving (docs/benchmarks.md): RK45 at 1e-4, or 160 Heun steps.
    """
    check_settings(
        model,
        x,
        divergence=divergence,
        probes=probes,
        probe=probe,
        solver=solver,
        steps=steps,
        ladder=ladder,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
    )
    x = x.detach().float()
    dims = x[0].numel()
    eps = None
    if divergence == "hutchinson":
        eps = draw_probes((probes, *x.shape), probe, generator).to(x.device)
    start = time.perf_counter()
    if solver == "heun":
        ladder_values = ascending_ladder(sigma_min, sigma_max, steps, ladder, rho)
        x1, integral, nfe = _heun(model, x, ladder_values, eps)
    else:
        x1, integral, nfe = _rk45(model, x, sigma_min, sigma_max, eps, rtol, atol)
    prior = gaussian_log_prob(x1, mean, sigma_max)
    settings = {
        "solver": solver,
        "steps": steps if solver == "heun" else None,
        "ladder": ladder if solver == "heun" else None,
        "rho": rho if solver == "heun" and ladder == "karras" else None,
        "rtol": rtol if solver == "rk45" else None,
        "atol": atol if solver == "rk45" else None,
        "divergence": divergence,
        "probes": probes if divergence == "hutchinson" else None,
        "probe": probe if divergence == "hutchinson" else None,
        "sigma_min": sigma_min,
        "sigma_max": sigma_max,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return Likelihood(
        log_p=prior - integral,
        prior=prior,
        integral=integral,
        nfe=nfe,
        dims=dims,
        prior_gap=prior_gap(x, sigma_max),
        settings=settings,
    )


def bits_per_dim(log_p: torch.Tensor, dims: int, levels: int = 256) -> torch.Tensor:
    """Bits per dimension of ``levels``-level data from log-densities on the [0, 1] scale:
    bpd = (−log p(x)/D + ln levels) / ln 2 (the density on the 0…levels scale is p/levels^D;
    docs/conventions.md, "Likelihood"). With uniformly dequantized x, an upper bound on the
    discrete model's code length (Theis et al. 2016)."""
    return (-log_p / dims + math.log(levels)) / math.log(2.0)


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform dequantization (Theis et al. 2016), the training data's convention
    (data/dataset.py): an example at level k of ``levels`` (x = k/(levels − 1)) becomes
    (k + u)/levels, u ~ U[0, 1) from ``generator``."""
    k = torch.round(x * (levels - 1))
    u = torch.rand(x.shape, generator=generator, device=generator.device).to(x.device)
    return (k + u) / levels


def draw_probes(shape: tuple[int, ...], kind: str, generator: torch.Generator) -> torch.Tensor:
    """Hutchinson probes of ``shape`` (K, N, …): Rademacher ±1 or standard Gaussian; both have
    E[εεᵀ] = I, Rademacher with the smaller variance (Hutchinson 1989)."""
    if kind == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=generator.device)
        return bits.float() * 2 - 1
    return torch.randn(shape, generator=generator, device=generator.device)


def ascending_ladder(
    sigma_min: float, sigma_max: float, steps: int, ladder: str, rho: float = 7.0
) -> list[float]:
    """The ``steps`` + 1 σ values σ_min → σ₁ the Heun solver steps through: Karras et al.'s ρ
    spacing (their Eq. 5, without the final 0, reversed) or uniform in ln σ."""
    if ladder == "karras":
        return karras_sigmas(sigma_max, sigma_min, steps + 1, rho)[:-1][::-1]
    return geometric_sigmas(sigma_max, sigma_min, steps + 1)[::-1]


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor | None, sigma: float) -> torch.Tensor:
    """log N(x; μ, σ² I) per example, in float64: −(D/2) ln(2πσ²) − ‖x − μ‖²/(2σ²)."""
    x = x.double().flatten(1)
    if mean is not None:
        x = x - mean.double().flatten().to(x.device)
    d = x.shape[1]
    return -0.5 * d * math.log(2 * math.pi * sigma**2) - (x * x).sum(1) / (2 * sigma**2)


def prior_gap(x: torch.Tensor, sigma_max: float) -> float:
    """What π = N(μ, σ₁² I) misses of p_σ₁, in nats per example: KL(N(μ, (σ₁² + v) I) ‖
    N(μ, σ₁² I)) = (D/2)(r − ln(1 + r)), r = v/σ₁², v the data's variance per dimension (here
    of the batch). A moment-matched stand-in for p_σ₁, so an order of magnitude, not a bound:
    negligible when σ₁ dwarfs the data's spread (MNIST: ≈ 1e-4 nats), large when it does not."""
    flat = x.double().flatten(1)
    v = float(flat.var(0, unbiased=False).mean()) if len(flat) > 1 else 0.0
    r = v / sigma_max**2
    return 0.5 * flat.shape[1] * (r - math.log1p(r))


def check_settings(
    model, x, *, divergence, probes, probe, solver, steps, ladder, sigma_min, sigma_max
) -> None:
    """Refuse, before any work, what cannot be computed (one line naming the setting)."""
    if any(isinstance(m, RefineNet) for m in _modules(model)):
        raise NCSNError(
            "likelihood: the run's network is the RefineNet (model.net = refinenet), conditioned "
            "on the level index, so it cannot be queried between its ladder's levels as the "
            "likelihood ODE needs; use a network conditioned on σ (unet, mlp)"
        )
    if divergence not in ("hutchinson", "exact"):
        raise NCSNError(f"divergence {divergence!r}: expected 'hutchinson' or 'exact'")
    if solver not in SOLVERS:
        raise NCSNError(f"solver {solver!r}: expected one of {', '.join(SOLVERS)}")
    if ladder not in LADDERS:
        raise NCSNError(f"ladder {ladder!r}: expected one of {', '.join(LADDERS)}")
    if probe not in PROBES:
        raise NCSNError(f"probe {probe!r}: expected one of {', '.join(PROBES)}")
    if divergence == "hutchinson" and probes < 1:
        raise NCSNError(f"probes = {probes}: expected at least 1 Hutchinson probe")
    if solver == "heun" and steps < 1:
        raise NCSNError(f"steps = {steps}: expected at least 1 Heun step")
    if not 0 < sigma_min < sigma_max:
        raise NCSNError(f"σ_min = {sigma_min}, σ₁ = {sigma_max}: expected 0 < σ_min < σ₁")
    if divergence == "exact" and x[0].numel() > EXACT_MAX_DIM:
        raise NCSNError(
            f"divergence 'exact' needs one backward pass per dimension: the data have "
            f"{x[0].numel()} > {EXACT_MAX_DIM}; use 'hutchinson'"
        )


def _modules(model):
    return model.modules() if hasattr(model, "modules") else ()


def _field(model, x: torch.Tensor, sigma: float, eps: torch.Tensor | None):
    """(dx/dσ, d(integral)/dσ) = (−σ s_θ(x, σ), σ ∇ₓ·s_θ(x, σ)) at one σ for the batch: the
    divergence by Hutchinson's probes ``eps`` (K, N, …) or, when None, exactly."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        s = model.score(xg, sigma_batch(sigma, xg))
        if eps is not None:
            div = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
            for k in range(eps.shape[0]):
                (g,) = torch.autograd.grad(s, xg, eps[k], retain_graph=k + 1 < eps.shape[0])
                div += (g * eps[k]).flatten(1).sum(1).double()
            div /= eps.shape[0]
        else:  # ∇·s = Σ_i ∂s_i/∂x_i, one backward pass per dimension
            flat = s.flatten(1)
            div = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
            for i in range(flat.shape[1]):
                (g,) = torch.autograd.grad(flat[:, i].sum(), xg, retain_graph=True)
                div += g.flatten(1)[:, i].double()
    return (-sigma * s).detach(), sigma * div


def _heun(model, x, ladder, eps):
    """Heun's method on (x, integral) over the ascending ``ladder``: 2 evaluations per step."""
    integral = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    nfe = 0
    for lo, hi in zip(ladder[:-1], ladder[1:], strict=True):
        h = hi - lo
        f, g = _field(model, x, lo, eps)
        x_pred = x + h * f
        f2, g2 = _field(model, x_pred, hi, eps)
        x = x + 0.5 * h * (f + f2)
        integral = integral + 0.5 * h * (g + g2)
        nfe += 2
    return x, integral, nfe


def _rk45(model, x, sigma_min, sigma_max, eps, rtol, atol):
    """scipy's RK45 on (x, integral) in t = ln σ, where dx/dt = σ dx/dσ = −σ² s and the
    integrand is σ² ∇·s: the path spans orders of magnitude of σ, evenly in t. One solve for
    the whole batch (the adaptive steps follow its worst example)."""
    shape, n = x.shape, x.shape[0]
    nfe = 0

    def rhs(t: float, state: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        sigma = math.exp(t)
        xt = torch.from_numpy(state[:-n]).reshape(shape).to(x.device, torch.float32)
        f, g = _field(model, xt, sigma, eps)
        return np.concatenate(
            [(sigma * f).double().cpu().numpy().ravel(), (sigma * g).cpu().numpy()]
        )

    state0 = np.concatenate([x.double().cpu().numpy().ravel(), np.zeros(n)])
    sol = scipy.integrate.solve_ivp(
        rhs,
        (math.log(sigma_min), math.log(sigma_max)),
        state0,
        method="RK45",
        rtol=rtol,
        atol=atol,
    )
    if not sol.success:
        raise NCSNError(f"likelihood: RK45 failed ({sol.message}); try --solver heun")
    end = sol.y[:, -1]
    x1 = torch.from_numpy(end[:-n]).reshape(shape).float().to(x.device)
    return x1, torch.from_numpy(end[-n:]).to(x.device), nfe


@dataclass
class ImageScores:
    """Per-example results of :func:`score_examples`: ``nats`` (log p averaged over the K
    dequantizations), ``bits_per_dim`` (None for continuous data or K = 0), and totals."""

    nats: torch.Tensor
    bits_per_dim: torch.Tensor | None
    nfe: int
    dims: int
    prior_gap: float
    seconds: float
    settings: dict


def score_examples(
    model,
    examples: torch.Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    mean: torch.Tensor | None = None,
    levels: int | None = None,
    dequantizations: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    progress=None,
    **options,
) -> ImageScores:
    """log p and bits/dim of each of ``examples`` (float, on the [0, 1] scale for images).

    ``levels`` (256 for 8-bit images) with ``dequantizations`` = K ≥ 1: each example is
    dequantized K times (:func:`dequantize`) and its log p is the mean over the K draws, an
    estimate of E_u[log p(x + u)] ≤ log P(x) (the Jensen bound score_sde reports); its bits/dim
    follow from :func:`bits_per_dim`. ``levels`` None or K = 0: the continuous density at the
    examples as given (no bits/dim: without dequantization a density on a discrete set grows
    without bound and "bits/dim" can be negative, yang-song/score_sde#24). One generator seeded
    with ``seed`` draws, batch after batch, the dequantization noise then the probes, so the
    same seed gives the same values. ``options`` go to :func:`log_likelihood`. K defaults to 1
    for discrete data, 0 for continuous data.
    """
    if dequantizations is None:
        dequantizations = int(levels is not None)
    if dequantizations < 0:
        raise NCSNError(f"dequantizations = {dequantizations}: expected 0 or more")
    if dequantizations > 0 and levels is None:
        raise NCSNError(
            "dequantization needs discrete data (8-bit images); these examples are continuous: "
            "use 0 dequantizations"
        )
    discrete = levels is not None and dequantizations > 0
    draws = max(dequantizations, 1)
    device = model_device(model)
    gen = torch.Generator(device).manual_seed(seed)
    nats, nfe, gaps, start = [], 0, [], time.perf_counter()
    result = None
    for i in range(0, len(examples), batch_size):
        x = examples[i : i + batch_size].to(device).float()
        total = torch.zeros(len(x), dtype=torch.float64, device=device)
        for _ in range(draws):
            xi = dequantize(x, levels, gen) if discrete else x
            result = log_likelihood(
                model,
                xi,
                sigma_min=sigma_min,
                sigma_max=sigma_max,
                mean=mean,
                generator=gen,
                **options,
            )
            total += result.log_p
            nfe = max(nfe, result.nfe)
            gaps.append(result.prior_gap)
        nats.append((total / draws).cpu())
        if progress is not None:
            progress(len(x))
    nats = torch.cat(nats)
    dims = examples[0].numel()
    settings = dict(result.settings) if result is not None else {}
    settings.pop("seconds", None)
    settings |= {
        "dequantizations": dequantizations if discrete else 0,
        "levels": levels,
        "batch_size": batch_size,
        "seed": seed,
    }
    return ImageScores(
        nats=nats,
        bits_per_dim=bits_per_dim(nats, dims, levels) if discrete else None,
        nfe=nfe,
        dims=dims,
        prior_gap=float(np.mean(gaps)) if gaps else 0.0,
        seconds=round(time.perf_counter() - start, 2),
        settings=settings,
    )
