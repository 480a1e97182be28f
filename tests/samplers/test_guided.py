"""Inpainting, denoising and refinement driven by exact Gaussian scores."""

import math

import torch

from ncsn.data.toy import GaussianMixture, OracleModel
from ncsn.samplers.guided import denoise, estimate_sigma, inpaint, refine

SIGMAS = torch.logspace(math.log10(5.0), -2, 30).tolist()


def _gaussian() -> GaussianMixture:
    a = torch.tensor(
        [[1.0, 0.6, 0.2, 0.0], [0.0, 0.8, 0.3, 0.1], [0.0, 0.0, 0.7, 0.4], [0.0, 0.0, 0.0, 0.5]]
    )
    return GaussianMixture([1.0], [[0.5, -0.5, 1.0, 0.0]], (a.T @ a)[None])


def test_inpainting_keeps_known_values_and_matches_the_exact_conditional():
    g = _gaussian()
    mu, cov = g.means[0], g.covs[0]
    known, unknown = [0, 2], [1, 3]
    y_known = torch.tensor([1.2, 0.4], dtype=torch.float64)
    n = 4000
    y = torch.zeros(n, 4)
    y[:, known] = y_known.float()
    mask = torch.zeros(1, 4)
    mask[:, known] = 1
    x = inpaint(
        OracleModel(g),
        y,
        mask,
        SIGMAS,
        generator=torch.Generator().manual_seed(0),
        eps=2e-5,
        n_steps_each=60,
    )
    assert torch.equal(x[:, known], y[:, known])  # never changes the known values
    # Exact conditional of a Gaussian: μ_u + Σ_uk Σ_kk⁻¹ (y − μ_k), Σ_uu − Σ_uk Σ_kk⁻¹ Σ_ku.
    s_kk_inv = torch.linalg.inv(cov[known][:, known])
    s_uk = cov[unknown][:, known]
    mean = mu[unknown] + s_uk @ s_kk_inv @ (y_known - mu[known])
    var = cov[unknown][:, unknown] - s_uk @ s_kk_inv @ s_uk.T
    samples = x[:, unknown].double()
    assert torch.allclose(samples.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(samples.T), var, atol=0.05)


def test_inpainting_is_reproducible_for_a_seed():
    g = _gaussian()
    y, mask = torch.ones(8, 4), torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    runs = [
        inpaint(
            OracleModel(g),
            y,
            mask,
            SIGMAS[::5],
            generator=torch.Generator().manual_seed(3),
            eps=2e-5,
            n_steps_each=3,
        )
        for _ in range(2)
    ]
    assert runs[0].numpy().tobytes() == runs[1].numpy().tobytes()


def test_denoise_is_the_exact_posterior_mean_for_a_gaussian():
    g = GaussianMixture.isotropic([1.0], [[0.0, 0.0]], 1.0)
    y = torch.tensor([[2.0, -1.0]])
    # Prior N(0, I), noise σ = 0.5: E[x | y] = y / (1 + σ²).
    assert torch.allclose(denoise(OracleModel(g), y, 0.5), y / 1.25, atol=1e-6)


def test_estimated_sigma_finds_the_noise_level():
    g = GaussianMixture.isotropic([1.0], [[0.0] * 1024], 0.1)
    gen = torch.Generator().manual_seed(0)
    x = g.sample(16, gen)
    ladder = torch.logspace(1, -2, 31)
    for true in (2.0, 0.5, 0.1):
        y = x + true * torch.randn(x.shape, generator=gen)
        est = estimate_sigma(OracleModel(g), y, ladder, generator=gen)
        assert torch.all((est / true - 1).abs() < 0.3), (true, est)


def test_refine_from_a_small_sigma_stays_close_and_from_a_large_one_forgets():
    g = GaussianMixture.isotropic([0.5, 0.5], [[-4.0, 0.0], [4.0, 0.0]], 0.5)
    x = torch.tensor([[-4.0, 0.0]]).repeat(500, 1)
    gen = torch.Generator().manual_seed(0)
    near = refine(OracleModel(g), x, SIGMAS, 0.3, generator=gen, eps=2e-5, n_steps_each=30)
    far = refine(OracleModel(g), x, SIGMAS, 5.0, generator=gen, eps=2e-5, n_steps_each=30)
    assert (near[:, 0] < 0).float().mean() > 0.99  # stays in its mode
    assert 0.3 < (far[:, 0] < 0).float().mean() < 0.7  # forgets which mode it came from
