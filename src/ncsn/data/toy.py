"""Toy distributions with exact samples, and for Gaussian mixtures exact densities and scores.

A Gaussian mixture perturbed by N(0, σ²I) is again a Gaussian mixture,
p_σ(x) = Σₖ wₖ N(x; μₖ, Σₖ + σ²I), so its score ∇ₓ log p_σ(x) is known in closed form. The mixture
is therefore an oracle score model: it stands in for a trained network in every sampler, which
separates the error of the sampler from the error of learning.

Presets (``make_toy``):

- ``mixture``: the NCSN paper's toy (Song & Ermon 2019, §3.2, Fig. 3),
  p = 1/5 N((−5, −5), I) + 4/5 N((5, 5), I); plain Langevin dynamics gets its weights wrong.
- ``ring8``: 8 equal-weight Gaussians, means on the circle of radius 4 at angles 2πk/8, std 0.25
  (neighbouring means 3.06 apart, about 12 std).
- ``checkerboard`` (samples only): uniform on the 8 dark squares of a 4 × 4 board of side-2
  squares covering [−4, 4]², the square with lower-left corner (−4, −4) dark.
- ``spiral`` (samples only): two-armed Archimedean spiral r = 4θ/(3π), θ ∈ [0, 3π] (1.5 turns,
  radius up to 4), the second arm rotated by π, θ = 3π√u with u ~ U[0, 1] (roughly uniform along the
  arc), plus N(0, 0.1² I) jitter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ncsn.data.dataset import Dataset
from ncsn.errors import NCSNError

TOY_NAMES = ("mixture", "ring8", "checkerboard", "spiral")

_ArrayLike = Tensor | Sequence | float


class GaussianMixture:
    """p(x) = Σₖ wₖ N(x; μₖ, Σₖ) in D dimensions, with its σ-perturbed density and exact score.

    ``weights`` (K,) non-negative (normalised here), ``means`` (K, D), ``covs`` (K, D, D) symmetric
    positive definite. Computations run in float64; results come back in the dtype of ``x``.
    ``sigma`` is a scalar or one value per row of ``x``.
    """

    def __init__(self, weights: _ArrayLike, means: _ArrayLike, covs: _ArrayLike) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        cov = torch.as_tensor(covs, dtype=torch.float64)
        if w.dim() != 1 or mu.dim() != 2 or mu.shape[0] != w.shape[0]:
            raise NCSNError(
                f"GaussianMixture: weights must be (K,) and means (K, D); got weights "
                f"{tuple(w.shape)} and means {tuple(mu.shape)}"
            )
        k, d = mu.shape
        if cov.shape != (k, d, d):
            raise NCSNError(
                f"GaussianMixture: covs must be ({k}, {d}, {d}); got {tuple(cov.shape)}"
            )
        if (w < 0).any() or w.sum() <= 0:
            raise NCSNError(f"GaussianMixture: weights must be non-negative, not all zero; got {w}")
        if not torch.allclose(cov, cov.transpose(1, 2)):
            raise NCSNError("GaussianMixture: covs must be symmetric")
        eigvals, eigvecs = torch.linalg.eigh(cov)
        if (eigvals <= 0).any():
            raise NCSNError("GaussianMixture: covs must be positive definite")
        self.weights = w / w.sum()
        self.means = mu
        self.covs = cov
        # Σₖ = Uₖ diag(λₖ) Uₖᵀ, so Σₖ + σ²I = Uₖ diag(λₖ + σ²) Uₖᵀ for every σ at no extra cost.
        self._eigvals = eigvals
        self._eigvecs = eigvecs
        self._log_weights = self.weights.log()

    @classmethod
    def isotropic(
        cls, weights: _ArrayLike, means: _ArrayLike, std: float | Sequence[float]
    ) -> GaussianMixture:
        """The mixture with Σₖ = stdₖ² I (``std`` one value for all components or one each)."""
        mu = torch.as_tensor(means, dtype=torch.float64)
        k, d = mu.shape
        std_k = torch.as_tensor(std, dtype=torch.float64).expand(k)
        return cls(weights, mu, std_k[:, None, None] ** 2 * torch.eye(d, dtype=torch.float64))

    @property
    def dim(self) -> int:
        """Data dimension D."""
        return self.means.shape[1]

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """log p_σ(x) = logsumexp_k [log wₖ + log N(x; μₖ, Σₖ + σ²I)], shape (N,)."""
        log_joint, _ = self._components(x, sigma)
        return torch.logsumexp(log_joint, dim=0).to(x.dtype)

    def responsibilities(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """p_σ(k | x) = softmax_k [log wₖ + log N(x; μₖ, Σₖ + σ²I)], shape (N, K).

        Their column means over samples estimate the mixture weights those samples carry.
        """
        log_joint, _ = self._components(x, sigma)
        return torch.softmax(log_joint, dim=0).T.contiguous().to(x.dtype)

    def score(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """∇ₓ log p_σ(x) = −Σₖ p_σ(k | x) (Σₖ + σ²I)⁻¹ (x − μₖ), shape (N, D)."""
        return self._score64(x, sigma).to(x.dtype)

    def denoise(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """Tweedie's posterior mean E[x₀ | x̃ = x] = x + σ² ∇ₓ log p_σ(x), shape (N, D)."""
        sigma_sq = _sigma_sq(sigma, x)
        return (x.to(torch.float64) + sigma_sq * self._score64(x, sigma)).to(x.dtype)

    def sample(
        self,
        n: int,
        generator: torch.Generator,
        sigma: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """n exact samples of p_σ: k ~ Categorical(w), x = μₖ + Uₖ diag(√(λₖ + σ²)) z, z ~ N(0, I).

        ``generator`` must live on the CPU; the samples are CPU tensors of ``dtype``.
        """
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = torch.empty_like(z)
        for j in range(len(self.weights)):
            rows = k == j
            std = (self._eigvals[j] + sigma**2).sqrt()
            x[rows] = self.means[j] + (std * z[rows]) @ self._eigvecs[j].T
        return x.to(dtype)

    def _score64(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        log_joint, precision_residual = self._components(x, sigma)
        resp = torch.softmax(log_joint, dim=0)
        return -(resp[:, None, :] * precision_residual).sum(dim=0).T.contiguous()

    def _components(self, x: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        """log wₖ + log N(x; μₖ, Σₖ + σ²I) as (K, N), and (Σₖ + σ²I)⁻¹ (x − μₖ) as (K, D, N).

        Float64, components first and points last, so that every reduction (over k or over the
        coordinates) runs along a contiguous axis of length N.
        """
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise NCSNError(f"expected points of shape (N, {self.dim}); got {tuple(x.shape)}")
        device = x.device
        eigvecs = self._eigvecs.to(device)
        sigma_sq = _sigma_sq(sigma, x).reshape(1, 1, -1)
        variances = self._eigvals.to(device)[:, :, None] + sigma_sq  # (K, D, 1 or N)
        # y = Uₖᵀ (x − μₖ): the residual in the eigenbasis of Σₖ.
        residual = x.to(torch.float64).T - self.means.to(device)[:, :, None]
        y = eigvecs.transpose(1, 2) @ residual
        y_scaled = y / variances
        mahalanobis = (y * y_scaled).sum(dim=1)
        log_det = variances.log().sum(dim=1)
        log_normal = -0.5 * (self.dim * math.log(2 * math.pi) + log_det + mahalanobis)
        log_joint = self._log_weights.to(device)[:, None] + log_normal
        return log_joint, eigvecs @ y_scaled


class OracleModel(nn.Module):
    """The exact score of a Gaussian mixture wrapped as a parameter-free ``nn.Module``.

    It exposes ``score(x, σ)`` and ``denoise(x, σ) = x + σ² score(x, σ)`` like a trained score
    model, so it can replace a network in every sampler; ``.eval()``, ``.to()`` and friends work
    (the mixture moves its constants to the device of ``x`` on each call).
    """

    def __init__(self, mixture: GaussianMixture) -> None:
        super().__init__()
        self.mixture = mixture

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """The score ∇ₓ log p_σ(x)."""
        return self.mixture.score(x, sigma)

    def score(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """The score ∇ₓ log p_σ(x)."""
        return self.mixture.score(x, sigma)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """The Tweedie denoiser x + σ² ∇ₓ log p_σ(x)."""
        return self.mixture.denoise(x, sigma)


class SampledToy:
    """A toy distribution known only through exact samples: no closed-form density or score."""

    def __init__(self, name: str, draw: Callable[[int, torch.Generator], Tensor]) -> None:
        self.name = name
        self._draw = draw

    def sample(
        self,
        n: int,
        generator: torch.Generator,
        sigma: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """n exact samples of the distribution convolved with N(0, σ²I)."""
        x = self._draw(n, generator)
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        return x.to(dtype)


def make_toy(name: str) -> GaussianMixture | SampledToy:
    """The preset toy distribution ``name`` (see the module docstring for each definition)."""
    if name == "mixture":
        return GaussianMixture.isotropic([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
    if name == "ring8":
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        means = 4.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
        return GaussianMixture.isotropic(torch.full((8,), 1 / 8), means, 0.25)
    if name == "checkerboard":
        return SampledToy(name, _checkerboard)
    if name == "spiral":
        return SampledToy(name, _spiral)
    raise NCSNError(f"unknown toy data set {name!r}; known: {', '.join(TOY_NAMES)}")


def load_toy(name: str, n: int, seed: int) -> Dataset:
    """n exact samples of the preset ``name``, float32 (n, 2), from a generator seeded ``seed``.

    Named ``toy-{name}``, ``levels=None`` (continuous data), not scaled to [0, 1].
    """
    toy = make_toy(name)
    if n < 1:
        raise NCSNError(f"toy data set size must be at least 1; got n={n}")
    generator = torch.Generator().manual_seed(seed)
    return Dataset(toy.sample(n, generator), f"toy-{name}")


def _sigma_sq(sigma: float | Tensor, x: Tensor) -> Tensor:
    """σ² as a float64 column (1 or N, 1) that broadcasts against x (N, D)."""
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1, 1)
    if s.shape[0] not in (1, x.shape[0]):
        raise NCSNError(
            f"sigma must be a scalar or have one value per row of x ({x.shape[0]}); "
            f"got {s.shape[0]} values"
        )
    return s**2


def _checkerboard(n: int, generator: torch.Generator) -> Tensor:
    cells = torch.tensor(
        [[i, j] for i in range(4) for j in range(4) if (i + j) % 2 == 0], dtype=torch.float64
    )
    index = torch.randint(len(cells), (n,), generator=generator)
    corner = -4.0 + 2.0 * cells[index]
    return corner + 2.0 * torch.rand(n, 2, generator=generator, dtype=torch.float64)


def _spiral(n: int, generator: torch.Generator) -> Tensor:
    theta = 3 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64).sqrt()
    arm = torch.randint(2, (n,), generator=generator, dtype=torch.float64)
    radius = 4.0 * theta / (3 * math.pi)
    angle = theta + math.pi * arm
    x = radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    return x + 0.1 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
