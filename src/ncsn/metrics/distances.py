"""Two-sample distances between point clouds x (N, D) and y (M, D).

Energy distance and MMD sum a function of ‖xᵢ − yⱼ‖ over all pairs; the sums run over row blocks
of about a million pairs in float64, so 10,000 × 10,000 points need only tens of MB. ``noise_floor``
gives the value a distance takes between two independent exact sample sets of the same size: a
sampler is as good as a finite sample can show when its distance to exact samples is near it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ncsn.errors import NCSNError

_BLOCK_PAIRS = 2**20
_MEDIAN_POINTS = 1000
_MEDIAN_SCALES = (0.5, 1.0, 2.0)


def energy_distance(x: Tensor, y: Tensor, *, unbiased: bool = True) -> float:
    """Energy distance 2E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ (Székely & Rizzo 2013), estimated.

    ``unbiased=True``: the U-statistic, in which the within-set means skip i = j (divide by
    N(N − 1)); its expectation is exactly the population value, so it can be slightly negative.
    ``unbiased=False``: the V-statistic (all pairs, divide by N²), non-negative and 0 for x = y.
    """
    x, y = _prepare(x, y, need=2 if unbiased else 1)
    n, m = x.shape[0], y.shape[0]
    cross = _pairwise_sum(x, y) / (n * m)
    within_x = _pairwise_sum(x, x, skip_diagonal=True) / _pair_count(n, unbiased)
    within_y = _pairwise_sum(y, y, skip_diagonal=True) / _pair_count(m, unbiased)
    return float(2 * cross - within_x - within_y)


def mmd(
    x: Tensor, y: Tensor, bandwidths: Sequence[float] | None = None, *, unbiased: bool = True
) -> float:
    """Squared maximum mean discrepancy MMD² = E k(X, X') + E k(Y, Y') − 2E k(X, Y) (Gretton 2012).

    Kernel: a sum of RBF kernels k(a, b) = Σ_h exp(−‖a − b‖² / (2h²)) over ``bandwidths``. When
    ``bandwidths`` is None they are the median heuristic times (0.5, 1, 2): the median of the
    pairwise distances within the pooled sample (at most 1,000 evenly strided points of it).
    ``unbiased=True`` is the U-statistic (can be slightly negative), otherwise the V-statistic.
    """
    x, y = _prepare(x, y, need=2 if unbiased else 1)
    if bandwidths is None:
        bandwidths = [s * _median_distance(torch.cat([x, y])) for s in _MEDIAN_SCALES]
    if len(bandwidths) == 0 or min(bandwidths) <= 0:
        raise NCSNError(f"mmd: bandwidths must be positive and not empty; got {bandwidths}")

    def kernel(d: Tensor) -> Tensor:
        d_sq = d.square()
        return sum(torch.exp(d_sq * (-0.5 / h**2)) for h in bandwidths)

    n, m = x.shape[0], y.shape[0]
    cross = _pairwise_sum(x, y, kernel) / (n * m)
    # Without the diagonal k(xᵢ, xᵢ) = len(bandwidths): added back for the V-statistic.
    within_x = _pairwise_sum(x, x, kernel, skip_diagonal=True)
    within_y = _pairwise_sum(y, y, kernel, skip_diagonal=True)
    if not unbiased:
        within_x, within_y = within_x + n * len(bandwidths), within_y + m * len(bandwidths)
    within_x, within_y = within_x / _pair_count(n, unbiased), within_y / _pair_count(m, unbiased)
    return float(within_x + within_y - 2 * cross)


def sliced_wasserstein(
    x: Tensor, y: Tensor, n_projections: int = 128, *, generator: torch.Generator
) -> float:
    """Sliced 2-Wasserstein distance (E_θ W₂²(θᵀX, θᵀY))^½, θ uniform on the unit sphere.

    Each 1-D W₂² is ∫₀¹ (F⁻¹(u) − G⁻¹(u))² du of the empirical quantile functions: the mean squared
    difference of the sorted projections for equal sizes, and the exact integral over the merged
    quantile levels i/N, j/M otherwise. For X and Y = X + δ, W₂(θᵀX, θᵀY) = |θᵀδ| and the sliced
    distance is ‖δ‖/√D.
    """
    x, y = _prepare(x, y, need=1)
    theta = torch.randn(n_projections, x.shape[1], generator=generator, dtype=torch.float64)
    theta = (theta / theta.norm(dim=1, keepdim=True)).to(x.device)
    # (projections, points): sorting along the contiguous last axis is several times faster.
    px = (theta @ x.T).sort(dim=1).values
    py = (theta @ y.T).sort(dim=1).values
    n, m = px.shape[1], py.shape[1]
    if n == m:
        w2_sq = ((px - py) ** 2).mean(dim=1)
    else:
        steps = [torch.arange(1, k + 1, dtype=torch.float64) / k for k in (n, m)]
        levels = torch.cat(steps).unique().to(x.device)
        du = torch.diff(levels, prepend=levels.new_zeros(1))
        middle = levels - du / 2
        ix = (middle * n).long().clamp(max=n - 1)
        iy = (middle * m).long().clamp(max=m - 1)
        w2_sq = ((px[:, ix] - py[:, iy]) ** 2 * du).sum(dim=1)
    return float(w2_sq.mean().sqrt())


@dataclass(frozen=True)
class NoiseFloor:
    """Distances between pairs of independent exact sample sets, one per repeat."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def max(self) -> float:
        return max(self.values)


def noise_floor(
    sample_fn: Callable[[int, torch.Generator], Tensor],
    n: int,
    distance: Callable[[Tensor, Tensor], float],
    *,
    repeats: int = 5,
    generator: torch.Generator,
) -> NoiseFloor:
    """``distance`` between two independent sets of ``n`` exact samples, ``repeats`` times.

    ``sample_fn(n, generator)`` draws exact samples (e.g. ``GaussianMixture.sample``). Use a
    non-negative estimator (``energy_distance(..., unbiased=False)``, ``sliced_wasserstein``):
    an unbiased U-statistic fluctuates around 0 between exact sets, so its mean is no floor.
    """
    if repeats < 1:
        raise NCSNError(f"noise_floor: repeats must be at least 1; got {repeats}")
    values = []
    for _ in range(repeats):
        a = sample_fn(n, generator)
        b = sample_fn(n, generator)
        values.append(float(distance(a, b)))
    return NoiseFloor(tuple(values))


def _prepare(x: Tensor, y: Tensor, need: int) -> tuple[Tensor, Tensor]:
    """float64 (N, D) copies centred on their pooled mean: distances are unchanged, and
    ``torch.cdist``'s ‖a‖² + ‖b‖² − 2aᵀb form loses no digits to a large common offset."""
    x = x.detach().to(torch.float64).reshape(x.shape[0], -1)
    y = y.detach().to(torch.float64).reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise NCSNError(f"point sets differ in dimension: {x.shape[1]} and {y.shape[1]}")
    if min(x.shape[0], y.shape[0]) < need:
        raise NCSNError(f"need at least {need} points per set; got {x.shape[0]} and {y.shape[0]}")
    centre = torch.cat([x, y]).mean(dim=0)
    return x - centre, y - centre


def _pairwise_sum(
    a: Tensor,
    b: Tensor,
    fn: Callable[[Tensor], Tensor] | None = None,
    *,
    skip_diagonal: bool = False,
) -> Tensor:
    """Σᵢⱼ fn(‖aᵢ − bⱼ‖) over all pairs (fn = identity when None), in row blocks of about
    ``_BLOCK_PAIRS`` pairs. ``skip_diagonal`` (for b = a) leaves out the pairs i = j."""
    rows = max(1, _BLOCK_PAIRS // b.shape[0])
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for start in range(0, a.shape[0], rows):
        block = a[start : start + rows]
        values = torch.cdist(block, b)
        if fn is not None:
            values = fn(values)
        if skip_diagonal:
            i = torch.arange(block.shape[0], device=a.device)
            values[i, start + i] = 0
        total = total + values.sum()
    return total


def _pair_count(n: int, unbiased: bool) -> int:
    return n * (n - 1) if unbiased else n * n


def _median_distance(points: Tensor) -> float:
    stride = max(1, points.shape[0] // _MEDIAN_POINTS)
    sub = points[::stride][:_MEDIAN_POINTS]
    d = torch.cdist(sub, sub)
    i, j = torch.triu_indices(sub.shape[0], sub.shape[0], offset=1)
    median = float(d[i, j].median())
    if median <= 0:
        raise NCSNError("mmd: all points coincide; give bandwidths explicitly")
    return median
