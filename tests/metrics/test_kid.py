"""Kernel Inception Distance: unbiased MMD² with the cubic kernel, averaged over subsets."""

import numpy as np
import pytest

from ncsn.metrics.kid import kid, mmd2_unbiased, polynomial_kernel


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_kernel_is_cubic_polynomial_of_scaled_inner_product():
    x, y = np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])
    assert polynomial_kernel(x, y)[0, 0] == pytest.approx((1.0 / 2 + 1) ** 3)


def test_unbiased_mmd_matches_the_explicit_double_sum():
    x, y = _gaussian(5, 3, 0), _gaussian(5, 3, 1, shift=0.5)
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 5
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_same_distribution_gives_kid_near_zero():
    mean, std = kid(_gaussian(400, 8, 0), _gaussian(400, 8, 1), subset_size=200, num_subsets=20)
    assert abs(mean) < 3 * std + 1e-3


def test_shifted_distribution_gives_clearly_positive_kid():
    same, _ = kid(_gaussian(400, 8, 0), _gaussian(400, 8, 1), subset_size=200, num_subsets=20)
    shifted, std = kid(
        _gaussian(400, 8, 0), _gaussian(400, 8, 1, shift=1.0), subset_size=200, num_subsets=20
    )
    assert shifted > 10 * std and shifted > 10 * abs(same)


def test_kid_is_reproducible_for_a_seed():
    a, b = _gaussian(300, 4, 0), _gaussian(300, 4, 1, shift=0.2)
    assert kid(a, b, subset_size=100, num_subsets=5, seed=3) == kid(
        a, b, subset_size=100, num_subsets=5, seed=3
    )
