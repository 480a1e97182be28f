"""Noise ladders and step sizes (Song & Ermon 2019; NCSNv2 = Song & Ermon 2020).

Every σ ladder is built here and has one type, a descending ``list[float]`` (the geometric NCSN
ladder, Karras et al.'s ρ steps); :func:`sigma_batch` turns one σ into the per-example tensor the
networks take. Conventions (stated once here and in docs/conventions.md):
- ladders are descending: ``sigmas[0]`` is σ₁, the largest; ``sigmas[-1]`` is σ_L;
- the Langevin step ε is in the official code's convention, α_i = ε σ_i² / σ_L² and
  x ← x + α_i s + √(2 α_i) z; the paper's Algorithm 1 uses (α_i/2) s + √α_i z, so its ε is twice
  ours (:func:`paper_to_official_step`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ncsn.errors import NCSNError


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int) -> list[float]:
    """σ_i = σ₁ γ^−(i−1), i = 1..L, from σ₁ = sigma_max down to σ_L = sigma_min (NCSN §4.2).

    Rounded to float32 (the precision the network sees), returned as Python floats."""
    if num_levels == 1:
        return [float(np.float32(sigma_max))]
    return np.geomspace(sigma_max, sigma_min, num_levels).astype(np.float32).tolist()


def karras_sigmas(sigma_max: float, sigma_min: float, n: int, rho: float = 7.0) -> list[float]:
    """σ_i = (σ_max^{1/ρ} + i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i < n, then σ_n = 0
    (Karras et al. 2022, Eq. 5): the ODE samplers' steps, ending at 0. For n ≥ 2 the ends may be
    tensors, one ladder per element (ncsn.consistency.teacher_solve's per-example levels)."""
    if n == 1:
        return [float(sigma_max), 0.0]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)] + [0.0]


def loguniform_sigmas(sigma_max: float, sigma_min: float, n: int) -> list[float]:
    """σ_i = exp(ln σ_max + i/(n−1) (ln σ_min − ln σ_max)), i < n, then σ_n = 0: steps uniform
    in λ = −ln σ, the uniform-logSNR steps of DPM-Solver (Lu et al. 2022, with α = 1), as
    k-diffusion's ``get_sigmas_exponential``. Ends at 0 like :func:`karras_sigmas`."""
    if n == 1:
        return [float(sigma_max), 0.0]
    a, b = math.log(sigma_max), math.log(sigma_min)
    return [math.exp(a + i / (n - 1) * (b - a)) for i in range(n)] + [0.0]


STEP_SCHEDULES = ("karras", "loguniform")


def step_sigmas(
    name: str, sigma_max: float, sigma_min: float, n: int, rho: float = 7.0
) -> list[float]:
    """The ODE samplers' n levels from σ_max to σ_min, then 0, by schedule ``name``:
    ``karras`` (:func:`karras_sigmas`, spacing ρ) or ``loguniform`` (:func:`loguniform_sigmas`,
    ρ unused)."""
    if name == "karras":
        return karras_sigmas(sigma_max, sigma_min, n, rho)
    if name == "loguniform":
        return loguniform_sigmas(sigma_max, sigma_min, n)
    raise NCSNError(f"step schedule {name!r}: expected one of {', '.join(STEP_SCHEDULES)}")


def sigma_batch(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """σ as one value per example of the batch ``x``, shape (N,), in ``x``'s dtype and device."""
    if isinstance(sigma, torch.Tensor) and sigma.dim() == 1:
        return sigma.to(dtype=x.dtype, device=x.device)
    return torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """``v`` of shape (N,) viewed as (N, 1, …, 1) with ``ndim`` dimensions, to broadcast
    against a batch (k-diffusion's ``append_dims``)."""
    return v.view(-1, *([1] * (ndim - 1)))


def paper_to_official_step(eps_paper: float) -> float:
    """Convert ε of the paper's Algorithm 1 ((α/2) s + √α z) to ours (α s + √(2α) z): ε/2."""
    return eps_paper / 2.0


def max_pairwise_distance(
    x: torch.Tensor, *, exact_limit: int = 60000, chunk: int = 4096, seed: int = 0
) -> tuple[float, str]:
    """σ₁ by NCSNv2 technique 1: the largest Euclidean distance between two training examples.

    Exact for up to ``exact_limit`` examples: blockwise ‖a‖² + ‖b‖² − 2 aᵀb over the upper
    triangle of blocks, then the winning pair is recomputed in float64. Above the limit it is
    estimated as the exact maximum over a random subset of ``exact_limit`` examples (a lower
    bound; documented in docs/conventions.md). Returns (distance, how it was obtained).
    """
    n = x.shape[0]
    x = x.reshape(n, -1).float()
    how = f"exact maximum over all pairs of the {n} examples"
    if n > exact_limit:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(n, generator=g)[:exact_limit]]
        how = f"estimate: exact maximum over a random subset of {exact_limit} of {n} examples"
    # One matmul per block gives ‖a‖² + ‖b‖² − 2aᵀb directly: [a, ‖a‖², 1] · [−2b, 1, ‖b‖²].
    sq = (x * x).sum(1, keepdim=True)
    ones = torch.ones_like(sq)
    left = torch.cat([x, sq, ones], 1)
    right = torch.cat([-2.0 * x, ones, sq], 1)
    best, best_pair = -1.0, (0, 0)
    for i in range(0, x.shape[0], chunk):
        for j in range(i, x.shape[0], chunk):
            d2 = left[i : i + chunk] @ right[j : j + chunk].T
            k = int(torch.argmax(d2))
            value = float(d2.view(-1)[k])
            if value > best:
                best, best_pair = value, (i + k // d2.shape[1], j + k % d2.shape[1])
    a, b = best_pair
    return float(torch.dist(x[a].double(), x[b].double())), how


def overlap(gamma: float, dim: int) -> float:
    """C(γ) = Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) (NCSNv2, technique 2)."""
    r = math.sqrt(2 * dim) * (gamma - 1)
    return _phi(r + 3 * gamma) - _phi(r - 3 * gamma)


def gamma_for_overlap(target: float, dim: int) -> float:
    """The ratio γ > 1 of consecutive levels at which C(γ) equals ``target`` (bisection)."""
    if not overlap(1.0, dim) > target:
        raise NCSNError(f"schedule.overlap = {target}: expected a value below C(1) = 0.9973")
    lo, hi = 1.0, 2.0
    while overlap(hi, dim) > target:
        hi *= 2
        if hi > 1e6:  # in low dimension C(γ) stays near 1 for every γ: no ladder satisfies it
            raise NCSNError(
                f"schedule.num_levels = 'auto': the overlap rule C(γ) = {target} has no solution "
                f"for data of dimension D = {dim} (C(γ) ≥ {overlap(1e6, dim):.3f} for all γ); "
                "set schedule.num_levels to a number"
            )
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if overlap(mid, dim) > target else (lo, mid)
    return 0.5 * (lo + hi)


def levels_for_gamma(sigma_max: float, sigma_min: float, gamma: float) -> int:
    """L = ⌈log(σ₁/σ_L) / log γ⌉ + 1 (NCSNv2, technique 2)."""
    return math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma)) + 1


# Below this dimension `num_levels: auto` uses LOW_DIM_GAMMA instead of the overlap rule. The
# rule's γ grows without bound as D falls (≈ √(2D)/(√(2D) − 3); none for D ≤ 4): 2.13 at D = 16,
# 7.5 at D = 6, ladders on which annealed Langevin with exact mixture scores gets the weights
# and variances wrong. 64 is the smallest image preset (8 × 8 digits), which keeps the rule.
LOW_DIM = 64
# γ = 1.22 recovers 0.2/0.8 mixture weights within 0.02 and variances within 10% in 6-D and 16-D
# (exact scores, T = 100, ε by technique 4; γ = 1.35 is off by 0.033 in 6-D): docs/conventions.md.
LOW_DIM_GAMMA = 1.22


def _auto_gamma(target: float, dim: int) -> tuple[float, str]:
    """γ for ``num_levels: auto`` and how it was chosen: the overlap rule (NCSNv2 technique 2)
    from D = ``LOW_DIM`` on, ``LOW_DIM_GAMMA`` below (the rule assumes high dimension)."""
    if dim >= LOW_DIM:
        gamma = gamma_for_overlap(target, dim)
        return gamma, (
            f"NCSNv2 technique 2: C(γ) = {target} for D = {dim} gives γ = {gamma:.6g}, "
            "L = ⌈log(σ₁/σ_L)/log γ⌉ + 1"
        )
    try:
        rule = f"would give γ = {gamma_for_overlap(target, dim):.4g}"
    except NCSNError:
        rule = "has no solution"
    return LOW_DIM_GAMMA, (
        f"low-dimension rule: D = {dim} < {LOW_DIM}, where the overlap rule (NCSNv2 technique 2, "
        f"a high-dimension argument) {rule}, too coarse for annealed Langevin; "
        f"γ = {LOW_DIM_GAMMA} (measured on exact-score mixtures), L = ⌈log(σ₁/σ_L)/log γ⌉ + 1"
    )


def variance_ratio(eps: float, gamma: float, sigma_min: float, steps: int) -> float:
    """s_T²/σ_i² after T Langevin steps at one level, NCSNv2 Eq. 7 (our ε convention)."""
    a = eps / sigma_min**2
    # 2ε / (σ_L² − σ_L²(1 − a)²) simplifies to 2 / (2 − a); this form cannot divide by zero.
    b = 2.0 / (2.0 - a)
    return (1 - a) ** (2 * steps) * (gamma**2 - b) + b


def step_size_for(gamma: float, sigma_min: float, steps: int) -> float:
    """ε making NCSNv2 Eq. 7's ratio closest to 1 for T = ``steps`` (technique 4).

    A dense log-spaced grid over (0, σ_L²) followed by golden-section refinement of |ratio − 1|.
    """

    def err(log_eps: float) -> float:
        return abs(variance_ratio(math.exp(log_eps), gamma, sigma_min, steps) - 1.0)

    hi = math.log(sigma_min**2 * (1 - 1e-9))
    grid = np.linspace(hi - 40.0, hi, 4001)
    k = int(np.argmin([err(v) for v in grid]))
    lo, up = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(100):
        c, d = up - phi * (up - lo), lo + phi * (up - lo)
        lo, up = (lo, d) if err(c) < err(d) else (c, up)
    return math.exp(0.5 * (lo + up))


@dataclass
class Schedule:
    """A resolved noise ladder and Langevin step, with how each number was obtained."""

    sigmas: list[float]
    step_size: float
    steps_per_level: int
    how: dict[str, str] = field(default_factory=dict)
    step_rule: bool = False  # ε came from NCSNv2 technique 4, so another T gets the rule's ε
    # μ, the training data's mean (one value per dimension, flattened): the deterministic
    # samplers start from N(μ, σ₁² I). None for runs trained before it was recorded (μ = 0).
    data_mean: list[float] | None = None
    # step schedules optimised for the trained model ({"gits": {"N": [σ …, 0]}}), read from the
    # run directory by whoever loads the run (samplers/gits.py); not part of the checkpoint
    step_schedules: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def sigma_max(self) -> float:
        return self.sigmas[0]

    @property
    def sigma_min(self) -> float:
        return self.sigmas[-1]

    @property
    def num_levels(self) -> int:
        return len(self.sigmas)

    @property
    def gamma(self) -> float:
        """Ratio of consecutive levels, (σ₁/σ_L)^(1/(L−1))."""
        if self.num_levels == 1:
            return 1.0
        return (self.sigma_max / self.sigma_min) ** (1.0 / (self.num_levels - 1))

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.tensor(self.sigmas, dtype=torch.float32, device=device)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("step_schedules")
        return d

    def describe(self) -> str:
        lines = [
            f"sigma_max (σ₁)   = {self.sigma_max:.6g}   [{self.how.get('sigma_max', '')}]",
            f"sigma_min (σ_L)  = {self.sigma_min:.6g}   [{self.how.get('sigma_min', '')}]",
            f"gamma   (σ_i/σ_i+1) = {self.gamma:.6g}   [{self.how.get('gamma', '')}]",
            f"num_levels (L)   = {self.num_levels}   [{self.how.get('num_levels', '')}]",
            f"step_size (ε)    = {self.step_size:.6g}   [{self.how.get('step_size', '')}]",
            f"steps_per_level (T) = {self.steps_per_level}",
        ]
        if self.data_mean is not None:
            mu = torch.tensor(self.data_mean, dtype=torch.float64)
            lines.append(
                f"data_mean (μ)    = mean {mu.mean():.4g}, ‖μ‖ = {mu.norm():.4g} over "
                f"{len(mu)} dimensions   [training data; the ode starts from N(μ, σ₁² I)]"
            )
        return "\n".join(lines)


def data_mean(
    x: torch.Tensor, to_float: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.float
) -> list[float]:
    """μ = (1/N) Σₙ xₙ, the mean example of ``x`` (N, ...), flattened: rows taken in chunks
    through ``to_float`` (e.g. ``Dataset.as_float``: uint8 → [0, 1], no full float copy), summed
    in float64, rounded to float32 (the precision the samplers use)."""
    chunks = (to_float(x[i : i + 4096]).reshape(-1, x[0].numel()) for i in range(0, len(x), 4096))
    return (sum(c.double().sum(0) for c in chunks) / len(x)).float().tolist()


def needs_data(cfg) -> bool:
    """Whether resolving the ScheduleConfig ``cfg`` needs the training data (σ₁ or L 'auto')."""
    return cfg.sigma_max == "auto" or cfg.num_levels == "auto"


def resolve(cfg, data: torch.Tensor | None) -> Schedule:
    """Turn a ScheduleConfig (numbers or 'auto') into a :class:`Schedule`.

    ``data`` (N, ...) is needed only for the automatic σ₁ and L (its dimension D).
    """
    how: dict[str, str] = {}
    if cfg.sigma_max == "auto":
        if data is None:
            raise NCSNError("schedule.sigma_max = 'auto' needs the training data")
        sigma_max, how["sigma_max"] = max_pairwise_distance(
            data, exact_limit=cfg.exact_distance_limit
        )
        how["sigma_max"] = "NCSNv2 technique 1: " + how["sigma_max"]
        if not sigma_max > cfg.sigma_min:
            raise NCSNError(
                f"schedule.sigma_max = 'auto' gave {sigma_max:.4g} (largest distance between two "
                f"training examples), not above schedule.sigma_min = {cfg.sigma_min}"
            )
    else:
        sigma_max, how["sigma_max"] = float(cfg.sigma_max), "from the config"
    how["sigma_min"] = "from the config"
    if cfg.num_levels == "auto":
        if data is None:
            raise NCSNError("schedule.num_levels = 'auto' needs the training data")
        dim = int(np.prod(data.shape[1:]))
        gamma, how["num_levels"] = _auto_gamma(cfg.overlap, dim)
        num_levels = levels_for_gamma(sigma_max, cfg.sigma_min, gamma)
        how["gamma"] = "(σ₁/σ_L)^(1/(L−1)) of the geometric ladder (slightly below the rule's γ)"
    else:
        num_levels = cfg.num_levels
        how["num_levels"] = "from the config"
        how["gamma"] = "(σ₁/σ_L)^(1/(L−1))"
    sigmas = geometric_sigmas(sigma_max, cfg.sigma_min, num_levels)
    sched = Schedule(sigmas, 0.0, cfg.steps_per_level, how)
    if cfg.step_size == "auto":
        sched.step_size = step_size_for(sched.gamma, cfg.sigma_min, cfg.steps_per_level)
        sched.step_rule = True
        ratio = variance_ratio(sched.step_size, sched.gamma, cfg.sigma_min, cfg.steps_per_level)
        how["step_size"] = (
            f"NCSNv2 technique 4: Eq. 7 ratio closest to 1 for T = {cfg.steps_per_level} "
            f"(ratio {ratio:.4f})"
        )
    else:
        sched.step_size = float(cfg.step_size)
        how["step_size"] = "from the config (official convention, paper's ε / 2)"
    return sched


def resolve_for_data(
    cfg, x: torch.Tensor, to_float: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.float
) -> Schedule:
    """:func:`resolve` for a run on the examples ``x`` (as stored; ``to_float`` maps them to the
    model's units, e.g. ``Dataset.as_float``), recording their :func:`data_mean`, where the
    deterministic samplers start. The examples are converted in full only when the ladder needs
    them (σ₁ or L 'auto')."""
    sched = resolve(cfg, to_float(x) if needs_data(cfg) else None)
    sched.data_mean = data_mean(x, to_float)
    return sched


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))
