import math

import pytest
import torch

from ncsn.data.toy import TOY_NAMES, GaussianMixture, OracleModel, load_toy, make_toy
from ncsn.errors import NCSNError

SIGMAS = [0.0, 0.1, 1.0, 5.0]


def _random_mixture(dim: int, k: int = 3, seed: int = 0) -> GaussianMixture:
    """K Gaussians with random means and full, anisotropic covariances A Aᵀ + 0.1 I."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, dim, dim, generator=g, dtype=torch.float64)
    covs = a @ a.transpose(1, 2) + 0.1 * torch.eye(dim, dtype=torch.float64)
    means = 3 * torch.randn(k, dim, generator=g, dtype=torch.float64)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    return GaussianMixture(weights, means, covs)


def _points(n: int, dim: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 4 * torch.randn(n, dim, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_is_the_gradient_of_the_perturbed_log_density(dim: int, sigma: float) -> None:
    mixture = _random_mixture(dim)
    x = _points(64, dim).requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x, sigma).sum(), x)
    torch.testing.assert_close(mixture.score(x.detach(), sigma), grad, rtol=1e-9, atol=1e-9)


def test_score_takes_one_sigma_per_row() -> None:
    mixture = _random_mixture(2)
    x = _points(len(SIGMAS), 2)
    per_row = mixture.score(x, torch.tensor(SIGMAS))
    one_by_one = torch.cat([mixture.score(x[i : i + 1], s) for i, s in enumerate(SIGMAS)])
    torch.testing.assert_close(per_row, one_by_one)


def test_score_returns_the_dtype_of_x() -> None:
    mixture = make_toy("mixture")
    x = _points(8, 2).float()
    assert mixture.score(x, 0.5).dtype == torch.float32
    assert mixture.denoise(x, 0.5).dtype == torch.float32
    assert mixture.log_prob(x, 0.5).dtype == torch.float32


def test_score_is_finite_far_from_every_mode() -> None:
    mixture = make_toy("mixture")
    x = torch.tensor([[1e3, -1e3], [-400.0, -400.0]])
    assert torch.isfinite(mixture.score(x, 0.01)).all()


@pytest.mark.parametrize("sigma", SIGMAS)
def test_denoise_is_x_plus_sigma_squared_score(sigma: float) -> None:
    mixture = _random_mixture(5)
    x = _points(32, 5)
    expected = x + sigma**2 * mixture.score(x, sigma)
    torch.testing.assert_close(mixture.denoise(x, sigma), expected)


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_sample_mean_and_covariance_match_the_mixture(sigma: float) -> None:
    mixture = _random_mixture(3)
    x = mixture.sample(40_000, torch.Generator().manual_seed(2), sigma, dtype=torch.float64)
    w, mu = mixture.weights, mixture.means
    mean = w @ mu
    # Cov = Σₖ wₖ (Σₖ + σ²I + μₖμₖᵀ) − m mᵀ (law of total covariance).
    second = torch.einsum("k,kde->de", w, mixture.covs + mu[:, :, None] * mu[:, None, :])
    cov = second - torch.outer(mean, mean) + sigma**2 * torch.eye(3, dtype=torch.float64)
    scale = cov.diagonal().sqrt().max().item()
    torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=0.05 * scale)
    torch.testing.assert_close(x.T.cov(), cov, rtol=0, atol=0.05 * scale**2)


@pytest.mark.parametrize("name", ["mixture", "ring8"])
@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_log_prob_integrates_to_one(name: str, sigma: float) -> None:
    step = 0.1
    axis = torch.arange(-14, 14, step, dtype=torch.float64) + step / 2
    grid = torch.cartesian_prod(axis, axis)
    mass = make_toy(name).log_prob(grid, sigma).exp().sum() * step**2
    assert mass.item() == pytest.approx(1.0, abs=1e-6)


def test_responsibilities_of_samples_recover_the_weights() -> None:
    mixture = make_toy("mixture")
    x = mixture.sample(20_000, torch.Generator().manual_seed(3))
    weights = mixture.responsibilities(x).mean(0)
    torch.testing.assert_close(weights, torch.tensor([0.2, 0.8]), rtol=0, atol=0.01)


def test_isotropic_builds_scaled_identity_covariances() -> None:
    mixture = GaussianMixture.isotropic([1.0, 3.0], [[0.0, 0.0], [1.0, 1.0]], [0.5, 2.0])
    torch.testing.assert_close(mixture.weights, torch.tensor([0.25, 0.75], dtype=torch.float64))
    torch.testing.assert_close(mixture.covs[1], 4 * torch.eye(2, dtype=torch.float64))


def test_covariance_that_is_not_positive_definite_is_rejected() -> None:
    with pytest.raises(NCSNError, match="positive definite"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, -1.0]]])


def test_sigma_with_the_wrong_number_of_values_is_rejected() -> None:
    with pytest.raises(NCSNError, match="one value per row"):
        make_toy("mixture").score(torch.zeros(4, 2), torch.ones(3))


def test_oracle_model_is_a_parameter_free_module_with_the_exact_score() -> None:
    mixture = make_toy("ring8")
    oracle = OracleModel(mixture).eval().to("cpu")
    x = _points(16, 2).float()
    sigma = torch.full((16,), 0.3)
    assert list(oracle.parameters()) == []
    torch.testing.assert_close(oracle.score(x, sigma), mixture.score(x, sigma))
    torch.testing.assert_close(oracle(x, sigma), mixture.score(x, sigma))
    torch.testing.assert_close(oracle.denoise(x, sigma), mixture.denoise(x, sigma))


def test_ring8_means_lie_on_the_circle_of_radius_4() -> None:
    means = make_toy("ring8").means
    torch.testing.assert_close(means.norm(dim=1), torch.full((8,), 4.0, dtype=torch.float64))


def test_checkerboard_samples_lie_on_dark_squares() -> None:
    x = make_toy("checkerboard").sample(2000, torch.Generator().manual_seed(4))
    cell = torch.floor((x + 4) / 2).long()
    assert ((x >= -4) & (x <= 4)).all()
    assert ((cell.sum(1) % 2) == 0).all()


def test_spiral_samples_stay_near_radius_4() -> None:
    x = make_toy("spiral").sample(2000, torch.Generator().manual_seed(5))
    assert x.norm(dim=1).max() < 4 + 6 * 0.1


@pytest.mark.parametrize("name", TOY_NAMES)
def test_load_toy_returns_n_float32_points_in_2d(name: str) -> None:
    data = load_toy(name, n=100, seed=0)
    assert data.x.shape == (100, 2)
    assert data.x.dtype == torch.float32
    assert data.name == f"toy-{name}"
    assert data.levels is None
    assert torch.isfinite(data.x).all()


def test_load_toy_is_deterministic_for_a_seed() -> None:
    first = load_toy("mixture", n=50, seed=7).x
    assert torch.equal(first, load_toy("mixture", n=50, seed=7).x)
    assert not torch.equal(first, load_toy("mixture", n=50, seed=8).x)


def test_load_toy_unknown_name_lists_the_known_names() -> None:
    with pytest.raises(NCSNError, match="unknown toy.*mixture, ring8, checkerboard, spiral"):
        load_toy("moons", n=10, seed=0)


def test_load_toy_rejects_an_empty_set() -> None:
    with pytest.raises(NCSNError, match="at least 1"):
        load_toy("mixture", n=0, seed=0)


def test_mixture_preset_is_the_papers_toy() -> None:
    mixture = make_toy("mixture")
    torch.testing.assert_close(mixture.weights, torch.tensor([0.2, 0.8], dtype=torch.float64))
    torch.testing.assert_close(mixture.means, torch.tensor([[-5.0, -5.0], [5.0, 5.0]]).double())
    assert math.isclose(mixture.covs[0].det().item(), 1.0)
