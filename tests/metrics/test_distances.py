import functools
import math

import numpy as np
import pytest
import torch

import ncsn.metrics.distances as distances
from ncsn.errors import NCSNError
from ncsn.metrics import energy_distance, mmd, noise_floor, sliced_wasserstein


def _gaussian(n: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """n points of N(shift e₁, I) in ``dim`` dimensions."""
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x[:, 0] += shift
    return x


def _brute_force_energy(x: np.ndarray, y: np.ndarray, unbiased: bool) -> float:
    def mean_dist(a: np.ndarray, b: np.ndarray, within: bool) -> float:
        d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
        n = len(a)
        return d.sum() / (n * (n - 1) if within and unbiased else d.size)

    return 2 * mean_dist(x, y, False) - mean_dist(x, x, True) - mean_dist(y, y, True)


def _brute_force_mmd(x: np.ndarray, y: np.ndarray, bandwidths: list[float]) -> float:
    def gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d_sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-d_sq / (2 * h**2)) for h in bandwidths)

    n, m = len(x), len(y)
    kxx, kyy = gram(x, x), gram(y, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return within_x + within_y - 2 * gram(x, y).mean()


@pytest.mark.parametrize("unbiased", [True, False])
def test_energy_distance_matches_brute_force_numpy(unbiased: bool) -> None:
    x, y = _gaussian(7, 3, seed=0), _gaussian(5, 3, seed=1, shift=0.7)
    expected = _brute_force_energy(x.numpy(), y.numpy(), unbiased)
    assert energy_distance(x, y, unbiased=unbiased) == pytest.approx(expected, rel=1e-10)


def test_energy_distance_v_statistic_is_zero_for_identical_sets() -> None:
    x = _gaussian(300, 2, seed=0)
    assert energy_distance(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-9)


def test_energy_distance_u_statistic_is_near_zero_for_identical_sets() -> None:
    x = _gaussian(300, 2, seed=0)
    # Equals −2 mean‖xᵢ − xⱼ‖ / N: of order 1/N, not exactly 0.
    assert abs(energy_distance(x, x)) < 2 * 2.0 / 300


def test_energy_distance_is_positive_and_grows_with_the_shift() -> None:
    x = _gaussian(500, 2, seed=0)
    values = [energy_distance(x, _gaussian(500, 2, seed=1, shift=s)) for s in (0.5, 1.0, 2.0)]
    assert 0 < values[0] < values[1] < values[2]


def test_energy_distance_does_not_depend_on_the_block_size(monkeypatch) -> None:
    x, y = _gaussian(200, 2, seed=0), _gaussian(150, 2, seed=1, shift=0.3)
    whole = energy_distance(x, y)
    monkeypatch.setattr(distances, "_BLOCK_PAIRS", 1000)
    assert energy_distance(x, y) == pytest.approx(whole, rel=1e-10)


def test_energy_distance_accepts_float32_and_one_dimensional_points() -> None:
    x, y = torch.arange(4.0), torch.arange(4.0) + 1
    expected = _brute_force_energy(x[:, None].numpy(), y[:, None].numpy(), True)
    assert energy_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_mmd_matches_brute_force_numpy_with_fixed_bandwidths() -> None:
    x, y = _gaussian(9, 2, seed=0), _gaussian(6, 2, seed=1, shift=0.5)
    expected = _brute_force_mmd(x.numpy(), y.numpy(), [0.5, 2.0])
    assert mmd(x, y, [0.5, 2.0]) == pytest.approx(expected, rel=1e-10)


def test_mmd_v_statistic_is_zero_for_identical_sets() -> None:
    x = _gaussian(200, 2, seed=0)
    assert mmd(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-9)


def test_mmd_is_positive_and_grows_with_the_shift() -> None:
    x = _gaussian(400, 2, seed=0)
    values = [mmd(x, _gaussian(400, 2, seed=1, shift=s), [1.0]) for s in (0.5, 1.0, 2.0)]
    assert 0 < values[0] < values[1] < values[2]


def test_mmd_rejects_non_positive_bandwidths() -> None:
    x = _gaussian(10, 2, seed=0)
    with pytest.raises(NCSNError, match="bandwidths"):
        mmd(x, x, [0.0])


def test_sliced_wasserstein_is_zero_for_identical_sets() -> None:
    x = _gaussian(300, 3, seed=0)
    g = torch.Generator().manual_seed(0)
    assert sliced_wasserstein(x, x, generator=g) == pytest.approx(0.0, abs=1e-12)


def test_sliced_wasserstein_of_a_translated_1d_set_is_the_shift() -> None:
    x = _gaussian(300, 1, seed=0)
    g = torch.Generator().manual_seed(0)
    assert sliced_wasserstein(x, x + 1.5, 8, generator=g) == pytest.approx(1.5, rel=1e-10)


def test_sliced_wasserstein_with_unequal_sizes_uses_quantiles() -> None:
    x = _gaussian(300, 1, seed=0)
    twice = torch.cat([x, x]) + 1.5  # the same empirical distribution, shifted
    g = torch.Generator().manual_seed(0)
    assert sliced_wasserstein(x, twice, 8, generator=g) == pytest.approx(1.5, rel=1e-10)


def test_sliced_wasserstein_in_1d_matches_a_fine_quantile_grid_for_unequal_sizes() -> None:
    x, y = _gaussian(7, 1, seed=0), _gaussian(5, 1, seed=1, shift=0.3)
    u = (np.arange(200_000) + 0.5) / 200_000
    qx = np.quantile(x.numpy()[:, 0], u, method="inverted_cdf")
    qy = np.quantile(y.numpy()[:, 0], u, method="inverted_cdf")
    expected = np.sqrt(((qx - qy) ** 2).mean())
    g = torch.Generator().manual_seed(0)
    assert sliced_wasserstein(x, y, 4, generator=g) == pytest.approx(expected, rel=1e-4)


def test_sliced_wasserstein_of_shifted_gaussians_is_shift_over_sqrt_d() -> None:
    # W₂(θᵀX, θᵀX + θᵀδ) = |θᵀδ| and E_θ (θᵀδ)² = ‖δ‖²/D for θ uniform on the sphere.
    x, y = _gaussian(4000, 2, seed=0), _gaussian(4000, 2, seed=1, shift=2.0)
    g = torch.Generator().manual_seed(0)
    value = sliced_wasserstein(x, y, 512, generator=g)
    assert value == pytest.approx(2.0 / math.sqrt(2), abs=0.05)


def test_sliced_wasserstein_is_reproducible_for_a_seed() -> None:
    x, y = _gaussian(100, 3, seed=0), _gaussian(100, 3, seed=1, shift=1.0)
    first = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3))
    assert first == sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3))


def test_noise_floor_reports_distances_between_independent_exact_sets() -> None:
    def sample(n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(n, 2, generator=g, dtype=torch.float64)

    distance = functools.partial(energy_distance, unbiased=False)
    g = torch.Generator().manual_seed(0)
    floor = noise_floor(sample, 500, distance, repeats=4, generator=g)
    shifted = distance(sample(500, g), sample(500, g) + 1.0)
    assert len(set(floor.values)) == 4
    assert 0 < min(floor.values) <= floor.mean <= floor.max < 0.2 * shifted


def test_point_sets_of_different_dimension_are_rejected() -> None:
    with pytest.raises(NCSNError, match="dimension"):
        energy_distance(torch.zeros(3, 2), torch.zeros(3, 3))
