"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", §3 and App. D).

KID is the squared maximum mean discrepancy between the two feature distributions under the
cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, estimated without bias (Gretton et al. 2012,
Lemma 6) and averaged over random subsets of equal size m:

    MMD²ᵤ = 1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(m(m−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/m² Σ_{i,j} k(xᵢ, yⱼ).

Unlike the Fréchet distance it is unbiased in the number of samples, so small sample sets can be
compared; being unbiased it can come out slightly negative when the distributions agree.
"""

from __future__ import annotations

import numpy as np
import torch

from ncsn.errors import NCSNError

__all__ = ["kid", "mmd2_unbiased", "polynomial_kernel"]


def _as_float64(features: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    return np.asarray(features, dtype=np.float64)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (xᵀy / d + 1)³ for all pairs of rows of x (m, d) and y (n, d)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between two equal-size feature sets (m, d) (Gretton et al. 2012, Lemma 6)."""
    m = x.shape[0]
    k_xx = polynomial_kernel(x, x)
    k_yy = polynomial_kernel(y, y)
    k_xy = polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(
    features_a: torch.Tensor | np.ndarray,
    features_b: torch.Tensor | np.ndarray,
    *,
    subset_size: int = 1000,
    num_subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean and standard deviation of MMD²ᵤ over ``num_subsets`` random subsets.

    Each subset draws ``min(subset_size, N_a, N_b)`` rows without replacement from each set, from
    a NumPy generator seeded with ``seed`` (the protocol of Bińkowski et al. 2018, App. D).
    """
    x, y = _as_float64(features_a), _as_float64(features_b)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise NCSNError(f"KID needs two (N, D) feature sets of equal D, got {x.shape}, {y.shape}")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise NCSNError(f"KID needs at least 2 feature vectors per set, got subsets of size {m}")
    if num_subsets < 1:
        raise NCSNError(f"num_subsets must be at least 1, got {num_subsets}")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for s in range(num_subsets):
        subset_x = x[rng.choice(x.shape[0], m, replace=False)]
        subset_y = y[rng.choice(y.shape[0], m, replace=False)]
        values[s] = mmd2_unbiased(subset_x, subset_y)
    return float(values.mean()), float(values.std())
